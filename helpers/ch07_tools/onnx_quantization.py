"""Chapter 7's look inside ONNX Runtime's int8 convolutions: which ones a session fused into `QLinearConv`,
which ones it left in float, and the evidence for why.

`quantize_static(..., quant_format=QuantFormat.QDQ)` writes QuantizeLinear/DequantizeLinear pairs around each
convolution's input and output. A session fuses DequantizeLinear -> Conv -> QuantizeLinear into one
`QLinearConv` only where the input and output are quantized to the same type, and, on x86 (where ONNX Runtime
does not allow int8 activations in these fusions), only where that type is uint8. With signed activations
(S8S8) its QDQS8ToU8Transformer first turns an int8 QuantizeLinear and its DequantizeLinear into uint8, but only
where a single DequantizeLinear reads the quantized tensor; a tensor two nodes read (a residual branch) stays
int8, and the convolutions on either side of it stay float. `convolution_table` reads the graph a session saved
at the extended level (`ort_session(..., level="extended", save_optimized_to=...)`) and shows, for each
convolution, how it runs and the type and number of readers of the quantized tensors it reads and writes.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import onnx
import pandas as pd
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from helpers.ch07_tools.onnx_runtime import CalibrationBatches, ort_session, reduce_range_advised
from helpers.core.validate import require_choice

ACTIVATION_TYPES = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
RUNS_AS = {"Conv": "float Conv", "QLinearConv": "int8 QLinearConv"}


def _load(model_path: str | Path) -> onnx.GraphProto:
    """The graph of an ONNX file, without its external weights (names and types are enough here)."""
    if not Path(model_path).is_file():
        raise ValueError(f"no ONNX model at {model_path}")
    return onnx.load(str(model_path), load_external_data=False).graph


class _Graph:
    """A graph's nodes with, for each tensor, the node writing it, the nodes reading it, and initializers' types."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = list(graph.node)
        self.producers = {output: node for node in graph.node for output in node.output}
        self.readers: defaultdict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in dict.fromkeys(node.input):  # a node reading a tensor twice reads it once here
                self.readers[name].append(node)
        self.types = {tensor.name: onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
                      for tensor in graph.initializer}


def _layer_name(tensor_name: str) -> str:
    """The PyTorch layer a quantized weight came from: 'layer1.0.conv1.weight_quantized' -> 'layer1.0.conv1'."""
    return tensor_name.removesuffix("_quantized").removesuffix(".weight")


def _quantized(tensor: str, zero_point: str, graph: _Graph) -> dict[str, object]:
    """A quantized tensor's type (its zero point's; uint8 when none is given) and the number of nodes reading it."""
    return {"type": graph.types.get(zero_point, "uint8" if not zero_point else "unknown"),
            "readers": len(graph.readers[tensor])}


def _zero_point(node: onnx.NodeProto) -> str:
    """The zero-point input of a QuantizeLinear or DequantizeLinear node ("" if it has none)."""
    return node.input[2] if len(node.input) > 2 else ""


def _float_conv_sides(node: onnx.NodeProto, graph: _Graph) -> tuple[dict[str, object], dict[str, object]]:
    """The quantized tensors around a float Conv: what its input's DequantizeLinear reads, what its QuantizeLinear
    writes ("float" where there is no such step)."""
    dequantize = graph.producers.get(node.input[0])
    if dequantize is not None and dequantize.op_type == "DequantizeLinear":
        source = _quantized(dequantize.input[0], _zero_point(dequantize), graph)
    else:
        source = {"type": "float", "readers": len(graph.readers[node.input[0]])}
    readers = graph.readers[node.output[0]]
    if len(readers) == 1 and readers[0].op_type == "QuantizeLinear":
        target = _quantized(readers[0].output[0], _zero_point(readers[0]), graph)
    else:
        target = {"type": "float", "readers": len(readers)}
    return source, target


def _convolution_row(node: onnx.NodeProto, graph: _Graph) -> dict[str, object]:
    """How one convolution runs, with the type and number of readers of its quantized input and output."""
    # QLinearConv's inputs: x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, bias
    if node.op_type == "QLinearConv":
        source = _quantized(node.input[0], node.input[2], graph)
        target = _quantized(node.output[0], node.input[7], graph)
        weight = node.input[3]
    else:
        source, target = _float_conv_sides(node, graph)
        weight_dequantize = graph.producers.get(node.input[1])
        weight = node.input[1] if weight_dequantize is None else weight_dequantize.input[0]
    return {"layer": _layer_name(weight), "ONNX node": node.name, "runs as": RUNS_AS[node.op_type],
            "input quantized as": source["type"], "readers of the quantized input": source["readers"],
            "output quantized as": target["type"], "readers of the quantized output": target["readers"]}


def convolution_table(extended_path: str | Path) -> pd.DataFrame:
    """One row per convolution of a QDQ model's optimized graph: how it runs, and the type and number of readers
    of the quantized tensors it reads and writes."""
    graph = _Graph(_load(extended_path))
    rows = [_convolution_row(node, graph) for node in graph.nodes if node.op_type in RUNS_AS]
    if not rows:
        raise ValueError(f"{Path(extended_path).name} has no Conv or QLinearConv node")
    return pd.DataFrame(rows).set_index("layer")


def _random_batch(graph: onnx.GraphProto, batch: int = 2) -> tuple[str, torch.Tensor]:
    """The single float input's name and a random batch of its shape (symbolic dimensions set to batch)."""
    if len(graph.input) != 1 or graph.input[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ValueError("the model must have exactly one float32 input")
    dims = graph.input[0].type.tensor_type.shape.dim
    return graph.input[0].name, torch.rand(*[dim.dim_value or batch for dim in dims])


def extended_int8_graph(model_path: str | Path, folder: str | Path, *, activations: str) -> Path:
    """Quantize a float ONNX file as the chapter does (static, QDQ, per-channel int8 weights) and save a session's
    extended-level graph of it into folder; return that file's path.

    The calibration batch is random: which convolutions are fused depends on the graph and the types, not on the
    activation ranges. activations is "u8" (U8S8) or "s8" (S8S8, ONNX Runtime's default).
    """
    require_choice("activations", activations, ACTIVATION_TYPES)
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder {folder} does not exist")
    input_name, batch = _random_batch(_load(model_path))
    single, prepared, quantized = (folder / f"{stage}.onnx" for stage in ("float", "prepared", f"int8_{activations}"))
    onnx.save_model(onnx.load(str(model_path)), str(single))  # one file: quant_pre_process loses a .data side file
    quant_pre_process(str(single), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(quantized), CalibrationBatches(input_name, [batch]),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=ACTIVATION_TYPES[activations],
                    weight_type=QuantType.QInt8, reduce_range=reduce_range_advised())
    extended = folder / f"int8_{activations}_extended.onnx"
    ort_session(quantized, threads=1, level="extended", save_optimized_to=extended)
    return extended
