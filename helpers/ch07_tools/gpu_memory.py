"""Chapter 7's GPU memory: a step's peak read from a CUDA memory snapshot, and the cuBLAS workspaces measured.

torch.cuda.memory._record_memory_history() makes the caching allocator log every action; then
torch.cuda.memory._snapshot() returns a dict whose "device_traces" holds, per device, those actions in
order: "alloc" when a tensor gets a block, "free_requested" when it lets the block go (the allocated
bytes drop there), "free_completed" when the block can be reused (later, if another stream used it),
"segment_alloc"/"segment_free" when the allocator calls cudaMalloc/cudaFree (reserved memory). Each
entry has "addr", "size" (bytes), "time_us" and "frames" (the Python stack, innermost first; empty for
blocks allocated on autograd's backward thread, which runs no Python, when stacks="python").

Record only the window you want to read (enable with clear_history=True just before it, snapshot just
after): every number here is relative to the bytes already allocated when the window began.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from helpers.core.validate import require_instance, require_int
from helpers.support.plots import title_with_hardware

STDLIB = sysconfig.get_paths()["stdlib"]
NO_FRAME = "(no Python frame: autograd's backward thread, or C++)"


def _device_trace(snapshot: dict, *, device: int = 0) -> list[dict]:
    """The allocator actions a snapshot recorded on one device, checked."""
    require_instance("snapshot", snapshot, dict)
    require_int("device", device, minimum=0)
    traces = snapshot.get("device_traces")
    if traces is None:
        raise ValueError("the snapshot has no device_traces: take it with torch.cuda.memory._snapshot()")
    if device >= len(traces) or not traces[device]:
        raise ValueError(f"no allocator action recorded on device {device}: call "
                         "torch.cuda.memory._record_memory_history() before the window, _snapshot() after it")
    if "time_us" not in traces[device][0]:
        raise ValueError("the trace entries have no time_us: this PyTorch is too old for this helper")
    return traces[device]


def _change(entry: dict) -> int:
    """How an action moves the allocated bytes: +size for an alloc, -size when a tensor lets its block go."""
    if entry["action"] == "alloc":
        return entry["size"]
    return -entry["size"] if entry["action"] == "free_requested" else 0


def _levels(trace: list[dict]) -> list[int]:
    """The allocated bytes above the window's start after each action."""
    levels, level = [], 0
    for entry in trace:
        level += _change(entry)
        levels.append(level)
    return levels


def peak_above_start(snapshot: dict, *, device: int = 0) -> int:
    """The most bytes allocated above the window's start at any moment of it (0 if it never rose)."""
    return max(0, *_levels(_device_trace(snapshot, device=device)))


def allocation_timeline(snapshot: dict, *, device: int = 0) -> pd.DataFrame:
    """The allocated memory above the window's start after each action: ms since the first action, MB."""
    trace = _device_trace(snapshot, device=device)
    start_us = trace[0]["time_us"]
    rows = [(0.0, 0.0)] + [((entry["time_us"] - start_us) / 1e3, level / 1e6)
                           for entry, level in zip(trace, _levels(trace)) if _change(entry)]
    return pd.DataFrame(rows, columns=["ms", "MB above start"])


def frame_label(frame: dict) -> str:
    """`step (train.py:51)`; a frame of a notebook cell's temporary file reads `step (notebook cell, line 51)`."""
    filename = frame["filename"].replace("\\", "/")
    if "/ipykernel_" in filename:
        return f"{frame['name']} (notebook cell, line {frame['line']})"
    return f"{frame['name']} ({filename.rsplit('/', 1)[-1]}:{frame['line']})"


def is_our_code(frame: dict) -> bool:
    """A frame of the program's own code: not torch's, not the standard library's, not a `<string>` pseudo-file."""
    filename = frame["filename"].replace("\\", "/")
    in_stdlib = frame["filename"].startswith(STDLIB) and "-packages/" not in filename
    return "/torch/" not in filename and not filename.startswith("<") and not in_stdlib


def _alive_at_peak(trace: list[dict]) -> list[dict]:
    """The alloc entries of the window still alive at its peak (those alive at its start are not in the trace)."""
    levels = _levels(trace)
    peak_index = max(range(len(levels)), key=levels.__getitem__)
    if levels[peak_index] <= 0:
        return []
    alive: dict[int, dict] = {}
    for entry in trace[:peak_index + 1]:
        if entry["action"] == "alloc":
            alive[entry["addr"]] = entry
        elif entry["action"] == "free_requested":
            alive.pop(entry["addr"], None)
    return list(alive.values())


