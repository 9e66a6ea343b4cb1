"""This machine's roofline roofs, measured the same way wherever the course draws a roofline (chapters 1 and 2).

Four probes, timed in alternating rounds: two large float32 matrix products (the better is the
compute roof: on some CPUs 512 x 512 beats 1024 x 1024, whose tiles leave the cache), a sum
that only reads a vector (the read roof) and a scale in place that reads and writes the same vector
(the read-write roof). An operation is compared with the bandwidth roof of its own access pattern:
one that writes nothing with the read roof, one that writes with the read-write roof.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from helpers.core.hardware import last_level_cache_bytes
from helpers.core.measure import measure_interleaved
from helpers.core.validate import require_int, require_number

ROOF_MATMULS = (512, 1024)  # the n x n float32 products whose better rate stands for the compute roof
ROOF_ELEMENTS = 2**24  # one 64 MiB float32 vector for both bandwidth probes
COMPUTE_PROBES = tuple(f"matmul {n}" for n in ROOF_MATMULS)
READ_PROBE, READ_WRITE_PROBE = "sum (read only)", "scale in place"
CACHE_FACTOR = 4  # a working set under 4x the largest cache may be served partly from it


def roof_matmul(n: int) -> Callable[[], torch.Tensor]:
    """An n x n float32 matrix product of two fixed random matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: torch.mm(a, b)


def roof_operations(elements: int = ROOF_ELEMENTS) -> dict[str, Callable[[], object]]:
    """The probes by name: the two products, a read-only sum and an in-place scale of one vector."""
    require_int("elements", elements, minimum=1)
    vector = torch.randn(elements)
    return {**{name: roof_matmul(n) for name, n in zip(COMPUTE_PROBES, ROOF_MATMULS)},
            READ_PROBE: lambda: vector.sum(), READ_WRITE_PROBE: lambda: vector.mul_(1.0)}


@dataclass(frozen=True)
class Roofs:
    """Measured peaks: GFLOP/s of the better product, GB/s read by the sum, GB/s read plus written by the scale."""

    gflops: float
    read_gbps: float
    read_write_gbps: float
    vector_bytes: int

    def bandwidth_gbps(self, *, writes: bool) -> float:
        """The bandwidth roof for an operation that writes (read-write roof) or only reads (read roof)."""
        return self.read_write_gbps if writes else self.read_gbps

    def ridge(self, *, writes: bool) -> float:
        """FLOP per byte where that bandwidth roof meets the compute roof."""
        return self.gflops / self.bandwidth_gbps(writes=writes)

    def attainable_gflops(self, flop_per_byte: float, *, writes: bool) -> float:
        """The roofline: min(compute roof, intensity x bandwidth roof)."""
        require_number("flop_per_byte", flop_per_byte, minimum=0)
        return min(self.gflops, flop_per_byte * self.bandwidth_gbps(writes=writes))

    def summary(self) -> str:
        """One line: the three roofs and the two ridges."""
        return (f"compute {self.gflops:.0f} GFLOP/s; read {self.read_gbps:.1f} GB/s (ridge "
                f"{self.ridge(writes=False):.1f} FLOP/byte); read-write {self.read_write_gbps:.1f} GB/s "
                f"(ridge {self.ridge(writes=True):.1f} FLOP/byte)")

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
    """Roofs from the probes' median times in seconds (keys as in roof_operations)."""
    missing = {*COMPUTE_PROBES, READ_PROBE, READ_WRITE_PROBE} - set(seconds.keys())
    if missing:
        raise ValueError(f"seconds must hold a time for each probe; missing {sorted(missing)}")
    vector_bytes = 4 * elements
    gflops = max(2 * n**3 / seconds[name] / 1e9 for name, n in zip(COMPUTE_PROBES, ROOF_MATMULS))
    return Roofs(gflops=gflops,
                 read_gbps=vector_bytes / seconds[READ_PROBE] / 1e9,
                 read_write_gbps=2 * vector_bytes / seconds[READ_WRITE_PROBE] / 1e9, vector_bytes=vector_bytes)


def measure_roofs(*, min_run_time: float = 0.6) -> Roofs:
    """Time the probes in alternating rounds and return this machine's roofs."""
    require_number("min_run_time", min_run_time, strictly_positive=True)
    timings = measure_interleaved(roof_operations(), min_run_time=min_run_time)
    return roofs_from_seconds({name: t.median_s for name, t in timings.items()})
