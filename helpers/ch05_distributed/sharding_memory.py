"""The memory arithmetic of data-parallel training: bytes per parameter for each sharding stage.

Per parameter, training with Adam stores the weight, its gradient and two moment estimates. With
mixed precision (Rajbhandari et al., "ZeRO", 2020, section 3.1) the weight and gradient are 16-bit
(2 + 2 bytes) and the optimizer keeps an fp32 master weight and fp32 moments (4 + 4 + 4 bytes): 16
bytes in all, the same as pure fp32 (4 + 4 + 8). Sharding divides a part by the number of workers N:
ZeRO-1 the optimizer state, ZeRO-2 also the gradients, ZeRO-3 (= FSDP's full sharding) everything.
Activations, buffers and the framework's own memory come on top and are not counted here.
"""

from __future__ import annotations

import math

from helpers.core.validate import require_choice, require_int, require_number

# (weight, gradient, optimizer state) bytes per parameter.
OPTIMIZER_STATES = {"fp32 Adam": (4, 4, 8), "mixed-precision Adam": (2, 2, 12)}
# Which parts each stage divides by the number of workers.
STAGES = {"DDP (replicated)": (), "ZeRO-1": ("optimizer",), "ZeRO-2": ("optimizer", "gradient"),
          "ZeRO-3 / FSDP full shard": ("optimizer", "gradient", "weight")}


def bytes_per_parameter(precision: str, stage: str, workers: int) -> float:
    """Bytes each worker holds per model parameter for this precision and sharding stage."""
    require_choice("precision", precision, OPTIMIZER_STATES)
    require_choice("stage", stage, STAGES)
    require_int("workers", workers, minimum=1)
    parts = dict(zip(("weight", "gradient", "optimizer"), OPTIMIZER_STATES[precision]))
    return sum(size / workers if part in STAGES[stage] else size for part, size in parts.items())


def workers_needed(parameters: float, memory_bytes: float, precision: str) -> int:
    """Fewest workers with memory_bytes each that hold a fully sharded model's training state."""
    require_number("parameters", parameters, strictly_positive=True)
    require_number("memory_bytes", memory_bytes, strictly_positive=True)
    total = parameters * bytes_per_parameter(precision, "DDP (replicated)", 1)
    return math.ceil(total / memory_bytes)


def least_sharded_stage(parameters: float, memory_bytes: float, activation_bytes: float, precision: str,
                        workers: int) -> str | None:
    """The first stage (DDP, then ZeRO-1, 2, 3) whose training state plus the activations fits one worker; else None."""
    require_number("parameters", parameters, strictly_positive=True)
    require_number("memory_bytes", memory_bytes, strictly_positive=True)
    require_number("activation_bytes", activation_bytes, minimum=0)
    for stage in STAGES:
        if parameters * bytes_per_parameter(precision, stage, workers) + activation_bytes <= memory_bytes:
            return stage
    return None
