"""This machine's roofline roofs, measured the same way wherever the course draws a roofline (chapters 1 and 2).

Five probes, timed in alternating rounds: two large float32 matrix products (the better is the
compute roof: on some CPUs 512 x 512 beats 1024 x 1024, whose tiles leave the cache) and three
passes over the same footprint of memory, one per way an operation can touch it: a sum that only
reads a vector (the read roof), a scale in place that reads and writes the same lines (the in-place
roof) and a copy from one half of that footprint into the other (the new-output roof: it pays
whatever writing to lines not yet read costs here, write-allocate included). The footprint is the
same for all three because a cache can hold part of it: a probe touching twice the memory would
measure a different, slower mix of cache and memory, not a different access pattern. An operation
is compared with the roof of its own access pattern.
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
ROOF_ELEMENTS = 2**24  # the bandwidth probes' footprint: 64 MiB of float32
COMPUTE_PROBES = tuple(f"matmul {n}" for n in ROOF_MATMULS)
READ_PROBE, IN_PLACE_PROBE, NEW_OUTPUT_PROBE = "sum (read only)", "scale in place", "copy to a new vector"
ACCESS_PROBES = {"read": READ_PROBE, "in place": IN_PLACE_PROBE, "new output": NEW_OUTPUT_PROBE}
RIDGE_BAND = 0.1  # within 10% of a ridge, the roofs' own noise decides the side: call it "at the ridge"
CACHE_FACTOR = 4  # a working set under 4x the largest cache may be served partly from it


def roof_matmul(n: int) -> Callable[[], torch.Tensor]:
    """An n x n float32 matrix product of two fixed random matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: torch.mm(a, b)


def roof_operations(elements: int = ROOF_ELEMENTS) -> dict[str, Callable[[], object]]:
    """The probes by name: the two products, then a sum, an in-place scale and a half-to-half copy of one footprint."""
    require_int("elements", elements, minimum=2)
    vector, source, target = torch.randn(elements), torch.randn(elements // 2), torch.empty(elements // 2)
    return {**{name: roof_matmul(n) for name, n in zip(COMPUTE_PROBES, ROOF_MATMULS)},
            READ_PROBE: lambda: vector.sum(), IN_PLACE_PROBE: lambda: vector.mul_(1.0),
            NEW_OUTPUT_PROBE: lambda: target.copy_(source)}


def probe_bytes(elements: int = ROOF_ELEMENTS) -> dict[str, int]:
    """Minimum bytes each bandwidth probe moves, by access pattern (every input read once, every output written once)."""
    return {"read": 4 * elements, "in place": 2 * 4 * elements, "new output": 2 * 4 * (elements // 2)}


@dataclass(frozen=True)
class Roofs:
    """Measured peaks: GFLOP/s of the better product; GB/s (minimum bytes) of the sum, the scale in place, the copy."""

    gflops: float
    read_gbps: float
    in_place_gbps: float
    new_output_gbps: float
    footprint_bytes: int

    def bandwidth_gbps(self, access: str) -> float:
        """The bandwidth roof for an access pattern: "read", "in place" or "new output"."""
        require_choice("access", access, tuple(ACCESS_PROBES))
        return {"read": self.read_gbps, "in place": self.in_place_gbps, "new output": self.new_output_gbps}[access]

    def ridge(self, access: str) -> float:
        """FLOP per byte where that access pattern's bandwidth roof meets the compute roof."""
        return self.gflops / self.bandwidth_gbps(access)

    def side(self, flop_per_byte: float, access: str) -> str:
        """'memory' or 'compute' side of that ridge, or 'at the ridge' within RIDGE_BAND of it (too close to call)."""
        ratio = require_number("flop_per_byte", flop_per_byte, minimum=0) / self.ridge(access)
        return "at the ridge" if abs(ratio - 1) <= RIDGE_BAND else "memory" if ratio < 1 else "compute"

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
        """Whether the bandwidth probes measured main memory or, possibly, a cache (their footprint against the LLC)."""
        cache = last_level_cache_bytes()
        size = f"each bandwidth probe touches {self.footprint_bytes / 2**20:.0f} MiB"
        if cache is None:
            return f"{size}; this system does not report its cache size, so the roofs may be a cache's bandwidth."
        if self.footprint_bytes < CACHE_FACTOR * cache:
            return (f"{size}, under {CACHE_FACTOR}x the largest cache Linux reports ({cache / 2**20:.0f} MiB): "
                    "part of it can be served from that cache, so these are cache-and-memory roofs, not "
                    "main-memory bandwidth.")
        return f"{size}, over {CACHE_FACTOR}x the largest cache ({cache / 2**20:.0f} MiB): main-memory roofs."


def roofs_from_seconds(seconds: Mapping[str, float], elements: int = ROOF_ELEMENTS) -> Roofs:
    """Roofs from the probes' median times in seconds (keys as in roof_operations; other keys are ignored)."""
    missing = {*COMPUTE_PROBES, *ACCESS_PROBES.values()} - set(seconds.keys())
    if missing:
        raise ValueError(f"seconds must hold a time for each probe; missing {sorted(missing)}")
    footprint_bytes = 4 * elements
    gflops = max(2 * n**3 / seconds[name] / 1e9 for name, n in zip(COMPUTE_PROBES, ROOF_MATMULS))
    moved = probe_bytes(elements)
    gbps = {access: moved[access] / seconds[probe] / 1e9 for access, probe in ACCESS_PROBES.items()}
    return Roofs(gflops=gflops, read_gbps=gbps["read"], in_place_gbps=gbps["in place"],
                 new_output_gbps=gbps["new output"], footprint_bytes=footprint_bytes)