def alive_at_peak(snapshot: dict, *, device: int = 0, top: int = 5) -> pd.DataFrame:
    """The largest blocks allocated in the window and alive at its peak, with the code that allocated each."""
    require_int("top", top, minimum=1)
    largest = sorted(_alive_at_peak(_device_trace(snapshot, device=device)), key=lambda e: e["size"], reverse=True)
    rows = []
    for entry in largest[:top]:
        frames = entry.get("frames", [])
        ours = next((frame_label(frame) for frame in frames if is_our_code(frame)), "(torch only)")
        rows.append({"MB": entry["size"] / 1e6, "allocated by": frame_label(frames[0]) if frames else NO_FRAME,
                     "called from our code": ours if frames else NO_FRAME})
    return pd.DataFrame(rows, columns=["MB", "allocated by", "called from our code"])


def plot_allocation_timeline(timeline: pd.DataFrame, *, hardware: str, title: str = "") -> Figure:
    """The allocated memory above the window's start over the window, as allocation_timeline returns it."""
    require_instance("timeline", timeline, pd.DataFrame)
    if list(timeline.columns) != ["ms", "MB above start"]:
        raise ValueError(f"timeline must come from allocation_timeline (columns ms, MB above start), "
                         f"got {list(timeline.columns)}")
    fig = Figure(figsize=(7.5, 2.8), layout="constrained")
    ax = fig.subplots()
    ax.step(timeline["ms"], timeline["MB above start"], where="post")
    peak = timeline["MB above start"].idxmax()
    ax.plot(timeline.loc[peak, "ms"], timeline.loc[peak, "MB above start"], "o", color="#d62728",
            label=f"peak: {timeline.loc[peak, 'MB above start']:.3g} MB")
    ax.set_xlabel("ms since the first allocator action of the window")
    ax.set_ylabel("MB allocated above the start")
    ax.legend(loc="lower right", fontsize=8)
    title_with_hardware(fig, title, hardware)
    return fig


def _left_behind(run: Callable[[], object]) -> int:
    """Bytes still allocated on the GPU once run()'s result is dropped: what the call kept for itself."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    result = run()
    torch.cuda.synchronize()
    del result
    return torch.cuda.memory_allocated() - before


def _backward_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A matmul and its backward, which autograd runs on its own thread (with its own cuBLAS handle) on a GPU."""
    leaf = a.clone().requires_grad_()
    (leaf @ b).sum().backward()
    return leaf


def blas_workspace_bytes() -> pd.Series:
    """The bytes cuBLAS and cuBLASLt keep as workspaces, measured as what a first tiny matmul leaves allocated.

    PyTorch gives each (cuBLAS handle, stream) pair a workspace from its caching allocator, so it counts
    in memory_allocated() and shows in memory snapshots, but it belongs to the library, not to a tensor.
    Its default is 32 MiB on Hopper and Blackwell, 8.125 MiB (:4096:2:16:8) on older GPUs;
    CUBLAS_WORKSPACE_CONFIG=:SIZE_KiB:COUNT changes it (so does torch.backends.cuda.cublas_workspace_size
    in recent releases). Each thread reserves its own handle, so autograd's backward thread gets a
    workspace of its own. cuBLASLt (used, for one, by a linear layer with a bias) shares the cuBLAS
    workspace unless TORCH_CUBLASLT_UNIFIED_WORKSPACE=0, in which case it gets one of
    CUBLASLT_WORKSPACE_SIZE KiB: its row then reads more than 0. The workspaces are freed first
    (torch._C._cuda_clearCublasWorkspaces, which PyTorch's own tests and CUDA-graph trees call), so
    the next matmul on each handle allocates its workspace again, and that is what is measured.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("blas_workspace_bytes measures a GPU's cuBLAS workspaces: no CUDA GPU answers here")
    a, b, bias = (torch.randn(size, device="cuda") for size in ((8, 8), (8, 8), (8,)))
    torch.cuda.synchronize()
    torch._C._cuda_clearCublasWorkspaces()
    return pd.Series({
        "first torch.mm (cuBLAS)": _left_behind(lambda: torch.mm(a, b)),
        "then F.linear with a bias (cuBLASLt)": _left_behind(lambda: F.linear(a, b, bias)),
        "then a backward matmul (autograd's thread)": _left_behind(lambda: _backward_matmul(a, b)),
    }, name="workspace bytes")
