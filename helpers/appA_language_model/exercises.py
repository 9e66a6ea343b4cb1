"""Checks for the appendix's exercises: predict decode speed from bytes, size a KV cache, find the batch at the
ridge. Each compares with the value computed from this run's own measurements."""

from __future__ import annotations

from helpers.core.roofs import Roofs
from helpers.core.validate import require_number
from helpers.support.checks import Verdict, check_number
from helpers.appA_language_model.model import DecoderConfig
from helpers.appA_language_model.token_costs import ServedModel, matrix_weights


def check_step_prediction(exercise: str, answer: object, *, config: DecoderConfig, roofs: Roofs) -> Verdict:
    """The milliseconds a bf16 decode step of this decoder takes when it only streams its weights at the read roof."""
    expected = 2 * matrix_weights(config) / (roofs.read_gbps * 1e9) * 1e3
    return check_number(exercise, answer, expected, hint="what does one decode step read, and how fast can this "
                        "machine read? Mind the units: GB/s is 1e9 bytes per second, and the answer is in ms.")


def check_cached_tokens(exercise: str, answer: object, model: ServedModel, *, gpu_gb: float,
                        bytes_per_value: float) -> Verdict:
    """How many tokens of model's KV cache fit beside its bf16 weights in gpu_gb."""
    expected = model.tokens_that_fit(gpu_gb, bytes_per_value=bytes_per_value)
    return check_number(exercise, answer, expected, hint="free memory = GPU memory - parameters x 2 bytes; each "
                        "token costs layers x KV heads x head dim x 2 (keys and values) x bytes per value.")


def check_ridge_batch(exercise: str, answer: object, *, compute_gflops: float, roofs: Roofs,
                      bytes_per_weight: float) -> Verdict:
    """The batch at which a decode step's FLOPs per weight byte (2 x batch / bytes per weight) reach the ridge of
    this compute roof against the read roof."""
    ridge = require_number("compute_gflops", compute_gflops, strictly_positive=True) / roofs.read_gbps
    expected = ridge * require_number("bytes_per_weight", bytes_per_weight, strictly_positive=True) / 2
    return check_number(exercise, answer, expected, rtol=0.05, hint="each weight byte read serves 2 FLOPs (a "
                        "multiply and an add) per sequence in the batch, divided by the bytes each weight takes.")
