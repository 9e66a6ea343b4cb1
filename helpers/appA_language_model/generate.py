"""Greedy generation two ways (recomputing the whole prefix at every step, or prefill once then decode from a KV
cache), and the clock of each step: time to first token, time per output token, time against position."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from helpers.core.measure import synchronized_clock
from helpers.core.validate import require_choice, require_int
from helpers.appA_language_model.model import Decoder, KVCache


def _check(model: Decoder, prompt: torch.Tensor, new_tokens: int) -> None:
    """The prompt is (batch, steps) of token ids and prompt plus new tokens fit the context."""
    require_int("new_tokens", new_tokens, minimum=1)
    if prompt.dim() != 2 or prompt.dtype != torch.long:
        raise ValueError(f"prompt must be a (batch, steps) tensor of token ids (int64), got {tuple(prompt.shape)} "
                         f"{prompt.dtype}")
    if prompt.shape[1] + new_tokens > model.config.context:
        raise ValueError(f"prompt ({prompt.shape[1]}) plus new_tokens ({new_tokens}) exceeds the context "
                         f"({model.config.context})")


@torch.inference_mode()
def generate_recomputing(model: Decoder, prompt: torch.Tensor, new_tokens: int,
                         on_token: Callable[[], None] = lambda: None) -> torch.Tensor:
    """Greedy tokens, each from a forward pass over the whole sequence so far (no cache): step n costs n positions."""
    _check(model, prompt, new_tokens)
    tokens = prompt
    for _ in range(new_tokens):
        next_token = model(tokens)[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, next_token], dim=1)
        on_token()
    return tokens[:, prompt.shape[1]:]


@torch.inference_mode()
def generate_cached(model: Decoder, prompt: torch.Tensor, new_tokens: int,
                    on_token: Callable[[], None] = lambda: None) -> torch.Tensor:
    """Greedy tokens: one prefill pass over the prompt fills the cache, then each decode step computes one position."""
    _check(model, prompt, new_tokens)
    dtype = next(model.parameters()).dtype
    cache = KVCache(model.config, prompt.shape[0], dtype=dtype, device=prompt.device)
    next_token = model(prompt, cache)[:, -1].argmax(-1, keepdim=True)
    generated = [next_token]
    on_token()
    for _ in range(new_tokens - 1):
        next_token = model(next_token, cache)[:, -1].argmax(-1, keepdim=True)
        generated.append(next_token)
        on_token()
    return torch.cat(generated, dim=1)


GENERATORS = {"recompute the prefix": generate_recomputing, "KV cache": generate_cached}


def token_times_s(generate: Callable, model: Decoder, prompt: torch.Tensor, new_tokens: int, *,
                  repeats: int = 3) -> np.ndarray:
    """Seconds from the previous token (or the start) to each new token, median over repeats: entry 0 is the time to
    first token, the rest the time per output token at each position."""
    require_int("repeats", repeats, minimum=1)
    runs = []
    for _ in range(repeats):
        stamps = [synchronized_clock()]

        def stamp() -> None:
            stamps.append(synchronized_clock())

        generate(model, prompt, new_tokens, on_token=stamp)
        runs.append(np.diff(stamps))
    return np.median(np.stack(runs), axis=0)


@dataclass(frozen=True)
class GenerationClock:
    """Time to first token, median time per output token after it, and the decode rate in tokens per second."""

    first_token_ms: float
    per_token_ms: float

    @property
    def tokens_per_s(self) -> float:
        """Decode tokens per second per sequence, from the median time per output token."""
        return 1e3 / self.per_token_ms


def generation_clock(times_s: np.ndarray) -> GenerationClock:
    """TTFT and TPOT from token_times_s's output."""
    if len(times_s) < 2:
        raise ValueError("need at least two token times: the first token and one decode step")
    return GenerationClock(1e3 * float(times_s[0]), 1e3 * float(np.median(times_s[1:])))


def generation_report(models: Mapping[str, Decoder], *, prompt_tokens: int, batch: int, precision: str,
                      cached: bool, new_tokens: int = 32) -> str:
    """Generate new_tokens for batch copies of a prompt of prompt_tokens tokens with models[precision], with or
    without the cache; return the time to first token, time per output token and tokens per second as a line."""
    require_int("prompt_tokens", prompt_tokens, minimum=1)
    require_int("batch", batch, minimum=1)
    require_choice("precision", precision, models)
    model = models[precision]
    prompt = torch.randint(0, 256, (batch, prompt_tokens), generator=torch.Generator().manual_seed(0))
    _check(model, prompt, new_tokens)
    generate = GENERATORS["KV cache" if cached else "recompute the prefix"]
    clock = generation_clock(token_times_s(generate, model, prompt, new_tokens, repeats=3))
    return (f"{precision}, {'KV cache' if cached else 'no cache'}, prompt {prompt_tokens}, batch {batch}: "
            f"first token {clock.first_token_ms:.1f} ms, then {clock.per_token_ms:.2f} ms per token = "
            f"{batch * clock.tokens_per_s:.0f} tokens/s over the batch ({clock.tokens_per_s:.0f} per sequence)")
