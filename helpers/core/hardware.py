"""What machine are we on? Device choice and a one-line hardware report."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch

from helpers.core.validate import require_choice

DEVICE_KINDS = ("cuda", "mps", "xpu", "cpu")


def available_devices() -> list[str]:
    """Device kinds usable in this process, fastest first: the accelerator torch.accelerator reports, then the CPU."""
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return ([accelerator.type] if accelerator is not None else []) + ["cpu"]


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


# CPU flags that mean native bf16 / fp16 arithmetic: x86's AVX-512 and AMX extensions, ARM's BF16 and FP16 SIMD.
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
FP16_FLAGS = {"avx512_fp16", "amx_fp16", "asimdhp"}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU feature flags on Linux (x86 or ARM); None where the OS does not expose them."""
    if not cpuinfo.exists():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith(("flags", "Features")):  # x86 says flags, ARM says Features
            return set(line.split(":", 1)[1].split())
    return None


def cpu_frequency_ghz(cpu: Path = Path("/sys/devices/system/cpu/cpu0")) -> tuple[float, str] | None:
    """The first core's clock in GHz and what kind of reading it is, if Linux reports one.

    cpufreq's maximum (the turbo clock) where the OS exposes it; otherwise /proc/cpuinfo's 'cpu MHz',
    which is the current clock on a bare machine (low when idle) and usually the nominal one in a VM.
    """
    max_khz = cpu / "cpufreq" / "cpuinfo_max_freq"
    if max_khz.exists():
        return int(max_khz.read_text()) / 1e6, "maximum (turbo) clock"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1e3, "clock reported in /proc/cpuinfo (nominal in a VM)"
    return None


FP32_LANES = {"AVX512": 16, "AVX2": 8, "DEFAULT": 4}
ASSUMED_FMA_UNITS = 2  # per core: typical of server cores; some cores have one
ZEN4_FAMILY = 25  # AMD family 19h (Zen 3 and Zen 4): its AVX-512 runs on 256-bit units


def _cpuinfo_field(name: str) -> str | None:
    """The first value of a /proc/cpuinfo field (e.g. 'vendor_id'), if Linux reports it."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.split(":", 1)[0].strip() == name:
            return line.split(":", 1)[1].strip()
    return None


def fp32_lanes_per_cycle(isa: str) -> tuple[int, str]:
    """float32 lanes one FMA unit completes per cycle for this ISA level, and why (AMD Zen 4 halves AVX-512)."""
    require_choice("isa", isa, FP32_LANES)
    lanes = FP32_LANES[isa]
    family = _cpuinfo_field("cpu family")
    if isa == "AVX512" and _cpuinfo_field("vendor_id") == "AuthenticAMD" and family == str(ZEN4_FAMILY):
        return lanes // 2, "AVX-512 on 256-bit units (AMD family 25, Zen 4)"
    return lanes, f"{isa} vectors"


def theoretical_fp32_gflops(cores: int, ghz: float, lanes: int, fma_units: int = ASSUMED_FMA_UNITS) -> float:
    """cores x GHz x FLOPs per cycle, with FLOPs per cycle = fp32 lanes x 2 (a fused multiply-add) x FMA units.

    cores are physical cores (two hyper-threads share one core's units). Two FMA units per core is
    typical of server cores; some cores have one: the result is an estimate, not a datasheet figure.
    """
    if ghz <= 0 or cores < 1 or lanes < 1 or fma_units < 1:
        raise ValueError(f"cores, ghz, lanes and fma_units must be positive, got {cores}, {ghz}, {lanes}, "
                         f"{fma_units}")
    return cores * ghz * lanes * 2 * fma_units


def last_level_cache_bytes() -> int | None:
    """Size of the largest CPU cache Linux reports (the L3 on most machines), if any.

    That is the whole cache of the socket, shared by all its cores (and, in a VM, with other tenants).
    """
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
    return max(sizes) if sizes else None


def cgroup_cpu_limit(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """Whole cores allowed by a container's CPU quota (cgroup v2 'cpu.max', e.g. Docker --cpus or Binder), if any.

    Rounded down (at least 1): with a quota of 1.5 cores, two busy threads would already oversubscribe.
    """
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, int(quota) // int(period))


def cpu_core_count() -> int:
    """Logical CPUs this process may use (hyper-threads count twice): the affinity, capped by a CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return min(cores, limit) if limit else cores


def physical_core_count(cpus: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores among the logical CPUs this process may use (two hyper-threads share one), capped by a quota.

    Read from Linux's topology files; where they are missing, the logical count is returned.
    """
    logical = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cores = set()
    for cpu in logical:
        topology = cpus / f"cpu{cpu}" / "topology"
        try:
            cores.add(tuple((topology / name).read_text().strip() for name in ("physical_package_id", "core_id")))
        except OSError:
            return cpu_core_count()
    limit = cgroup_cpu_limit()
    count = len(cores) or cpu_core_count()
    return min(count, limit) if limit else count


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
    gpu_tf32: bool | None
    torch_version: str

    @property
    def label(self) -> str:
        """Short name for plot captions of work on the chosen device (the GPU where there is one)."""
        return self.gpu_name or self.cpu_label

    @property
    def cpu_label(self) -> str:
        """Short name for plot captions of work that runs on the CPU, even where a GPU exists."""
        return f"{self.cpu_model} ({self.cpu_isa}, {self.cpu_cores} logical CPUs)"

    def summary_line(self) -> str:
        """One line for the top of a chapter."""
        bf16 = {True: "native bf16", False: "no native bf16", None: "bf16 support unknown"}
        parts = [
            f"device={self.device}",
            f"CPU: {self.cpu_model}, ISA {self.cpu_isa}, {self.cpu_cores} logical CPUs "
            f"({physical_core_count()} physical cores), {bf16[self.cpu_native_bf16]}",
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


def _gpu_facts() -> tuple[str | None, bool | None, bool | None, bool | None]:
    """Name, native bf16, tensor cores (Volta, 7.0+) and TF32 (Ampere, 8.0+) of the first GPU, if any."""
    if torch.cuda.is_available():
        major, _minor = torch.cuda.get_device_capability(0)
        # Without including_emulation=False, GPUs older than Ampere report bf16 that runs emulated and slow.
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.cuda.get_device_name(0), bf16, major >= 7, major >= 8
    if torch.backends.mps.is_available():
        return "Apple GPU (MPS)", True, None, False
    if torch.xpu.is_available():
        return f"{torch.xpu.get_device_name(0)} (XPU)", None, None, False
    return None, None, None, None


@cache
def hardware_report() -> HardwareReport:
    """Detect this machine's CPU, GPU and torch build (cached: the hardware does not change)."""
    flags = cpu_flags()
    native_bf16 = None if flags is None else bool(flags & BF16_FLAGS)
    native_fp16 = None if flags is None else bool(flags & FP16_FLAGS)
    gpu_name, gpu_bf16, tensor_cores, tf32 = _gpu_facts()
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
        gpu_tf32=tf32,
        torch_version=torch.__version__,
    )
