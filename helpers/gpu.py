"""GPU-only measurements: host-to-device copies, asynchronous launches, TF32 matmuls, CUDA graphs."""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import torch

from .measure import measure_interleaved, measure_latency
from .precision import check_precision, precision_mode, relative_error
from .validate import require_int


def require_cuda(what: str) -> torch.device:
    """The CUDA device, or a ValueError saying that `what` needs one."""
    if not torch.cuda.is_available():
        raise ValueError(f"{what} needs a CUDA GPU; this machine has none")
    return torch.device("cuda")


def compare_host_to_device(megabytes: int = 64, *, rounds: int = 3) -> pd.DataFrame:
    """Copy bandwidth (GB/s) of one host buffer to the GPU: pageable, pinned, pinned with non_blocking=True."""
    require_int("megabytes", megabytes, minimum=1)
    device = require_cuda("measuring host-to-device copies")
    pageable = torch.empty(megabytes * 2**20, dtype=torch.uint8)
    pinned = pageable.pin_memory()
    variants = {
        "pageable": lambda: pageable.to(device),
        "pinned": lambda: pinned.to(device),
        "pinned, non_blocking": lambda: pinned.to(device, non_blocking=True),
    }
    timings = measure_interleaved(variants, rounds=rounds, min_run_time=1.0)
    rows = [{"memory": name, "median_ms": t.median_ms, "GB_per_s": pageable.numel() / t.median_s / 1e9}
            for name, t in timings.items()]
    return pd.DataFrame(rows).set_index("memory")


def launch_versus_completion_ms(fn: Callable[[], object], *, repeats: int = 20) -> tuple[float, float]:
    """Milliseconds until `repeats` calls of fn return to Python, and until the GPU has really finished them."""
    require_cuda("showing asynchronous execution")
    require_int("repeats", repeats, minimum=1)
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    returned_s = time.perf_counter() - start
    torch.cuda.synchronize()
    return returned_s * 1e3, (time.perf_counter() - start) * 1e3


def compare_tf32_matmul(size: int = 4096) -> pd.DataFrame:
    """Latency and error of one fp32 matrix product with and without TF32 tensor-core math."""
    require_int("size", size, minimum=64)
    device = require_cuda("measuring TF32")
    check_precision("tf32", device)
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    exact = (a.double() @ b.double()).float()
    rows = []
    for precision in ("fp32", "tf32"):
        with precision_mode(precision, device):
            timing = measure_latency(lambda: a @ b, min_run_time=0.5)
            error = relative_error(a @ b, exact)
        rows.append({"precision": precision, "median_ms": timing.median_ms, "relative_error": error})
    return pd.DataFrame(rows).set_index("precision")


def cuda_graph_replay(model: torch.nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Capture one inference call of model into a CUDA graph; return a function that runs it on a new input.

    The graph reads its input from one fixed buffer, so each call copies the new input there (part of
    the price of a replay), replays the recorded kernels, and returns the graph's fixed output buffer.
    """
    require_cuda("capturing a CUDA graph")
    static_input = example.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):
            model(static_input)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_output = model(static_input)

    def replay(inputs: torch.Tensor) -> torch.Tensor:
        if inputs.shape != static_input.shape:
            raise ValueError(f"the graph was captured for inputs of shape {tuple(static_input.shape)}, "
                             f"got {tuple(inputs.shape)}")
        static_input.copy_(inputs)
        graph.replay()
        return static_output

    return replay
