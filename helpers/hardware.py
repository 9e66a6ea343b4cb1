"""What machine are we on? Device choice and a one-line hardware report."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch

from .validate import require_choice

DEVICE_KINDS = ("cuda", "mps", "cpu")


def available_devices() -> list[str]:
    """Device kinds usable in this process, fastest first."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def pick_device(preferred: str | None = None) -> torch.device:
    """The fastest available device, or `preferred` ('cuda', 'mps', 'cpu') if it is available."""
    if preferred is None:
        return torch.device(available_devices()[0])
    require_choice("preferred", preferred, DEVICE_KINDS)
    if preferred not in available_devices():
        raise ValueError(
            f"device {preferred!r} is not available here; available: {', '.join(available_devices())}"
        )
    return torch.device(preferred)


def _cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo on Linux or the platform module elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_flags() -> set[str] | None:
    """The CPU feature flags on Linux; None where the OS does not expose them."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def cgroup_cpu_limit(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """Whole cores allowed by a container's CPU quota (cgroup v2 'cpu.max', e.g. Docker --cpus or Binder), if any."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def cpu_core_count() -> int:
    """Cores this process may use: the CPU affinity, capped by a container's CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return min(cores, limit) if limit else cores


@dataclass(frozen=True)
class HardwareReport:
    """The facts about this machine that decide which optimisations pay."""

    device: str
    cpu_model: str
    cpu_isa: str
    cpu_cores: int
    cpu_native_bf16: bool | None
    cpu_native_fp16: bool | None
    gpu_name: str | None
    gpu_bf16: bool | None
    gpu_tensor_cores: bool | None
    torch_version: str

    @property
    def label(self) -> str:
        """Short name for plot captions: the device that does the work."""
        if self.gpu_name:
            return self.gpu_name
        return f"{self.cpu_model} ({self.cpu_isa}, {self.cpu_cores} cores)"

    def summary_line(self) -> str:
        """One line for the top of a chapter."""
        bf16 = {True: "native bf16", False: "no native bf16", None: "bf16 support unknown"}
        parts = [
            f"device={self.device}",
            f"CPU: {self.cpu_model}, ISA {self.cpu_isa}, {self.cpu_cores} cores, {bf16[self.cpu_native_bf16]}",
        ]
        if self.gpu_name:
            parts.append(
                f"GPU: {self.gpu_name} (bf16={self.gpu_bf16}, tensor cores={self.gpu_tensor_cores})"
            )
        else:
            parts.append("GPU: none")
        parts.append(f"torch {self.torch_version}")
        return " | ".join(parts)

    def as_dict(self) -> dict:
        """Plain dict, for the results ledger."""
        return asdict(self)


def _gpu_facts() -> tuple[str | None, bool | None, bool | None]:
    """Name, bf16 support and tensor-core presence of the first GPU, if any."""
    if torch.cuda.is_available():
        major, _minor = torch.cuda.get_device_capability(0)
        return torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported(), major >= 7
    if torch.backends.mps.is_available():
        return "Apple GPU (MPS)", True, None
    return None, None, None


@cache
def hardware_report() -> HardwareReport:
    """Detect this machine's CPU, GPU and torch build (cached: the hardware does not change)."""
    flags = _cpu_flags()
    native_bf16 = None if flags is None else bool(flags & {"avx512_bf16", "amx_bf16"})
    native_fp16 = None if flags is None else bool(flags & {"avx512_fp16", "amx_fp16"})
    gpu_name, gpu_bf16, tensor_cores = _gpu_facts()
    return HardwareReport(
        device=pick_device().type,
        cpu_model=_cpu_model(),
        cpu_isa=torch.backends.cpu.get_cpu_capability(),
        cpu_cores=cpu_core_count(),
        cpu_native_bf16=native_bf16,
        cpu_native_fp16=native_fp16,
        gpu_name=gpu_name,
        gpu_bf16=gpu_bf16,
        gpu_tensor_cores=tensor_cores,
        torch_version=torch.__version__,
    )
