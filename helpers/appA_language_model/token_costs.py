"""What one token costs: FLOPs and bytes of a prefill pass and of a decode step, and the KV cache of real models.

A decode step multiplies one new position by every weight matrix: about 2 FLOPs per weight, and
every weight read once. Prefill multiplies a whole prompt by the same weights: the weights are
read once for all its positions, so its FLOPs per byte grow with the prompt. Put on chapter 1's
roofline, decode sits far left of the ridge (memory-bound) and a long prefill to its right.
"""

from __future__ import annotations

from dataclasses import dataclass

from helpers.core.validate import require_int
from helpers.appA_language_model.model import VOCAB, DecoderConfig


def matrix_weights(config: DecoderConfig) -> int:
    """Weights that multiply every position: each block's attention (4 w^2) and MLP (8 w^2), and the head."""
    return config.layers * 12 * config.width**2 + VOCAB * config.width


@dataclass(frozen=True)
class PassCost:
    """FLOPs and minimum bytes of one forward pass, and their ratio (the pass's place on a roofline)."""

    flops: float
    bytes: float

    @property
    def flop_per_byte(self) -> float:
        """Arithmetic intensity: FLOPs per byte moved."""
        return self.flops / self.bytes


def decode_cost(config: DecoderConfig, *, position: int, batch: int = 1, bytes_per_weight: float = 4,
                bytes_per_cached: float = 4) -> PassCost:
    """One decode step at a position: 2 FLOPs per weight per sequence, plus attention over the cached positions;
    bytes: every weight once, plus the cached keys and values read."""
    require_int("position", position, minimum=0)
    require_int("batch", batch, minimum=1)
    attention_flops = 4 * config.layers * config.width * (position + 1)  # q.k and p.v, per sequence
    cached = 2 * config.layers * config.width * (position + 1) * batch
    return PassCost(batch * (2 * matrix_weights(config) + attention_flops),
                    matrix_weights(config) * bytes_per_weight + cached * bytes_per_cached)


def prefill_cost(config: DecoderConfig, *, prompt: int, batch: int = 1, bytes_per_weight: float = 4) -> PassCost:
    """A prefill pass over a prompt: 2 FLOPs per weight per position, plus causal attention (half the T x T
    products); bytes: the weights once (a lower bound: activations move too)."""
    require_int("prompt", prompt, minimum=1)
    require_int("batch", batch, minimum=1)
    attention_flops = 2 * config.layers * config.width * prompt * prompt
    return PassCost(batch * (2 * matrix_weights(config) * prompt + attention_flops),
                    matrix_weights(config) * bytes_per_weight)


@dataclass(frozen=True)
class ServedModel:
    """A published model's attention shape, for KV-cache arithmetic (numbers from its released config.json)."""

    name: str
    parameters_b: float
    layers: int
    query_heads: int
    kv_heads: int
    head_dim: int

    def kv_bytes_per_token(self, bytes_per_value: float = 2) -> float:
        """Keys and values of one token in every layer: layers x KV heads x head dim x 2 x bytes."""
        return self.layers * self.kv_heads * self.head_dim * 2 * bytes_per_value

    def decode_step_bytes(self, *, batch: int, context: int, bytes_per_weight: float = 2,
                          bytes_per_value: float = 2) -> float:
        """Bytes one decode step reads: every parameter once for the whole batch (the input embedding, only looked
        up, is over-counted: about 1 GB of Llama 3.1 8B's 16), plus each sequence's own cache."""
        require_int("batch", batch, minimum=1)
        require_int("context", context, minimum=0)
        return self.parameters_b * 1e9 * bytes_per_weight + batch * context * self.kv_bytes_per_token(bytes_per_value)

    def decode_tokens_per_s_bound(self, *, batch: int, context: int, bandwidth_tbps: float,
                                  bytes_per_value: float = 2) -> float:
        """Tokens per second the memory allows at this batch and context: batch / (bytes per step / bandwidth)."""
        seconds = self.decode_step_bytes(batch=batch, context=context, bytes_per_value=bytes_per_value) / (
            bandwidth_tbps * 1e12)
        return batch / seconds

    def tokens_that_fit(self, gpu_gb: float, bytes_per_weight: float = 2, bytes_per_value: float = 2) -> int:
        """Cached tokens (all requests together) that fit beside the weights in gpu_gb of memory (none if the weights
        alone do not fit); activations and the framework's own memory are ignored."""
        free = gpu_gb * 1e9 - self.parameters_b * 1e9 * bytes_per_weight
        return max(0, int(free // self.kv_bytes_per_token(bytes_per_value)))


H100_SXM_TBPS = 3.35  # HBM3 bandwidth of an H100 SXM 80 GB, NVIDIA's datasheet (TB/s)

# Shapes from each model's config.json as released (num_hidden_layers, num_attention_heads, num_key_value_heads,
# head_dim or hidden_size / num_attention_heads).
SERVED_MODELS = (
    ServedModel("Llama 2 7B (no GQA)", 6.7, 32, 32, 32, 128),
    ServedModel("Llama 3.1 8B (GQA, 8 KV heads)", 8.0, 32, 32, 8, 128),
    ServedModel("Qwen2.5 7B (GQA, 4 KV heads)", 7.6, 28, 28, 4, 128),
    ServedModel("Llama 3.1 70B (GQA, 8 KV heads)", 70.6, 80, 64, 8, 128),
)
