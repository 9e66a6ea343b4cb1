"""Chapter 7's TensorRT path with the TensorRT 10/11 API: ONNX -> a serialized engine (a "plan", cached on
disk) -> an execution context that runs on torch CUDA tensors and a torch CUDA stream.

Strongly typed networks only: each layer runs in the type the ONNX model gives it, so an fp16 engine
comes from an fp16 model. TensorRT 11 builds nothing else (BuilderFlag.FP16 is gone); TensorRT 10 builds
one when asked with NetworkDefinitionCreationFlag.STRONGLY_TYPED. The simple route to an fp16 model is
`.half()` and then the export; the production route is NVIDIA's ModelOpt AutoCast on the fp32 ONNX file,
which keeps in fp32 the layers that fp16 would hurt.

By default a plan runs only with the TensorRT version and the GPU model it was built with, so the cached
file's name says both, with a hash of the model and the batch range (`plan_path_for`). Where a plan must
move, TensorRT can build a version-compatible engine (BuilderFlag.VERSION_COMPATIBLE: later TensorRT
releases run it) or a hardware-compatible one (IBuilderConfig.hardware_compatibility_level =
HardwareCompatibilityLevel.AMPERE_PLUS: any GPU from Ampere on), at some cost in speed; this module uses
neither.

`tensorrt` is imported inside the functions, so this module loads (and can be read) without TensorRT.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

from helpers.ch07_tools.onnx_runtime import model_files
from helpers.core.validate import require_instance, require_int
from helpers.support.course_folder import course_folder

TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
                "INT64": torch.int64}
MINIMUM_MAJOR = 10  # strongly typed networks: on request in 10, always in 11
TESTED_RELEASE = "11.4.0.106"  # the release the course's Makefile installs (`make tensorrt`)
DIGEST_LENGTH = 12  # hex digits of SHA-256 in a plan's file name


def tensorrt_major(version: str) -> int:
    """11 for '11.4.0.106'."""
    require_instance("version", version, str)
    if not re.match(r"\d+\.", version):
        raise ValueError(f"a TensorRT version looks like '11.4.0.106', got {version!r}")
    return int(version.split(".")[0])


def install_hint() -> str:
    """The command that installs TensorRT for this torch's CUDA release, worded for Colab or a terminal."""
    if torch.version.cuda is None:
        return "this torch is a CPU build (torch.version.cuda is None): TensorRT needs a CUDA build of torch"
    cuda_major = torch.version.cuda.split(".")[0]
    package = f"tensorrt-cu{cuda_major}=={TESTED_RELEASE}"
    if "google.colab" in sys.modules:
        return f"run `!pip install {package}` in a cell, then this cell again"
    make = " (or `make tensorrt` in the course folder)" if cuda_major == "13" and course_folder() else ""
    return f"`pip install {package}`{make}"


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    if not torch.cuda.is_available():
        build = " (this torch is a CPU build)" if torch.version.cuda is None else ""
        colab = "; on Colab, pick a GPU in Runtime > Change runtime type" if "google.colab" in sys.modules else ""
        return f"no CUDA GPU answers here{build}, and TensorRT runs only on NVIDIA GPUs{colab}"
    importlib.invalidate_caches()  # a package pip installed after this process started
    if importlib.util.find_spec("tensorrt") is None:
        return f"TensorRT is not installed: {install_hint()}"
    try:
        version = importlib.import_module("tensorrt").__version__
    except (ImportError, OSError) as error:  # the bindings without TensorRT's libraries, or the wrong CUDA
        return f"the tensorrt package does not load ({error}): {install_hint()}"
    if tensorrt_major(version) < MINIMUM_MAJOR:
        return f"TensorRT {version} is installed; this code needs {MINIMUM_MAJOR} or later: {install_hint()}"
    return None


def tensorrt_version() -> str:
    """The installed TensorRT's version string (import it only where tensorrt_missing() is None)."""
    trt = importlib.import_module("tensorrt")
    return trt.__version__


def network_flags(trt: ModuleType) -> int:
    """create_network's flags for a strongly typed network: STRONGLY_TYPED on TensorRT 10, none on 11."""
    if tensorrt_major(trt.__version__) >= 11:
        return 0  # every 11.x network is strongly typed; 11 keeps STRONGLY_TYPED only as a deprecated, ignored flag
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # without it, 10 builds a weakly typed one


def check_profile(min_shape: Sequence[int], opt_shape: Sequence[int], max_shape: Sequence[int]) -> None:
    """Raise unless the three shapes have the same rank, positive sizes and min <= opt <= max everywhere."""
    shapes = {"min_shape": min_shape, "opt_shape": opt_shape, "max_shape": max_shape}
    for name, shape in shapes.items():
        require_instance(name, shape, (tuple, list))
        for size in shape:
            require_int(f"each size of {name}", size, minimum=1)
    if len({len(shape) for shape in shapes.values()}) != 1:
        raise ValueError(f"min, opt and max shapes must have the same rank, got {min_shape}, {opt_shape}, {max_shape}")
    if not all(low <= mid <= high for low, mid, high in zip(min_shape, opt_shape, max_shape)):
        raise ValueError(f"each size must satisfy min <= opt <= max, got {min_shape}, {opt_shape}, {max_shape}")


