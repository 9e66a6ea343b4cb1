"""torch.compile's first call from a cold or a warm cache: making this process forget what it compiled.

Inductor keeps what it compiled (generated C++ or Triton code and the built kernels) in an on-disk
cache directory, TORCHINDUCTOR_CACHE_DIR, and, within one process, in memory as well. A new process
pointed at an empty directory compiles everything (a cold start); a new process that finds the
directory filled by an earlier run loads from it (a warm start). forget_compiled_code lets one
notebook kernel measure both: it clears the in-memory caches and leaves the disk cache alone.
"""

from __future__ import annotations

import torch


def forget_compiled_code() -> None:
    """Clear this process's in-memory compile caches (Dynamo's and Inductor's), not Inductor's disk cache."""
    import torch._inductor.utils  # imported here: importing Inductor early would fix its settings early

    torch.compiler.reset()  # Dynamo: the traced graphs and their guards
    torch._inductor.utils.clear_caches()  # Inductor: the generated modules and kernels loaded in memory
