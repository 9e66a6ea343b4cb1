"""Tests of helpers/core/hardware.py."""

import dataclasses

import pytest
import torch

from helpers.core.hardware import (
    BF16_FLAGS, DEVICE_KINDS, HardwareReport, available_devices, cgroup_cpu_limit, cpu_flags, hardware_report,
    pick_device,
)


def test_pick_device_defaults_to_the_first_available_kind():
    assert pick_device().type == available_devices()[0]
    assert pick_device("cpu") == torch.device("cpu")


def test_pick_device_rejects_unknown_and_unavailable_devices():
    with pytest.raises(ValueError, match="must be one of 'cuda', 'mps', 'xpu', 'cpu'"):
        pick_device("tpu")
    missing = [kind for kind in DEVICE_KINDS if kind not in available_devices()]
    for kind in missing:
        with pytest.raises(ValueError, match="not available here"):
            pick_device(kind)


def test_hardware_report_describes_this_machine():
    report = hardware_report()
    assert isinstance(report, HardwareReport)
    assert report.device in DEVICE_KINDS
    assert report.cpu_isa == torch.backends.cpu.get_cpu_capability()
    assert report.cpu_cores >= 1
    assert report.torch_version == torch.__version__
    line = report.summary_line()
    assert "\n" not in line and report.cpu_isa in line and f"torch {torch.__version__}" in line
    assert report.as_dict()["cpu_cores"] == report.cpu_cores
    if not torch.cuda.is_available():
        assert report.gpu_tensor_cores is None


def test_cpu_label_names_the_cpu_even_where_the_label_names_a_gpu():
    report = hardware_report()
    assert report.cpu_model in report.cpu_label and report.cpu_isa in report.cpu_label
    with_gpu = dataclasses.replace(report, device="cuda", gpu_name="Some GPU", gpu_bf16=True, gpu_tensor_cores=True)
    assert with_gpu.label == "Some GPU"
    assert with_gpu.cpu_label == report.cpu_label
    without_gpu = dataclasses.replace(report, gpu_name=None)
    assert without_gpu.label == without_gpu.cpu_label


@pytest.mark.parametrize(("content", "cores"), [("200000 100000\n", 2), ("150000 100000\n", 1), ("50000 100000\n", 1),
                                                ("max 100000\n", None), ("garbage\n", None)])
def test_cgroup_cpu_limit_reads_the_container_quota(tmp_path, content, cores):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(content)
    assert cgroup_cpu_limit(cpu_max) == cores


def test_cgroup_cpu_limit_without_a_cgroup_file(tmp_path):
    assert cgroup_cpu_limit(tmp_path / "missing") is None


def test_cpu_frequency_prefers_the_cpufreq_maximum(tmp_path):
    from helpers.core.hardware import cpu_frequency_ghz

    (tmp_path / "cpufreq").mkdir()
    (tmp_path / "cpufreq" / "cpuinfo_max_freq").write_text("3500000\n")
    assert cpu_frequency_ghz(tmp_path) == (3.5, "maximum (turbo) clock")


def test_theoretical_peak_is_cores_times_clock_times_flops_per_cycle():
    from helpers.core.hardware import theoretical_fp32_gflops

    assert theoretical_fp32_gflops(2, 2.5, 16) == 2 * 2.5 * 16 * 2 * 2
    assert theoretical_fp32_gflops(4, 3.0, 8, fma_units=1) == 4 * 3.0 * 8 * 2
    with pytest.raises(ValueError, match="must be positive"):
        theoretical_fp32_gflops(2, 2.5, 0)


def test_zen4_runs_avx512_at_half_the_lanes(monkeypatch):
    from helpers.core.hardware import fp32_lanes_per_cycle

    fields = {"vendor_id": "AuthenticAMD", "cpu family": "25"}
    monkeypatch.setattr("helpers.core.hardware._cpuinfo_field", fields.get)
    assert fp32_lanes_per_cycle("AVX512")[0] == 8
    assert fp32_lanes_per_cycle("AVX2")[0] == 8
    fields["cpu family"] = "26"  # Zen 5: full-width AVX-512
    assert fp32_lanes_per_cycle("AVX512")[0] == 16
    with pytest.raises(ValueError, match="isa must be one of"):
        fp32_lanes_per_cycle("SVE")


def test_physical_cores_count_hyper_threads_once(tmp_path, monkeypatch):
    from helpers.core.hardware import cpu_core_count, physical_core_count

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr("helpers.core.hardware.cgroup_cpu_limit", lambda: None)
    for cpu, core in enumerate([0, 0, 1, 1]):  # two cores, two hyper-threads each
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert physical_core_count(tmp_path) == 2
    assert cpu_core_count() == 4
    assert physical_core_count(tmp_path / "missing") == 4


def test_cpu_flags_read_x86_flags_and_arm_features(tmp_path):
    x86, arm = tmp_path / "x86", tmp_path / "arm"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 sse\n")
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimdhp bf16 i8mm\n")
    assert cpu_flags(x86) & BF16_FLAGS == {"avx512_bf16"}
    assert cpu_flags(arm) & BF16_FLAGS == {"bf16"}
    assert cpu_flags(tmp_path / "absent") is None
