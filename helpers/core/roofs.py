"""This machine's roofline roofs, measured the same way wherever the course draws a roofline (chapters 1 and 2).

Five probes, timed in alternating rounds: two large float32 matrix products (the better is the
compute roof: on some CPUs 512 x 512 beats 1024 x 1024, whose tiles leave the cache) and three
passes over one vector, one per way an operation can touch memory: a sum that only reads it (the
read roof), a scale in place that reads and writes the same lines (the in-place roof) and a copy
into a second vector (the new-output roof: it pays whatever writing to lines not yet read costs
here, write-allocate included). An operation is compared with the roof of its own access pattern.
The compute roof is a lower bound of the hardware's peak: the best product we timed, not the best
the cores can do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from helpers.core.hardware import last_level_cache_bytes
from helpers.core.validate import require_choice, require_int, require_number

ROOF_MATMULS = (512, 1024)  # the n x n float32 products whose better rate stands for the compute roof
ROOF_ELEMENTS = 2**24  # one 64 MiB float32 vector for the bandwidth probes
COMPUTE_PROBES = tuple(f"matmul {n}" for n in ROOF_MATMULS)
READ_PROBE, IN_PLACE_PROBE, NEW_OUTPUT_PROBE = "sum (read only)", "scale in place", "copy to a new vector"
ACCESS_PROBES = {"read": READ_PROBE, "in place": IN_PLACE_PROBE, "new output": NEW_OUTPUT_PROBE}
STREAMS = {"read": 1, "in place": 2, "new output": 2}  # vectors' worth of bytes each probe must move at least
CACHE_FACTOR = 4  # a working set under 4x the largest cache may be served partly from it


def roof_matmul(n: int) -> Callable[[], torch.Tensor]:
    """An n x n float32 matrix product of two fixed random matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: torch.mm(a, b)


def roof_operations(elements: int = ROOF_ELEMENTS) -> dict[str, Callable[[], object]]:
    """The probes by name: the two products, then a sum, an in-place scale and a copy of one vector."""
    require_int("elements", elements, minimum=1)
    vector, target = torch.randn(elements), torch.empty(elements)
    return {**{name: roof_matmul(n) for name, n in zip(COMPUTE_PROBES, ROOF_MATMULS)},
            READ_PROBE: lambda: vector.sum(), IN_PLACE_PROBE: lambda: vector.mul_(1.0),
            NEW_OUTPUT_PROBE: lambda: target.copy_(vector)}


@dataclass(frozen=True)
class Roofs:
    """Measured peaks: GFLOP/s of the better product; GB/s (minimum bytes) of the sum, the scale in place, the copy."""

    gflops: float
    read_gbps: float
    in_place_gbps: float
    new_output_gbps: float
    vector_bytes: int

    def bandwidth_gbps(self, access: str) -> float:
        """The bandwidth roof for an access pattern: "read", "in place" or "new output"."""
        require_choice("access", access, tuple(ACCESS_PROBES))
        return {"read": self.read_gbps, "in place": self.in_place_gbps, "new output": self.new_output_gbps}[access]

    def ridge(self, access: str) -> float:
        """FLOP per byte where that access pattern's bandwidth roof meets the compute roof."""
        return self.gflops / self.bandwidth_gbps(access)

    def attainable_gflops(self, flop_per_byte: float, access: str) -> float:
        """The roofline: min(compute roof, intensity x the access pattern's bandwidth roof)."""
        require_number("flop_per_byte", flop_per_byte, minimum=0)
        return min(self.gflops, flop_per_byte * self.bandwidth_gbps(access))

    def summary(self) -> str:
        """One line: the compute roof, then each bandwidth roof with its ridge."""
        roofs = "; ".join(f"{access} {self.bandwidth_gbps(access):.1f} GB/s (ridge {self.ridge(access):.1f})"
                          for access in ACCESS_PROBES)
        return f"compute {self.gflops:.0f} GFLOP/s (a lower bound); {roofs}; ridges in FLOP/byte"

    def cache_note(self) -> str:
        """Whether the bandwidth probes measured main memory or, possibly, a cache (their vector against the LLC)."""
        cache = last_level_cache_bytes()
        size = f"the probes' vector is {self.vector_bytes / 2**20:.0f} MiB"
        if cache is None:
            return f"{size}; this system does not report its cache size, so the roofs may be a cache's bandwidth."
        if self.vector_bytes < CACHE_FACTOR * cache:
            return (f"{size}, under {CACHE_FACTOR}x the largest cache Linux reports ({cache / 2**20:.0f} MiB): "
                    "part of it can be served from that cache, so these are cache-and-memory roofs, not "
                    "main-memory bandwidth.")
        return f"{size}, over {CACHE_FACTOR}x the largest cache ({cache / 2**20:.0f} MiB): main-memory roofs."


def roofs_from_seconds(seconds: Mapping[str, float], elements: int = ROOF_ELEMENTS) -> Roofs:
    """Roofs from the probes' median times in seconds (keys as in roof_operations; other keys are ignored)."""
    missing = {*COMPUTE_PROBES, *ACCESS_PROBES.values()} - set(seconds.keys())
    if missing:
        raise ValueError(f"seconds must hold a time for each probe; missing {sorted(missing)}")
    vector_bytes = 4 * elements
    gflops = max(2 * n**3 / seconds[name] / 1e9 for name, n in zip(COMPUTE_PROBES, ROOF_MATMULS))
    gbps = {access: STREAMS[access] * vector_bytes / seconds[probe] / 1e9 for access, probe in ACCESS_PROBES.items()}
    return Roofs(gflops=gflops, read_gbps=gbps["read"], in_place_gbps=gbps["in place"],
                 new_output_gbps=gbps["new output"], vector_bytes=vector_bytes)

