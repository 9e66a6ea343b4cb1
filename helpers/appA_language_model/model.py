"""A small GPT-style decoder, written to be read: byte tokens, learned positions, pre-norm blocks and a KV cache.

Tokens are the bytes of UTF-8 text (a vocabulary of 256, no tokenizer to ship). Each block is
attention then an MLP, each behind a LayerNorm and a residual. Attention calls
F.scaled_dot_product_attention; the cache keeps every layer's keys and values so that a decode
step computes one new position instead of the whole prefix again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.core.validate import require_int

VOCAB = 256  # byte-level tokens


@dataclass(frozen=True)
class DecoderConfig:
    """The decoder's shape: context length, width, layers and attention heads."""

    context: int = 256
    width: int = 256
    layers: int = 4
    heads: int = 4

    def __post_init__(self) -> None:
        for name in ("context", "width", "layers", "heads"):
            require_int(name, getattr(self, name), minimum=1)
        if self.width % self.heads:
            raise ValueError(f"width must be a multiple of heads, got width {self.width} and {self.heads} heads")

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.width // self.heads


class KVCache:
    """Every layer's keys and values so far, preallocated for `positions` (default: the context length); `length`
    positions are filled."""

    def __init__(self, config: DecoderConfig, batch: int, *, positions: int | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        require_int("batch", batch, minimum=1)
        positions = config.context if positions is None else require_int("positions", positions, minimum=1)
        if positions > config.context:
            raise ValueError(f"positions must be at most the context ({config.context}), got {positions}")
        shape = (config.layers, 2, batch, config.heads, positions, config.head_dim)
        self.tensors = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0

    def store(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys and values after the filled positions; return all of them up to the new end."""
        end = self.length + keys.shape[2]
        if end > self.tensors.shape[4]:
            raise ValueError(f"the cache holds {self.tensors.shape[4]} positions; this step would reach {end}")
        self.tensors[layer, 0, :, :, self.length:end] = keys
        self.tensors[layer, 1, :, :, self.length:end] = values
        return self.tensors[layer, 0, :, :, :end], self.tensors[layer, 1, :, :, :end]

    def store_at(self, layer: int, position: torch.Tensor, keys: torch.Tensor,
                 values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Static shapes for one new position held in a tensor: write it in place, return the whole cache and a mask
        of the filled positions (one graph serves every position: torch.compile, CUDA graphs)."""
        self.tensors[layer, 0].index_copy_(2, position, keys)
        self.tensors[layer, 1].index_copy_(2, position, values)
        filled = (torch.arange(self.tensors.shape[4], device=position.device) <= position)[None, :]
        return self.tensors[layer, 0], self.tensors[layer, 1], filled

    @property
    def nbytes(self) -> int:
        """Bytes the cache holds, filled or not."""
        return self.tensors.nbytes


class CausalSelfAttention(nn.Module):
    """Multi-head attention where each position sees itself and the positions before it."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width, bias=False)
        self.out = nn.Linear(config.width, config.width, bias=False)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int,
                position: torch.Tensor | None = None) -> torch.Tensor:
        batch, steps, width = x.shape
        q, k, v = (t.view(batch, steps, self.heads, -1).transpose(1, 2) for t in self.qkv(x).split(width, dim=2))
        if position is not None:
            k, v, mask = cache.store_at(layer, position, k, v)
        else:
            if cache is not None:
                k, v = cache.store(layer, k, v)
            mask = causal_mask(steps, k.shape[2], x.device)
        if mask is not None and steps == k.shape[2]:  # a whole sequence: the fused kernels' own causal path
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(batch, steps, width))


def causal_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor | None:
    """True where a query may attend: the last `queries` positions each see every key up to their own; None for one
    query (it sees every key in the cache)."""
    if queries == 1:
        return None
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(diagonal=keys - queries)


class Block(nn.Module):
    """LayerNorm, attention, residual; LayerNorm, MLP (4x wide, GELU), residual."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.width), nn.LayerNorm(config.width)
        self.attention = CausalSelfAttention(config)
        self.mlp = nn.Sequential(nn.Linear(config.width, 4 * config.width), nn.GELU(),
                                 nn.Linear(4 * config.width, config.width))

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int,
                position: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), cache, layer, position)
        return x + self.mlp(self.norm2(x))


class Decoder(nn.Module):
    """Byte embeddings plus learned positions, the blocks, a final LayerNorm and a head tied to the embeddings."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(VOCAB, config.width)
        self.position = nn.Embedding(config.context, config.width)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits for every position of tokens (batch, steps); with a cache, tokens continue what it holds."""
        start = cache.length if cache is not None else 0
        if start + tokens.shape[1] > self.config.context:
            raise ValueError(f"the decoder sees {self.config.context} positions; got {start + tokens.shape[1]}")
        logits = self._layers(tokens, torch.arange(start, start + tokens.shape[1], device=tokens.device), cache)
        if cache is not None:
            cache.length += tokens.shape[1]
        return logits

    def decode_at(self, tokens: torch.Tensor, cache: KVCache, position: torch.Tensor) -> torch.Tensor:
        """One decode step (tokens of shape (batch, 1)) at a position held in a one-element tensor: the same shapes at
        every position, so one compiled graph or one CUDA graph serves them all. The caller advances position."""
        return self._layers(tokens, position, cache, static=True)

    def _layers(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache | None, *,
                static: bool = False) -> torch.Tensor:
        """Embeddings plus positions, every block, the final norm and the head."""
        x = self.embed(tokens) + self.position(positions)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, positions if static else None)
        return self.head(self.norm(x))


def decoder(config: DecoderConfig, *, seed: int = 0) -> Decoder:
    """A freshly initialised decoder (GPT-2's scale: normal with std 0.02), in eval mode."""
    torch.manual_seed(seed)
    model = Decoder(config)
    for name, parameter in model.named_parameters():
        if parameter.dim() > 1:
            nn.init.normal_(parameter, std=0.02)
        elif name.endswith("bias"):
            nn.init.zeros_(parameter)
    return model.eval()
