"""GPU-only measurements: host-to-device copies and their overlap with compute, the price of pinning,
asynchronous launches, TF32 matmuls, CUDA graphs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

import pandas as pd
import torch

from helpers.core.amp import precision_mode, require_precision
from helpers.core.claims import Ratio, paired_ratio
from helpers.core.measure import measure_interleaved, measure_latency, synchronized_clock
from helpers.core.validate import require_instance, require_int
from helpers.ch03_hardware.precision import relative_error


def require_cuda(what: str) -> torch.device:
    """The CUDA device, or a ValueError saying that `what` needs one."""
    if not torch.cuda.is_available():
        raise ValueError(f"{what} needs a CUDA GPU; this machine has none")
    return torch.device("cuda")


def compare_host_to_device(megabytes: int = 64, *, rounds: int = 3) -> pd.DataFrame:
    """Copy bandwidth (GB/s) of one host buffer to the GPU: pageable, pinned, pinned with non_blocking=True."""
    require_int("megabytes", megabytes, minimum=1)
    device = require_cuda("measuring host-to-device copies")
    pageable = torch.ones(megabytes * 2**20, dtype=torch.uint8)  # touched: every page is real memory
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
    require_precision("tf32", device)
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    exact = (a.double() @ b.double()).float()
    rows = []
    for precision in ("fp32", "tf32"):
        with precision_mode(precision, device):
            timing = measure_latency(lambda: a @ b, min_run_time=0.5)
            error = relative_error(a @ b, exact)
        rows.append({"precision": precision, "median_ms": timing.median_ms, "relative_error": error})
    return pd.DataFrame(rows).set_index("precision")


def cuda_graph_replay(model: Callable[[torch.Tensor], torch.Tensor],
                      example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Capture one inference call of model (a module or a function of one tensor) into a CUDA graph; return a
    function that runs it on a new input.

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


def matmul_work(a: torch.Tensor, count: int) -> Callable[[], None]:
    """A function that queues `count` products a @ a: GPU work of a chosen length."""
    require_instance("a", a, torch.Tensor)
    require_int("count", count, minimum=1)

    def compute() -> None:
        for _ in range(count):
            a @ a

    return compute


def copy_beside_compute(host: torch.Tensor, compute: Callable[[], object],
                        side: torch.cuda.Stream) -> Callable[[], tuple[torch.Tensor, object]]:
    """A function that starts host's copy on the side stream, queues compute on the current stream, and
    returns (the copied tensor, compute's result): the prefetch of the next batch while this one computes."""
    device = torch.device("cuda")

    def copy_and_compute() -> tuple[torch.Tensor, object]:
        with torch.cuda.stream(side):
            copied = host.to(device, non_blocking=True)
        result = compute()
        current = torch.cuda.current_stream()
        current.wait_stream(side)  # work queued from here on may use `copied` only after the copy
        copied.record_stream(current)  # its memory, allocated on `side`, is in use on this stream too
        return copied, result

    return copy_and_compute


def one_call_ms(fn: Callable[[], object]) -> float:
    """Milliseconds of one call of fn, the GPU idle before it and finished after it."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def median_call_ms(fn: Callable[[], object], *, calls: int = 5) -> float:
    """Median of `calls` single-call GPU times of fn (one_call_ms), in ms."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    require_int("calls", calls, minimum=1)
    return statistics.median(one_call_ms(fn) for _ in range(calls))


def compare_copy_compute_overlap(megabytes: int = 256, *, matrix_size: int = 4096, rounds: int = 5,
                                 calls: int = 5) -> tuple[pd.DataFrame, dict[str, Ratio]]:
    """Time a host-to-device copy, a compute kernel sized to last as long, and both issued together,
    for a pageable and a pinned host buffer. Overlap shows as together ~ max(copy, compute), not their sum.

    Each call is timed alone, the GPU idle before it and finished after it, so that no call can overlap
    the queued work of the call before (back-to-back timing would let the next copy hide behind this
    call's matrix products even from pageable memory). Rounds alternate the variants; each round keeps
    the median of `calls` calls. Returns the table of medians, and for each host memory the Ratio of
    (copy alone + compute alone) over (together) per round: 1 is no overlap, up to 2 for equal halves.
    """
    require_int("megabytes", megabytes, minimum=1)
    require_int("matrix_size", matrix_size, minimum=64)
    require_int("rounds", rounds, minimum=3)
    require_int("calls", calls, minimum=1)
    device = require_cuda("measuring copy-compute overlap")
    hosts = {"pageable": torch.ones(megabytes * 2**20, dtype=torch.uint8)}  # touched: every page is real
    hosts["pinned"] = hosts["pageable"].pin_memory()
    side = torch.cuda.Stream()
    a = torch.randn(matrix_size, matrix_size, device=device)
    copy_ms = median_call_ms(partial(hosts["pinned"].to, device, non_blocking=True))
    one_matmul_ms = median_call_ms(lambda: a @ a)
    compute = matmul_work(a, max(1, round(copy_ms / one_matmul_ms)))
    variants = {"compute alone": compute}
    for memory, host in hosts.items():
        variants[f"{memory} copy alone"] = partial(host.to, device, non_blocking=True)
        variants[f"{memory} copy + compute"] = copy_beside_compute(host, compute, side)
    for fn in variants.values():
        fn()  # warm-up: cuBLAS handles, the caching allocator's blocks
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in order:
            per_round[name].append(median_call_ms(variants[name], calls=calls))
    compute_rounds = per_round["compute alone"]
    rows, ratios = [], {}
    for memory in hosts:
        alone, together = per_round[f"{memory} copy alone"], per_round[f"{memory} copy + compute"]
        ratios[memory] = paired_ratio([c + k for c, k in zip(alone, compute_rounds)], together)
        alone_ms, compute_ms, together_ms = (statistics.median(v) for v in (alone, compute_rounds, together))
        rows.append({"host memory": memory, "copy_ms": alone_ms, "compute_ms": compute_ms, "together_ms": together_ms,
                     "sum_ms": alone_ms + compute_ms, "max_ms": max(alone_ms, compute_ms),
                     "hidden_share": (alone_ms + compute_ms - together_ms) / min(alone_ms, compute_ms)})
    return pd.DataFrame(rows).set_index("host memory"), ratios


def pin_memory_cost(megabytes: int = 256, *, rounds: int = 3) -> pd.DataFrame:
    """What pinning a host buffer costs: the first tensor.pin_memory() of a size (page-locks new memory),
    a repeated one (PyTorch reuses its cached pinned block: about a memory copy), and an ordinary clone."""
    require_int("megabytes", megabytes, minimum=1)
    require_int("rounds", rounds, minimum=3)
    require_cuda("measuring the cost of pin_memory()")
    host = torch.ones(megabytes * 2**20, dtype=torch.uint8)  # touched: every page is real memory
    start = synchronized_clock()
    host.pin_memory()
    first_s = synchronized_clock() - start
    timings = measure_interleaved({"clone() (ordinary copy)": host.clone, "pin_memory() again": host.pin_memory},
                                  rounds=rounds, min_run_time=1.0, warmup=1)
    seconds = {"pin_memory() first time": first_s, **{name: t.median_s for name, t in timings.items()}}
    rows = [{"operation": name, "ms": s * 1e3, "GB_per_s": host.numel() / s / 1e9} for name, s in seconds.items()]
    return pd.DataFrame(rows).set_index("operation")
