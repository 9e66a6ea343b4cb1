"""Chapter 5's exercise checks: the expected answers are computed here, out of the learner's sight."""

from __future__ import annotations

from helpers.support.checks import Verdict, check_number
from helpers.ch05_distributed.comm_model import AlphaBeta, PUBLISHED_LINKS_BYTES_PER_S, bucket_sizes
from helpers.ch05_distributed.sharding_memory import workers_needed

# Exercise 2's cluster: ResNet-50's fp32 gradients, 64 workers on 10 Gb/s Ethernet, DDP's default buckets.
RESNET50_PARAMETERS = 25.6e6
EXERCISE_WORKERS = 64
EXERCISE_LATENCY_S = 50e-6
EXERCISE_BUCKET_BYTES = 25 * 2 ** 20


def check_gpu_count(exercise: str, answer: object) -> Verdict:
    """Exercise 1: the fewest 80 GB GPUs that hold a 13 B model's mixed-precision Adam state, fully sharded."""
    return check_number(exercise, answer, workers_needed(13e9, 80e9, "mixed-precision Adam"), rtol=0,
                        hint="Bytes per parameter for mixed-precision Adam (section 5.1), times the parameters, "
                             "divided by one GPU's memory; round up.")


def check_bucketed_allreduce_ms(exercise: str, answer: object) -> Verdict:
    """Exercise 2: the summed all-reduce time of ResNet-50's gradients in DDP's buckets, in ms (within 5%)."""
    link = AlphaBeta(EXERCISE_LATENCY_S, PUBLISHED_LINKS_BYTES_PER_S["10 Gb/s Ethernet"])
    buckets = bucket_sizes(4 * RESNET50_PARAMETERS, EXERCISE_BUCKET_BYTES)
    expected_ms = 1e3 * sum(link.allreduce_s(size, EXERCISE_WORKERS) for size in buckets)
    return check_number(exercise, answer, expected_ms, rtol=0.05,
                        hint="List the buckets first (1 MiB, then 25 MiB each, then the remainder); each one pays "
                             "2 (N - 1) alpha plus 2 (N - 1) / N x its bytes / beta.")
