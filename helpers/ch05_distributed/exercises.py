"""Chapter 5's exercise checks: the expected answers are computed here, out of the learner's sight."""

from __future__ import annotations

from helpers.support.checks import Verdict, check_choice, check_number
from helpers.ch05_distributed.comm_model import AlphaBeta, PUBLISHED_LINKS_BYTES_PER_S, bucket_sizes
from helpers.ch05_distributed.sharding_memory import STAGES, least_sharded_stage

# Exercise 1's job: a 13 B model, mixed-precision Adam, 8 GPUs of 80 GB, 30 GB of activations per GPU.
EXERCISE_1 = dict(parameters=13e9, memory_bytes=80e9, activation_bytes=30e9, precision="mixed-precision Adam",
                  workers=8)
# Exercise 2's cluster: ResNet-50's fp32 gradients, 64 workers on 10 Gb/s Ethernet, DDP's default buckets.
RESNET50_PARAMETERS = 25.6e6
EXERCISE_WORKERS = 64
EXERCISE_LATENCY_S = 50e-6
EXERCISE_BUCKET_BYTES = 25 * 2 ** 20


def check_least_sharded_stage(exercise: str, answer: object) -> Verdict:
    """Exercise 1: the least sharding that fits the 13 B model's state and its activations on 8 x 80 GB."""
    return check_choice(exercise, answer, least_sharded_stage(**EXERCISE_1), list(STAGES),
                        hint="For each stage in turn: bytes per parameter on 8 workers (section 5.1) x 13e9, "
                             "plus the 30 GB of activations; the first total within 80 GB is the answer.")


def check_bucketed_allreduce(exercise: str, bucket_count: object, total_ms: object) -> Verdict:
    """Exercise 2: how many buckets ResNet-50's gradients make, and their summed all-reduce time in ms (within 1%)."""
    link = AlphaBeta(EXERCISE_LATENCY_S, PUBLISHED_LINKS_BYTES_PER_S["10 Gb/s Ethernet"])
    buckets = bucket_sizes(4 * RESNET50_PARAMETERS, EXERCISE_BUCKET_BYTES)
    counted = check_number(exercise + " (buckets)", bucket_count, len(buckets), rtol=0,
                           hint="The first bucket holds 1 MiB, then 25 MiB each; the last holds what remains.")
    if not counted.passed:
        return counted
    expected_ms = 1e3 * sum(link.allreduce_s(size, EXERCISE_WORKERS) for size in buckets)
    return check_number(exercise + " (time)", total_ms, expected_ms, rtol=0.01,
                        hint="Each bucket pays 2 (N - 1) alpha plus 2 (N - 1) / N x its bytes / beta; sum them "
                             "over the buckets you counted.")
