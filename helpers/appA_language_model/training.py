"""Train the decoder on the docstring corpus (AdamW, cosine decay) and score it on held-out text.

The trained weights are kept in the course's cache folder, named by everything that shapes them
(shape, steps, batch, learning rate, seed, the corpus's hash), so a second run loads them in a
second and a changed recipe trains afresh. Held-out quality is the mean cross-entropy per byte:
perplexity exp(loss), or bits per byte loss / ln 2 (8 would be a model that knows nothing).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from helpers.core.validate import require_int, require_number
from helpers.ch04_data_pipeline.images import cache_root
from helpers.appA_language_model.corpus import Corpus, random_windows
from helpers.appA_language_model.model import Decoder, DecoderConfig, decoder


@dataclass(frozen=True)
class Recipe:
    """How the decoder is trained: steps of batch windows of length tokens, AdamW at a peak learning rate."""

    steps: int = 300
    batch: int = 16
    length: int = 128
    learning_rate: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "length"):
            require_int(name, getattr(self, name), minimum=1)
        require_number("learning_rate", self.learning_rate, strictly_positive=True)


def learning_rate_at(step: int, recipe: Recipe) -> float:
    """Linear warm-up over the first 5% of steps, then cosine decay to a tenth of the peak."""
    warmup = max(1, recipe.steps // 20)
    if step < warmup:
        return recipe.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, recipe.steps - warmup)
    return recipe.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def train_decoder(config: DecoderConfig, corpus: Corpus, recipe: Recipe) -> tuple[Decoder, list[float]]:
    """A decoder trained from scratch on corpus.train; returns it in eval mode and the loss of every step."""
    model = decoder(config, seed=recipe.seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.1, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(recipe.seed)
    losses = []
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, recipe)
        inputs, targets = random_windows(corpus.train, recipe.batch, recipe.length, generator)
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def recipe_key(config: DecoderConfig, corpus: Corpus, recipe: Recipe) -> str:
    """A short hash of everything that shapes the trained weights."""
    text = repr((asdict(config), asdict(recipe), hashlib.sha256(corpus.train.numpy().tobytes()).hexdigest()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def trained_decoder(config: DecoderConfig, corpus: Corpus, recipe: Recipe) -> tuple[Decoder, list[float], bool]:
    """The decoder trained by recipe: loaded from the cache when this exact recipe ran before, else trained and
    saved. Returns the model, its training losses and whether it came from the cache."""
    path = cache_root() / f"appA-decoder-{recipe_key(config, corpus, recipe)}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        model = decoder(config)
        model.load_state_dict(saved["weights"])
        return model, saved["losses"], True
    model, losses = train_decoder(config, corpus, recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weights": model.state_dict(), "losses": losses}, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return model, losses, False


def validation_windows(data: torch.Tensor, *, length: int = 128, windows: int = 64) -> torch.Tensor:
    """`windows` evenly spaced windows of length + 1 tokens of data: the same every time, so that two variants of one
    model are scored on the same text."""
    require_int("windows", windows, minimum=1)
    require_int("length", length, minimum=1)
    if len(data) < length + windows + 1:
        raise ValueError(f"data holds {len(data)} tokens: too few for {windows} windows of {length}")
    starts = torch.linspace(0, len(data) - length - 1, windows).long().tolist()
    return torch.stack([data[s:s + length + 1] for s in starts]).long()


@torch.inference_mode()
def validation_loss(model: Decoder, data: torch.Tensor, *, length: int = 128, windows: int = 64) -> float:
    """Mean cross-entropy (nats per byte) over validation_windows of data."""
    batch = validation_windows(data, length=length, windows=windows)
    logits = model(batch[:, :-1]).float()
    return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten()).item()


@torch.inference_mode()
def paired_loss_change(model: Decoder, reference: Decoder, data: torch.Tensor, *, length: int = 128,
                       windows: int = 64, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """model's held-out loss minus reference's, in bits per byte, with a 95% bootstrap interval over the windows
    (both models scored on the same windows, so the difference is paired)."""
    batch = validation_windows(data, length=length, windows=windows)

    def per_window_bits(m: Decoder) -> np.ndarray:
        logits = m(batch[:, :-1]).float()
        loss = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none").mean(dim=1)
        return loss.numpy() / math.log(2)

    change = per_window_bits(model) - per_window_bits(reference)
    picks = np.random.default_rng(seed).integers(0, len(change), size=(resamples, len(change)))
    low, high = np.percentile(change[picks].mean(axis=1), [2.5, 97.5])
    return float(change.mean()), float(low), float(high)


@torch.inference_mode()
def agreement(model: Decoder, reference: Decoder, data: torch.Tensor, *, length: int = 128,
              windows: int = 64) -> float:
    """Share of positions of validation_windows where model's most likely next byte is reference's."""
    inputs = validation_windows(data, length=length, windows=windows)[:, :-1]
    return (model(inputs).argmax(-1) == reference(inputs).argmax(-1)).float().mean().item()


def bits_per_byte(loss_nats: float) -> float:
    """Bits per byte from a cross-entropy in nats (8 bits: a model that knows nothing about the text)."""
    return require_number("loss_nats", loss_nats, minimum=0) / math.log(2)
