"""Lines that torch's native code writes to stderr and that say nothing about the learner's code.

The profiler (chapters 6 and 7) and the torchrun launcher (chapter 5) filter them out of what they show.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

# Native log lines the profiler writes to the process's stderr: a USDT probe line at every start and
# stop, "gpuGetDeviceCount failed" on a CUDA build of torch without a GPU, and a note that memory
# allocated before profiling began cannot be matched with its release; and torch 2.11's warning, in two lines,
# that a profiler keeps only its own session's events (it warns on every use). None of them is about the code.
NOISE_MARKERS = ("USDT:", "gpuGetDeviceCount failed", "Memory block of unknown size was allocated before",
                 "Profiler clears events at the end of each cycle", "_warn_once(")


def is_noise(line: str) -> bool:
    """Whether a line of stderr is one of torch's native noise lines (NOISE_MARKERS)."""
    return any(marker in line for marker in NOISE_MARKERS)


@contextlib.contextmanager
def quiet_profiler_logs() -> Iterator[None]:
    """Drop the profiler's native noise lines (NOISE_MARKERS) from stderr; pass every other line through."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not is_noise(line):
                    print(line, file=sys.stderr)