def model_digest(onnx_path: str | Path) -> str:
    """A short SHA-256 of an ONNX model's bytes: the graph file and every external-data side file it names."""
    path, digest = Path(onnx_path), hashlib.sha256()
    for name in model_files(path):  # the graph first, then its weights files (ValueError if there is no model)
        data = (path.parent / name).read_bytes()
        digest.update(f"{name}:{len(data)}:".encode() + data)
    return digest.hexdigest()[:DIGEST_LENGTH]


def plan_path_for(onnx_path: str | Path, folder: str | Path, *, shapes: Sequence[Sequence[int]], gpu_name: str,
                  tensorrt_version: str) -> Path:
    """The cache file of the plan built from this model, batch range, TensorRT and GPU: change one, change the name."""
    require_instance("shapes", shapes, (tuple, list))
    if len(shapes) != 3:
        raise ValueError(f"shapes must be (min_shape, opt_shape, max_shape), got {len(shapes)} shapes")
    check_profile(*shapes)
    for name, text in (("gpu_name", gpu_name), ("tensorrt_version", tensorrt_version)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name} must be a non-empty string, got {text!r}")
    profile = "_".join("x".join(map(str, shape)) for shape in shapes)
    gpu = re.sub(r"[^A-Za-z0-9.]+", "-", gpu_name).strip("-")
    file_name = f"{Path(onnx_path).stem}-{model_digest(onnx_path)}-{profile}-trt{tensorrt_version.strip()}-{gpu}.plan"
    return Path(folder) / file_name


def build_plan(onnx_path: str | Path, plan_path: str | Path, *, input_name: str, min_shape: tuple[int, ...],
               opt_shape: tuple[int, ...], max_shape: tuple[int, ...], workspace_bytes: int | None = None) -> Path:
    """Parse an ONNX model into a strongly typed network, build a serialized engine and write it to plan_path."""
    check_profile(min_shape, opt_shape, max_shape)
    if workspace_bytes is not None:
        require_int("workspace_bytes (or None for TensorRT's default)", workspace_bytes, minimum=1 << 20)
    trt = importlib.import_module("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)  # holds the weights: it must live until the build is done
    if not parser.parse_from_file(str(onnx_path)):  # from the file, so that the weights' side file is found
        errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
        raise RuntimeError("TensorRT could not parse the ONNX model:\n" + "\n".join(errors))
    config = builder.create_builder_config()
    if workspace_bytes is not None:  # None keeps TensorRT's default, the device's memory; a cap rules out tactics
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, min_shape, opt_shape, max_shape)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("build_serialized_network returned None: the TensorRT log lines above say why")
    Path(plan_path).parent.mkdir(parents=True, exist_ok=True)
    Path(plan_path).write_bytes(plan)
    return Path(plan_path)


def enqueue_on_stream(context: object, stream: torch.cuda.Stream, tensors: Sequence[torch.Tensor]) -> None:
    """Run an execution context's engine on stream, after the caller's queued work and before its later work."""
    caller = torch.cuda.current_stream(stream.device)
    stream.wait_stream(caller)  # the input may still be being written by work queued on the caller's stream
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("execute_async_v3 failed: the TensorRT log lines above say why")
    for tensor in tensors:  # without this, the caching allocator could hand their memory out before the engine ran
        tensor.record_stream(stream)
    caller.wait_stream(stream)


class EngineRunner:
    """A deserialized engine with one execution context and a CUDA stream of its own, called like a module."""

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
        # On CUDA's legacy default stream (torch's current stream unless the caller chose another) TensorRT adds
        # synchronisations and warns: the engine runs on a stream of its own, on the current device like the context.
        self.stream = torch.cuda.Stream()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Run the engine on a CUDA batch; the result is a new CUDA tensor, in order on the caller's stream."""
        images = self._checked(images)
        output = self._bound(images)
        enqueue_on_stream(self.context, self.stream, (images, output))
        return output

    def _checked(self, images: torch.Tensor) -> torch.Tensor:
        """The batch, contiguous, once its device and dtype are the engine's."""
        if not images.is_cuda or images.device != self.stream.device:
            raise ValueError(f"EngineRunner needs a tensor on {self.stream.device}, got one on {images.device}")
        (input_name,) = self.inputs
        expected = TORCH_DTYPES[self.engine.get_tensor_dtype(input_name).name]
        if images.dtype != expected:
            raise TypeError(f"the engine takes {expected} input, got {images.dtype}: convert the batch first")
        return images.contiguous()

    def _bound(self, images: torch.Tensor) -> torch.Tensor:
        """Set the input's shape and both tensors' addresses; return the (new, empty) output tensor."""
        (input_name,), (output_name,) = self.inputs, self.outputs
        if not self.context.set_input_shape(input_name, tuple(images.shape)):
            raise ValueError(f"shape {tuple(images.shape)} is outside the engine's optimization profile")
        dtype = TORCH_DTYPES[self.engine.get_tensor_dtype(output_name).name]
        output = torch.empty(tuple(self.context.get_tensor_shape(output_name)), dtype=dtype, device=images.device)
        self.context.set_tensor_address(input_name, images.data_ptr())
        self.context.set_tensor_address(output_name, output.data_ptr())
        return output
