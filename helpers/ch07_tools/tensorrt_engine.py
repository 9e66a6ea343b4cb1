"""Chapter 7's TensorRT path with the TensorRT 10/11 API: ONNX -> a serialized engine (a "plan", cached on
disk) -> an execution context that runs on torch CUDA tensors and a torch CUDA stream.

TensorRT 11 builds strongly typed networks only: each layer runs in the type the ONNX model gives it,
so an fp16 engine comes from an fp16 model (there is no FP16 builder flag any more). `tensorrt` is
imported inside the functions, so this module loads (and can be read) on machines without TensorRT.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch

from helpers.core.validate import require_int

TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
                "INT64": torch.int64}
DEFAULT_WORKSPACE_BYTES = 1 << 30
MINIMUM_MAJOR = 11  # strongly typed networks only: the engine's precision is the ONNX model's


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    if not torch.cuda.is_available():
        return "no CUDA GPU answers on this machine, and TensorRT runs only on NVIDIA GPUs"
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed (`make lab` installs it where nvidia-smi answers)"
    try:
        version = importlib.import_module("tensorrt").__version__
    except (ImportError, OSError) as error:  # the bindings without TensorRT's libraries
        return f"the tensorrt package does not load: {error}"
    if int(version.split(".")[0]) < MINIMUM_MAJOR:
        return (f"TensorRT {version} is installed; this code needs {MINIMUM_MAJOR} or later, where every network is "
                "strongly typed (in 10, create_network() without flags builds a weakly typed network)")
    return None


def build_plan(onnx_path: str | Path, plan_path: str | Path, *, input_name: str, min_shape: tuple[int, ...],
               opt_shape: tuple[int, ...], max_shape: tuple[int, ...],
               workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> Path:
    """Parse an ONNX model into a strongly typed network, build a serialized engine and write it to plan_path."""
    require_int("workspace_bytes", workspace_bytes, minimum=1 << 20)
    trt = importlib.import_module("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network()  # TensorRT 11: explicit batch and strong typing, no flags to pass
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
        raise RuntimeError("TensorRT could not parse the ONNX model:\n" + "\n".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, min_shape, opt_shape, max_shape)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("build_serialized_network returned None: the TensorRT log lines above say why")
    Path(plan_path).write_bytes(plan)
    return Path(plan_path)


class EngineRunner:
    """A deserialized engine with one execution context, called like a module on CUDA tensors."""

    def __init__(self, plan_path: str | Path) -> None:
        trt = importlib.import_module("tensorrt")
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        if engine is None:
            raise RuntimeError(f"could not deserialize {plan_path}: a plan runs only with the TensorRT version "
                               "and GPU it was built for; delete it to rebuild")
        context = engine.create_execution_context()
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        self.inputs = [name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        self.outputs = [name for name in names if name not in self.inputs]
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise ValueError(f"EngineRunner handles one input and one output, got {self.inputs} -> {self.outputs}")
        self.logger, self.runtime, self.engine, self.context = logger, runtime, engine, context  # kept alive

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Run the engine on a CUDA batch on torch's current stream; the result is a new CUDA tensor."""
        if not images.is_cuda:
            raise ValueError("EngineRunner needs a CUDA tensor: move the batch with .cuda() first")
        engine, context = self.engine, self.context
        (input_name,), (output_name,) = self.inputs, self.outputs
        expected = TORCH_DTYPES[engine.get_tensor_dtype(input_name).name]
        if images.dtype != expected:
            raise TypeError(f"the engine takes {expected} input, got {images.dtype}: convert the batch first")
        images = images.contiguous()
        if not context.set_input_shape(input_name, tuple(images.shape)):
            raise ValueError(f"shape {tuple(images.shape)} is outside the engine's optimization profile")
        dtype = TORCH_DTYPES[engine.get_tensor_dtype(output_name).name]
        output = torch.empty(tuple(context.get_tensor_shape(output_name)), dtype=dtype, device=images.device)
        context.set_tensor_address(input_name, images.data_ptr())
        context.set_tensor_address(output_name, output.data_ptr())
        if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("execute_async_v3 failed: the TensorRT log lines above say why")
        return output
