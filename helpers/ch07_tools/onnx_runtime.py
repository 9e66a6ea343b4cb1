"""Chapter 7's ONNX Runtime plumbing: sessions with the threads and graph level set on purpose, the files a
model needs, the operators in a graph, ONNX Runtime's own profiler read per operator type, and calibration
batches for quantize_static."""

from __future__ import annotations

import json
import platform
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch
from onnxruntime.quantization import CalibrationDataReader

from helpers.core.hardware import cpu_flags
from helpers.core.validate import require_choice, require_instance, require_int

_LEVELS = ort.GraphOptimizationLevel
# The graph levels, each adding to the one before: "layout" (ORT_ENABLE_LAYOUT, in recent releases such as 1.32;
# left out where the installed ONNX Runtime lacks it) adds the CPU's blocked NCHWc layout to the extended fusions;
# "all" (ORT_ENABLE_ALL, the default) enables every level.
GRAPH_LEVELS = {"off": _LEVELS.ORT_DISABLE_ALL, "basic": _LEVELS.ORT_ENABLE_BASIC,
                "extended": _LEVELS.ORT_ENABLE_EXTENDED}
if hasattr(_LEVELS, "ORT_ENABLE_LAYOUT"):
    GRAPH_LEVELS["layout"] = _LEVELS.ORT_ENABLE_LAYOUT
GRAPH_LEVELS["all"] = _LEVELS.ORT_ENABLE_ALL


def ort_session(model_path: str | Path, *, threads: int, level: str = "all", arena: bool = False,
                spinning: bool = True, save_optimized_to: str | Path | None = None,
                profile_prefix: str | Path | None = None) -> ort.InferenceSession:
    """A CPU InferenceSession with `threads` intra-op threads, one inter-op thread and the given graph level.

    ONNX Runtime's CPU memory arena keeps the largest activations of any run for reuse; without it
    (the default here) memory is freed after each run, as eager PyTorch does on the CPU, and a chapter
    holding several sessions stays within a small machine's memory. Pass arena=True to keep it.
    spinning=False stops ONNX Runtime's idle threads from spinning after a run, which would take cores from
    whatever runs next (timing it in alternation with PyTorch, say).
    profile_prefix turns ONNX Runtime's profiler on: session.end_profiling() then writes
    `<profile_prefix>_<date and time>.json` and returns its path.
    """
    require_int("threads", threads, minimum=1)
    require_choice("level", level, GRAPH_LEVELS)
    if not Path(model_path).is_file():
        raise ValueError(f"no ONNX model at {model_path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = GRAPH_LEVELS[level]
    options.enable_cpu_mem_arena = arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if save_optimized_to is not None:
        options.optimized_model_filepath = str(save_optimized_to)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def reduce_range_advised() -> bool:
    """True on x86 CPUs without int8 dot-product instructions (VNNI, AMX), where ONNX Runtime advises
    reduce_range=True: 7-bit weights, so that u8 x s8 products cannot saturate `vpmaddubsw`'s 16 bits."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = cpu_flags()
    return flags is None or not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}  # unknown: the safe setting


def ort_predict(session: ort.InferenceSession, images: torch.Tensor) -> torch.Tensor:
    """Run a single-input, single-output session on a torch batch and return a torch tensor."""
    (model_input,) = session.get_inputs()
    return torch.from_numpy(session.run(None, {model_input.name: images.numpy()})[0])


def model_files(model_path: str | Path) -> dict[str, int]:
    """Every file a saved ONNX model needs, with its size in bytes: the graph, and its weights file if any."""
    path = Path(model_path)
    if not path.is_file():
        raise ValueError(f"no ONNX model at {path}")
    graph = onnx.load(str(path), load_external_data=False)
    side_files = {entry.value for tensor in graph.graph.initializer for entry in tensor.external_data
                  if entry.key == "location"}
    return {name: (path.parent / name).stat().st_size for name in [path.name, *sorted(side_files)]}


def operator_counts(model_path: str | Path) -> dict[str, int]:
    """How many nodes of each operator type the graph holds, most frequent first."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    return dict(Counter(node.op_type for node in graph.node).most_common())


def operator_time_table(profile_json: str | Path, *, skip_runs: int = 0) -> pd.DataFrame:
    """ms per run, calls per run and share of the run of each operator type, from ONNX Runtime's profile JSON.

    The file is Chrome-trace JSON (a list of complete "X" events, times in µs): one "model_run" event per
    session.run, and one event per node executed, of category "Node", named `<node>_kernel_time`, with its
    operator type in args["op_name"]. The first skip_runs runs (warm-up) are left out; shares are of the mean
    "model_run" time, so what they leave below 100% is the run's time outside the kernels.
    """
    path = Path(profile_json)
    if not path.is_file():
        raise ValueError(f"no profile at {path}")
    events = json.loads(path.read_text())
    runs = sorted((event for event in events if event.get("name") == "model_run"), key=lambda event: event["ts"])
    kept = runs[require_int("skip_runs", skip_runs, minimum=0):]
    if not kept:
        raise ValueError(f"{path.name} has {len(runs)} model_run event(s), none left after skipping {skip_runs}: "
                         "run the session more times before end_profiling()")
    kernels = pd.DataFrame([{"operator": event["args"]["op_name"], "us": event["dur"]} for event in events
                            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
                            and event["ts"] >= kept[0]["ts"]])
    per_run = kernels.groupby("operator")["us"].agg(["sum", "count"]) / len(kept)
    run_us = sum(event["dur"] for event in kept) / len(kept)
    table = pd.DataFrame({"ms per run": per_run["sum"] / 1e3, "calls per run": per_run["count"],
                          "share of run (%)": 100 * per_run["sum"] / run_us})
    return table.sort_values("ms per run", ascending=False)


def profile_operators(model_path: str | Path, feeds: dict[str, np.ndarray], *, runs: int, folder: str | Path,
                      threads: int = 1, level: str = "all", warmup: int = 1) -> tuple[pd.DataFrame, Path]:
    """Run a profiled session warmup + runs times on feeds; return operator_time_table of the runs and the JSON path.

    The JSON, written into folder, is Chrome-trace format: Perfetto (ui.perfetto.dev) or chrome://tracing draws it.
    """
    require_instance("feeds", feeds, dict)
    require_int("runs", runs, minimum=1)
    require_int("warmup", warmup, minimum=0)
    if not Path(folder).is_dir():
        raise ValueError(f"folder {folder} does not exist")
    session = ort_session(model_path, threads=threads, level=level,
                          profile_prefix=Path(folder) / f"{Path(model_path).stem}_profile")
    for _ in range(warmup + runs):
        session.run(None, feeds)
    json_path = Path(session.end_profiling())
    return operator_time_table(json_path, skip_runs=warmup), json_path


class CalibrationBatches(CalibrationDataReader):
    """Feeds real batches to ONNX Runtime's calibration, one {input name: array} at a time."""

    def __init__(self, input_name: str, batches: Iterable[torch.Tensor]) -> None:
        self._feeds = iter([{input_name: np.ascontiguousarray(batch.numpy())} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when calibration has seen them all."""
        return next(self._feeds, None)
