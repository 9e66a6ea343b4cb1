"""Lines that torch's native code writes to stderr and that say nothing about the learner's code.

The profiler (chapter 7) and the torchrun launcher (chapter 5) both filter them out of what they show.
"""

# Native log lines the profiler writes to the process's stderr: a USDT probe line at every start and
# stop, "gpuGetDeviceCount failed" on a CUDA build of torch without a GPU, and a note that memory
# allocated before profiling began cannot be matched with its release; and torch 2.11's warning, in two lines,
# that a profiler keeps only its own session's events (it warns on every use). None of them is about the code.
NOISE_MARKERS = ("USDT:", "gpuGetDeviceCount failed", "Memory block of unknown size was allocated before",
                 "Profiler clears events at the end of each cycle", "_warn_once(")


def is_noise(line: str) -> bool:
    """Whether a line of stderr is one of torch's native noise lines (NOISE_MARKERS)."""
    return any(marker in line for marker in NOISE_MARKERS)
