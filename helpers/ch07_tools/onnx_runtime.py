"""Chapter 7's ONNX Runtime plumbing: sessions with the threads and graph level set on purpose, the files a
model needs, the operators in a graph, and calibration batches for quantize_static."""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader

from helpers.core.hardware import cpu_flags
from helpers.core.validate import require_choice, require_int

GRAPH_LEVELS = {
    "off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def ort_session(model_path: str | Path, *, threads: int, level: str = "all", arena: bool = False,
                spinning: bool = True, save_optimized_to: str | Path | None = None) -> ort.InferenceSession:
    """A CPU InferenceSession with `threads` intra-op threads, one inter-op thread and the given graph level.

    ONNX Runtime's CPU memory arena keeps the largest activations of any run for reuse; without it
    (the default here) memory is freed after each run, as eager PyTorch does on the CPU, and a chapter
    holding several sessions stays within a small machine's memory. Pass arena=True to keep it.
    spinning=False stops ONNX Runtime's idle threads from spinning after a run, which would take cores from
    whatever runs next (timing it in alternation with PyTorch, say).
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


class CalibrationBatches(CalibrationDataReader):
    """Feeds real batches to ONNX Runtime's calibration, one {input name: array} at a time."""

    def __init__(self, input_name: str, batches: Iterable[torch.Tensor]) -> None:
        self._feeds = iter([{input_name: np.ascontiguousarray(batch.numpy())} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when calibration has seen them all."""
        return next(self._feeds, None)
