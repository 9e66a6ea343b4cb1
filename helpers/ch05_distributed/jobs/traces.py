"""Reading a profile's collectives: the events of a finished torch.profiler run, and the dtypes they name.

The jobs read the chrome trace the profiler writes: each event names its operator, thread, start and
duration, and with record_shapes=True the shapes and dtypes of its inputs.
"""

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.profiler import profile

# The dtype names the trace writes, and the dtype each one is (its .itemsize: the bytes of one element).
TRACE_DTYPES = {"float": torch.float32, "double": torch.float64, "c10::BFloat16": torch.bfloat16,
                "c10::Half": torch.float16}


def trace_events(prof: profile) -> list[dict]:
    """The events of a finished profile, from its chrome trace (a file that the profiler writes)."""
    with tempfile.TemporaryDirectory() as folder:
        trace_path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace_path))
        return json.loads(trace_path.read_text())["traceEvents"]


Interval = tuple[float, float]


def union(intervals: Sequence[Interval]) -> list[Interval]:
    """The intervals merged into sorted, non-overlapping ones (time covered by at least one of them)."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(intervals: Sequence[Interval]) -> float:
    """Length of the union of (start, end) intervals: the time covered by at least one of them."""
    return sum(end - start for start, end in union(intervals))
