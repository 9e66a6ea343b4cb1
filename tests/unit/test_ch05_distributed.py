"""Tests of helpers/ch05_distributed/: launches leave no process behind, DDP is correct and its knobs and bucket
timeline are what the profiler shows, a restart loses nothing (on one node and across two), FSDP2 and tensor
parallelism send what theory predicts and train like DDP, a hang ends; the cost model, the memory arithmetic, the
charts and the exercise checks."""

import math
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import psutil
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard

import helpers.ch05_distributed.jobs.ddp as job_ddp
import helpers.ch05_distributed.jobs.fsdp as job_fsdp
import helpers.ch05_distributed.jobs.overlap as job_overlap
import helpers.ch05_distributed.jobs.resume as job_resume
from helpers.ch05_distributed.bucket_timeline import overlapped_share, plot_bucket_timeline
from helpers.ch05_distributed.comm_model import (
    ACCELERATOR_PEAK_FLOPS, COMPUTE_CHOICES, DDP_FIRST_BUCKET_BYTES, LARGEST_WORLD, LOOPBACK,
    PUBLISHED_LINKS_BYTES_PER_S, THIS_CPU, TYPICAL_LATENCY_S, AlphaBeta, bucket_sizes, compute_time_s,
    computes_on_link, fit_alpha_beta, link_menu, model_step_inputs, predict_step, predicted_step_table,
    published_link, require_pairing, ring_allreduce_bytes_per_worker, scaling_table,
)
from helpers.ch05_distributed.exercises import check_bucketed_allreduce, check_least_sharded_stage
from helpers.ch05_distributed.jobs.common import digits_mlp, flat_parameters, job_parser, process_group
from helpers.ch05_distributed.jobs.ddp import DEFAULT
from helpers.ch05_distributed.jobs.hang import key_line
from helpers.ch05_distributed.jobs.tensor_parallel import collectives_in
from helpers.ch05_distributed.jobs.traces import TRACE_DTYPES, covered, union
from helpers.ch05_distributed.launch import launch, launch_nodes, torchrun_command
from helpers.ch05_distributed.plots import plot_allreduce_fit, plot_scaling
from helpers.ch05_distributed.sharding_memory import bytes_per_parameter, least_sharded_stage, workers_needed
from tests.conftest import ROOT

@pytest.fixture
def job_tmp(tmp_path, monkeypatch):
    """A private temporary folder: every process a launch starts has it in its command line."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def processes_mentioning(marker: str) -> list[psutil.Process]:
    """Live processes whose command line contains marker (a job's temporary folder)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found



def test_successful_launch_returns_the_result_and_leaves_nothing(job_tmp):
    run = launch("helpers.ch05_distributed.jobs.allreduce", nproc=2, args=["--largest-bytes", 1024, "--rounds", 1], echo=False)
    assert run.ok and run.result["world_size"] == 2 and run.result["sizes_bytes"] == [8, 32, 128, 512]
    assert {line.split(":")[0] for line in run.lines if line.startswith("[default")} == {"[default0]", "[default1]"}
    assert processes_mentioning(str(job_tmp)) == []


def test_failed_rank_fails_the_job_and_leaves_nothing(job_tmp):
    args = ["--checkpoint-dir", job_tmp / "ckpt", "--kill-rank", 1, "--kill-at-step", 2]
    run = launch("helpers.ch05_distributed.jobs.resume", nproc=2, args=args, echo=False, check=False)
    assert run.returncode != 0 and run.result is None
    assert processes_mentioning(str(job_tmp)) == []
    with pytest.raises(RuntimeError, match="helpers.ch05_distributed.jobs.resume failed"):
        launch("helpers.ch05_distributed.jobs.resume", nproc=2, args=args, echo=False)
    assert processes_mentioning(str(job_tmp)) == []


def test_timeout_stops_every_process(job_tmp):
    with pytest.raises(TimeoutError, match="longer than 4 s"):
        launch("helpers.ch05_distributed.jobs.resume", nproc=2, timeout_s=4, echo=False,
               args=["--checkpoint-dir", job_tmp / "ckpt", "--steps", 100000, "--checkpoint-every", 100000])
    assert processes_mentioning(str(job_tmp)) == []


def test_interrupt_stops_every_process(tmp_path):
    script = textwrap.dedent(f"""
        import signal, tempfile, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a kernel; a background shell job ignores it
        sys.path.insert(0, {str(ROOT)!r})
        tempfile.tempdir = {str(tmp_path)!r}
        from helpers.ch05_distributed.launch import launch
        launch("helpers.ch05_distributed.jobs.resume", nproc=2, echo=True, timeout_s=300,
               args=["--checkpoint-dir", {str(tmp_path / "ckpt")!r}, "--steps", "100000", "--checkpoint-every", "100000"])
    """)
    log = tmp_path / "notebook.log"
    with open(log, "w") as out:
        notebook = subprocess.Popen([sys.executable, "-c", script], stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while log.read_text().count("starting at step 0") < 2:  # both workers are training
        assert notebook.poll() is None, f"the launch ended early:\n{log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"the job never started:\n{log.read_text()[-2000:]}"
        time.sleep(0.2)
    assert len(processes_mentioning(str(tmp_path))) >= 3  # torchrun and its two workers
    notebook.send_signal(signal.SIGINT)  # what the kernel's stop button sends
    notebook.wait(timeout=60)
    assert notebook.returncode != 0
    assert processes_mentioning(str(tmp_path)) == []


def test_ddp_matches_one_process_and_the_ranks_agree(job_tmp):
    result = launch("helpers.ch05_distributed.jobs.ddp", nproc=2, args=["--skip-timing", "--steps", 10], echo=False).result
    fp64, fp32 = result["correctness"]["float64"], result["correctness"]["float32"]
    assert fp64["ranks_bitwise_equal"] and fp32["ranks_bitwise_equal"]
    assert fp64["max_abs_diff_ddp_vs_single"] <= job_ddp.float64_tolerance(fp64)
    assert fp32["max_abs_diff_ddp_vs_single"] < 1e-3 * fp32["max_abs_parameter"]
    no_sync = result["no_sync"]
    assert no_sync["without no_sync"]["calls"] == 4 * no_sync["with no_sync"]["calls"] > 0
    assert no_sync["without no_sync"]["bytes"] == 4 * no_sync["with no_sync"]["bytes"]
    assert no_sync["max_abs_gradient_difference"] <= 1e-6 * no_sync["max_abs_gradient"]


RESUME = "helpers.ch05_distributed.jobs.resume"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The resume job's 12 steps on two nodes, never interrupted: what every restarted run must end with."""
    run = launch_nodes(RESUME, nodes=2, echo=False,
                       args=["--checkpoint-dir", tmp_path_factory.mktemp("whole") / "ckpt", "--steps", 12])
    assert run.result["attempt"] == 0 and run.result["resumed_from_step"] == 0
    assert {line.split(" ")[0] for line in run.lines if line.startswith("node")} == {"node0", "node1"}
    return run.result


def test_restart_on_one_node_loses_nothing(job_tmp, uninterrupted):
    killed = launch(RESUME, nproc=2, max_restarts=1, echo=False,
                    args=["--checkpoint-dir", job_tmp / "a", "--steps", 12, "--kill-rank", 1, "--kill-at-step", 7])
    assert killed.result["attempt"] == 1 and killed.result["resumed_from_step"] == 5
    assert any("killing this process at step 7" in line for line in killed.lines)
    assert killed.result["parameters_sha256"] == uninterrupted["parameters_sha256"]
    assert processes_mentioning(str(job_tmp)) == []


@pytest.mark.parametrize("survivors_busy_s", [0, 60], ids=["peer-fails-at-once", "peer-busy-like-nccl"])
def test_restart_across_nodes_loses_nothing(job_tmp, uninterrupted, survivors_busy_s):
    """Rank 1 (node 1) dies at step 7. Its peer either fails at once in the next all-reduce (gloo), or is busy, as an
    NCCL rank blocked in a collective would be: then only the membership change restarts it, its agent counts no
    restart, and the two nodes come back with different TORCHELASTIC_RESTART_COUNTs (a store prefixed with that
    count hung here). The job must finish with the uninterrupted run's parameters, node 0 restarted uncounted."""
    run = launch_nodes(RESUME, nodes=2, max_restarts=1, echo=False,
                       args=["--checkpoint-dir", job_tmp / "a", "--steps", 12, "--kill-rank", 1, "--kill-at-step", 7,
                             "--survivors-busy-s", survivors_busy_s])
    assert run.ok and run.result["resumed_from_step"] == 5
    assert any(line.startswith("node1 ") and "killing this process at step 7" in line for line in run.lines)
    assert any(line.startswith("node1 ") and "attempt 1, starting at step 5" in line for line in run.lines)
    if survivors_busy_s:
        assert run.result["attempt"] == 0  # node 0 was restarted by the membership change: had it woken and failed,
        # its agent would have counted a restart (attempt 1)
    assert run.result["parameters_sha256"] == uninterrupted["parameters_sha256"]
    assert processes_mentioning(str(job_tmp)) == []


def test_latest_checkpoint_ignores_an_unfinished_one(tmp_path):
    assert job_resume.latest_checkpoint(tmp_path) == (0, None)
    for step in (5, 9999, 10000, 10005):
        (tmp_path / f"step_{step:04d}").mkdir()
    for step in (5, 9999, 10000):
        (tmp_path / f"step_{step:04d}" / ".metadata").write_text("")
    assert job_resume.latest_checkpoint(tmp_path) == (10000, tmp_path / "step_10000")


def test_rank_batches_are_disjoint_across_ranks_and_change_with_the_epoch():
    ranks = [job_ddp.rank_batches(100, rank=r, world=2, per_rank=10, steps=10) for r in (0, 1)]
    for a, b in zip(*ranks):
        assert not set(a) & set(b)
    epoch0, epoch1 = ranks[0][:5], ranks[0][5:]  # 50 indices per rank per epoch: 5 steps of 10
    assert epoch0 != epoch1 and sorted(sum(epoch0, [])) != sorted(sum(epoch1, []))


def test_torchrun_command_and_its_checks():
    command = torchrun_command("helpers.ch05_distributed.jobs.ddp", nproc_per_node=2, args=["--steps", 3])
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert command[-4:] == ["-m", "helpers.ch05_distributed.jobs.ddp", "--steps", "3"]
    nodes = torchrun_command("helpers.ch05_distributed.jobs.ddp", nproc_per_node=1, nnodes=2, rdzv_endpoint="127.0.0.1:29500")
    assert "--rdzv-endpoint=127.0.0.1:29500" in nodes and "--standalone" not in nodes
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        torchrun_command("helpers.ch05_distributed.jobs.ddp", nproc_per_node=1, nnodes=2)
    with pytest.raises(ValueError, match="nproc_per_node"):
        torchrun_command("helpers.ch05_distributed.jobs.ddp", nproc_per_node=0)
    with pytest.raises(TypeError):
        torchrun_command(3, nproc_per_node=1)
    with pytest.raises(ValueError, match="nodes"):
        launch_nodes("helpers.ch05_distributed.jobs.ddp", nodes=1)


def test_ring_allreduce_bytes_and_time():
    assert ring_allreduce_bytes_per_worker(100, 1) == 0
    assert ring_allreduce_bytes_per_worker(100, 2) == 100
    assert ring_allreduce_bytes_per_worker(100, 4) == 150
    link = AlphaBeta(1e-5, 1e9)
    assert link.allreduce_s(1e6, 1) == 0
    assert link.allreduce_s(1e6, 4) == pytest.approx(6e-5 + 1.5e-3)


def test_fit_alpha_beta_recovers_the_link_it_was_given():
    truth = AlphaBeta(5e-5, 2e9)
    sizes = [2 ** k for k in range(3, 26, 2)]
    noise = np.random.default_rng(0).uniform(0.97, 1.03, len(sizes))
    fit = fit_alpha_beta(sizes, [truth.allreduce_s(s, 2) * n for s, n in zip(sizes, noise)], world=2)
    assert fit.latency_s == pytest.approx(truth.latency_s, rel=0.1)
    assert fit.bandwidth_bytes_per_s == pytest.approx(truth.bandwidth_bytes_per_s, rel=0.1)
    with pytest.raises(ValueError, match="at least 3"):
        fit_alpha_beta([1, 2], [1.0, 2.0], world=2)
    with pytest.raises(ValueError, match="positive"):
        fit_alpha_beta([1, 2, 3], [1.0, -2.0, 3.0], world=2)
    with pytest.raises(ValueError, match="non-positive"):
        fit_alpha_beta([8, 1024, 2 ** 20], [3.0, 2.0, 1.0], world=2)  # time falls with size


def test_predict_step_with_and_without_overlap():
    link = AlphaBeta(0.0, 1e9)
    inputs = dict(compute_s=0.010, backward_s=0.006, gradient_bytes=4e6, link=link, bucket_bytes=1e6)
    alone = predict_step(world=1, overlap=True, **inputs)
    assert alone.step_s == 0.010 and alone.efficiency == 1.0 and alone.comm_share == 0.0
    serial = predict_step(world=2, overlap=False, **inputs)
    assert serial.comm_s == pytest.approx(0.004) and serial.step_s == pytest.approx(0.014)
    hidden = predict_step(world=2, overlap=True, **inputs)
    last_bucket = 4e6 - 2 ** 20 - 2e6  # 1 MiB first, two of 1 MB, then the rest
    assert hidden.exposed_comm_s == pytest.approx(last_bucket / 1e9)  # the last bucket cannot hide
    assert hidden.efficiency == pytest.approx(0.010 / (0.010 + last_bucket / 1e9))
    with pytest.raises(ValueError, match="cannot exceed"):
        predict_step(world=2, overlap=True, **{**inputs, "backward_s": 0.02})


def test_bucket_sizes_follow_ddp():
    assert bucket_sizes(10e6, 4e6) == [2 ** 20, 4e6, 4e6, 10e6 - 2 ** 20 - 8e6]
    assert bucket_sizes(1000, 4e6) == [1000]
    assert sum(bucket_sizes(123_456_789, 25 * 2 ** 20)) == pytest.approx(123_456_789)
    with pytest.raises(ValueError, match="bucket_bytes"):
        bucket_sizes(10, 0)


def test_alpha_beta_rejects_impossible_links():
    with pytest.raises(ValueError, match="latency_s"):
        AlphaBeta(-1e-6, 1e9)
    with pytest.raises(ValueError, match="bandwidth_bytes_per_s"):
        AlphaBeta(1e-6, 0)


def test_exercise_checks_accept_the_answer_and_reject_shortcuts():
    # Exercise 1: 13e9 x 16 B replicated, 5.5 B (ZeRO-1) = 71.5 GB + 30 GB too much; 3.75 B (ZeRO-2) = 48.75 + 30 fits.
    assert check_least_sharded_stage("E1", "ZeRO-2")
    assert not check_least_sharded_stage("E1", "ZeRO-1") and not check_least_sharded_stage("E1", "ZeRO-3 / FSDP full shard")
    assert not check_least_sharded_stage("E1", "zero two")  # not one of the stage names: the check lists them
    mib, alpha, beta, n = 2 ** 20, 50e-6, 10e9 / 8, 64
    full, last = divmod(4 * 25.6e6 - mib, 25 * mib)
    buckets = [mib] + [25 * mib] * int(full) + [last]
    right = 1e3 * sum(2 * (n - 1) * alpha + 2 * (n - 1) / n * b / beta for b in buckets)
    assert len(buckets) == 5 and check_bucketed_allreduce("E2", 5, right)
    no_latency = 1e3 * 2 * (n - 1) / n * 4 * 25.6e6 / beta
    one_bucket = no_latency + 1e3 * 2 * (n - 1) * alpha
    no_first_bucket = no_latency + 4 * 1e3 * 2 * (n - 1) * alpha  # four 25 MiB-or-less buckets: 3.3% low
    for wrong in (no_latency, one_bucket, no_first_bucket, 200.0):
        assert not check_bucketed_allreduce("E2", 5, wrong)
    assert not check_bucketed_allreduce("E2", 4, right)


def test_least_sharded_stage():
    assert least_sharded_stage(1e9, 80e9, 0, "mixed-precision Adam", 8) == "DDP (replicated)"
    assert least_sharded_stage(13e9, 80e9, 30e9, "mixed-precision Adam", 8) == "ZeRO-2"
    assert least_sharded_stage(1e12, 80e9, 0, "mixed-precision Adam", 8) is None
    with pytest.raises(ValueError, match="activation_bytes"):
        least_sharded_stage(1e9, 80e9, -1, "mixed-precision Adam", 8)


def test_launch_rejects_a_string_of_arguments():
    with pytest.raises(TypeError):
        launch("helpers.ch05_distributed.jobs.ddp", args="--steps 3", echo=False)


def test_sharding_memory_arithmetic():
    assert bytes_per_parameter("fp32 Adam", "DDP (replicated)", 8) == 16
    assert bytes_per_parameter("mixed-precision Adam", "ZeRO-1", 4) == 2 + 2 + 3
    assert bytes_per_parameter("mixed-precision Adam", "ZeRO-3 / FSDP full shard", 8) == 2
    assert workers_needed(13e9, 80e9, "mixed-precision Adam") == math.ceil(13 * 16 / 80)
    with pytest.raises(ValueError, match="precision"):
        bytes_per_parameter("fp8 Adam", "ZeRO-1", 2)
    with pytest.raises(ValueError, match="workers"):
        bytes_per_parameter("fp32 Adam", "ZeRO-1", 0)


@pytest.mark.parametrize("job", ["ddp", "allreduce", "fsdp", "resume", "tensor_parallel", "hang"])
def test_a_job_imports_only_what_it_needs(job):
    """torchrun starts a process per rank, each counted in the memory budget: no plotting, images or scikit-learn."""
    heavy = ("sklearn", "matplotlib", "torchvision", "pandas")
    code = (f"import sys, helpers.ch05_distributed.jobs.{job}; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert printed.stdout.strip() == "[]"


def test_the_all_reduce_chart_shows_every_round_and_the_fit():
    sizes = [1_000, 100_000, 10_000_000]
    link = AlphaBeta(latency_s=20e-6, bandwidth_bytes_per_s=5e9)
    seconds = [[link.allreduce_s(size, 2) * factor for factor in (0.9, 1.1)] for size in sizes]  # a row per size
    figure = plot_allreduce_fit(sizes, seconds, link, world=2, hardware="test CPU")
    assert "test CPU" in figure._suptitle.get_text()
    time_axis, bandwidth_axis = figure.axes
    assert len(time_axis.collections) == len(bandwidth_axis.collections) == 2  # one set of points per round


def test_the_scaling_chart_draws_one_line_per_link_and_overlap():
    links = {"slow": AlphaBeta(50e-6, 1e9), "fast": AlphaBeta(5e-6, 50e9)}
    step = {"compute_s": 0.05, "backward_s": 0.03, "gradient_bytes": 40e6, "bucket_bytes": 25 * 2**20}
    tables = {f"overlap {o}": scaling_table([1, 2, 4, 8], links, overlap=o, **step) for o in (True, False)}
    figure = plot_scaling(tables, {1: 0.05, 2: 0.06}, hardware="test CPU")
    time_axis = figure.axes[0]
    assert len(time_axis.get_lines()) == 2 * len(links)
    assert "test CPU" in figure._suptitle.get_text()


def test_the_jobs_share_one_model_and_one_parameter_vector():
    first, second = digits_mlp(hidden=16, depth=2, seed=3), digits_mlp(hidden=16, depth=2, seed=3)
    assert torch.equal(flat_parameters(first), flat_parameters(second))  # every rank starts from the same weights
    assert flat_parameters(first).numel() == sum(p.numel() for p in first.parameters())
    assert first(torch.rand(4, 64)).shape == (4, 10)
    parsed = job_parser("a job").parse_args(["--result", "out.json"])
    assert str(parsed.result) == "out.json"


# The cost model's compute side, links and widget reading, and the scaling chart.

H100, T4 = "NVIDIA H100 SXM (bf16)", "NVIDIA T4 (fp16)"
NVLINK, IB, ETHERNET = "NVLink 4 (H100 SXM)", "400 Gb/s InfiniBand NDR / RoCE (one NIC per GPU)", "10 Gb/s Ethernet"
LOOPBACK_LINK = AlphaBeta(150e-6, 1.1e9)
CPU_FLOPS_PER_S = 64e9  # about what the chapter measures for its MLP on a 2-core CPU
WIDGET = dict(links=link_menu(LOOPBACK_LINK), cpu_flops_per_s=CPU_FLOPS_PER_S, backward_share=0.65)


def table(**settings):
    """predicted_step_table at the review's example (25 M parameters on 8 H100s over NVLink), changed by settings."""
    chosen = dict(parameters_m=25, compute=H100, mfu=0.4, link=NVLINK, latency_us=0.0, workers=8, bucket_mb=25,
                  overlap=False) | settings
    return predicted_step_table(**chosen, **WIDGET)


def test_an_h100_at_40_percent_mfu_computes_25_m_parameters_x_32_samples_in_about_12_us():
    assert ACCELERATOR_PEAK_FLOPS[H100] == 989e12  # dense bf16, not the 1,979 "with sparsity"
    assert compute_time_s(25e6, 32, H100, mfu=0.4) == pytest.approx(6 * 25e6 * 32 / (0.4 * 989e12))
    assert compute_time_s(25e6, 32, H100, mfu=0.4) == pytest.approx(12.1e-6, rel=0.01)


def test_this_cpu_computes_at_the_rate_measured_whatever_the_mfu():
    expected = 6 * 0.83e6 * 32 / CPU_FLOPS_PER_S
    for mfu in (0.1, 1.0):
        assert compute_time_s(0.83e6, 32, THIS_CPU, cpu_flops_per_s=CPU_FLOPS_PER_S, mfu=mfu) == pytest.approx(expected)


def test_a_faster_accelerator_computes_faster_and_mfu_scales_the_time():
    t4, h100 = (compute_time_s(25e6, 32, name) for name in (T4, H100))
    assert t4 / h100 == pytest.approx(989 / 65)
    assert compute_time_s(25e6, 32, H100, mfu=0.2) == pytest.approx(2 * compute_time_s(25e6, 32, H100, mfu=0.4))


def test_the_reviews_example_100_mb_over_nvlink_at_8_gpus_takes_390_us_and_leaves_3_percent_efficiency():
    assert AlphaBeta(0.0, PUBLISHED_LINKS_BYTES_PER_S[NVLINK]).allreduce_s(100e6, 8) == pytest.approx(389e-6, rel=0.01)
    row = table().iloc[0]
    assert row["compute (ms)"] == pytest.approx(0.0121, rel=0.01)
    assert row["all-reduce (ms)"] == pytest.approx(0.389, rel=0.01)
    assert 2.5 < row["efficiency (%)"] < 3.5
    assert row["communication share (%)"] + row["efficiency (%)"] == pytest.approx(100, abs=0.2)


def test_the_widget_reading_is_one_row_of_the_step_and_its_parts():
    reading = table(overlap=True, latency_us=TYPICAL_LATENCY_S[NVLINK] * 1e6)
    assert list(reading.columns) == ["step (ms)", "compute (ms)", "all-reduce (ms)", "exposed communication (ms)",
                                     "efficiency (%)", "communication share (%)",
                                     "per-worker batch where compute = all-reduce"]
    row = reading.iloc[0]
    assert len(reading) == 1
    assert row["step (ms)"] == pytest.approx(row["compute (ms)"] + row["exposed communication (ms)"], rel=0.01)
    assert row["exposed communication (ms)"] <= row["all-reduce (ms)"]


def test_at_the_batch_the_reading_names_compute_catches_up_with_the_all_reduce():
    batch = int(table().iloc[0]["per-worker batch where compute = all-reduce"])
    at_that_batch = table(per_worker_batch=batch).iloc[0]
    assert at_that_batch["compute (ms)"] == pytest.approx(at_that_batch["all-reduce (ms)"], rel=0.02)


def test_the_latency_set_in_the_widget_replaces_the_links_own():
    buckets = 5  # 100 MB in DDP's default buckets: 1 MiB, three of 25 MiB, the rest
    added_ms = table(latency_us=10.0).iloc[0]["all-reduce (ms)"] - table(latency_us=0.0).iloc[0]["all-reduce (ms)"]
    assert added_ms == pytest.approx(buckets * 2 * (8 - 1) * 10e-3, rel=0.02)


def test_ddps_1_mib_first_bucket_applies_only_with_the_default_cap():
    default = model_step_inputs(25e6, 32, H100, backward_share=0.5)
    assert default["first_bucket_bytes"] == DDP_FIRST_BUCKET_BYTES
    given = model_step_inputs(25e6, 32, H100, backward_share=0.5, bucket_bytes=50 * 2 ** 20)
    assert given["first_bucket_bytes"] == given["bucket_bytes"] == 50 * 2 ** 20
    assert default["gradient_bytes"] == 4 * 25e6  # fp32 gradients


def test_a_fast_gpu_on_the_same_link_scales_worse_than_this_cpu():
    link = published_link("100 Gb/s Ethernet")
    efficiency = {}
    for compute in (THIS_CPU, H100):
        inputs = model_step_inputs(25e6, 32, compute, backward_share=0.65, cpu_flops_per_s=CPU_FLOPS_PER_S)
        efficiency[compute] = predict_step(world=8, link=link, overlap=True, **inputs).efficiency
    assert efficiency[H100] < 0.1 < efficiency[THIS_CPU]


def test_no_cpu_sits_on_nvlink_and_no_gpu_on_this_machines_loopback():
    with pytest.raises(ValueError, match="this CPU \\(measured\\) cannot use NVLink 4"):
        require_pairing(THIS_CPU, NVLINK)
    with pytest.raises(ValueError, match="cannot use NVLink 4"):
        table(compute=THIS_CPU)
    with pytest.raises(ValueError, match="cannot use NVLink 4.*carries only NVIDIA H100"):
        require_pairing("NVIDIA A100 SXM (bf16)", NVLINK)
    with pytest.raises(ValueError, match="cannot use loopback"):
        require_pairing(H100, LOOPBACK)
    for compute in COMPUTE_CHOICES:  # networks carry any compute
        require_pairing(compute, ETHERNET)
        require_pairing(compute, IB)
    assert computes_on_link(NVLINK) == (H100,) and computes_on_link(LOOPBACK) == (THIS_CPU,)


def test_infiniband_ndr_gives_each_gpu_50_gb_per_s_and_a_few_us_per_step():
    assert PUBLISHED_LINKS_BYTES_PER_S[IB] == 400e9 / 8 == 50e9
    assert set(TYPICAL_LATENCY_S) == set(PUBLISHED_LINKS_BYTES_PER_S)  # every published link has a typical latency
    assert TYPICAL_LATENCY_S[NVLINK] < TYPICAL_LATENCY_S[IB] < TYPICAL_LATENCY_S[ETHERNET]
    assert 1e-6 <= published_link(IB).latency_s <= 20e-6 and 10e-6 <= published_link(ETHERNET).latency_s <= 100e-6
    assert published_link(IB).bandwidth_bytes_per_s == 50e9


def test_the_link_menu_starts_with_the_loopback_as_fitted():
    menu = link_menu(LOOPBACK_LINK)
    assert next(iter(menu)) == LOOPBACK and menu[LOOPBACK] == LOOPBACK_LINK
    assert set(menu) - {LOOPBACK} == set(PUBLISHED_LINKS_BYTES_PER_S)


def test_nvlink_joins_at_most_one_board():
    assert LARGEST_WORLD[NVLINK] == 8
    with pytest.raises(ValueError, match="at most 8 GPUs.*NVL72"):
        table(workers=16)
    assert len(table(workers=16, link=IB)) == 1


@pytest.mark.parametrize("settings, error, message", [
    ({"mfu": 0.0}, ValueError, "mfu is the fraction of the peak.*\\(0, 1\\]"),
    ({"mfu": 1.5}, ValueError, "mfu is the fraction of the peak"),
    ({"compute": "NVIDIA B200"}, ValueError, "compute must be one of"),
    ({"link": "carrier pigeon"}, ValueError, "link must be one of"),
    ({"parameters_m": -1}, ValueError, "parameters_m must be > 0"),
    ({"per_worker_batch": 0}, ValueError, "per_worker_batch must be an int >= 1"),
    ({"workers": 0}, ValueError, "workers must be an int >= 1"),
    ({"bucket_mb": 0}, ValueError, "bucket_mb must be > 0"),
    ({"latency_us": -1.0}, ValueError, "latency_us must be >= 0"),
    ({"overlap": "yes"}, TypeError, "overlap must be a bool"),
])
def test_bad_widget_settings_are_refused_with_a_message(settings, error, message):
    with pytest.raises(error, match=message):
        table(**settings)


def test_this_cpu_needs_its_measured_rate_and_a_share_is_a_fraction():
    with pytest.raises(ValueError, match="needs cpu_flops_per_s"):
        compute_time_s(1e6, 32, THIS_CPU)
    with pytest.raises(ValueError, match="cpu_flops_per_s must be > 0"):
        compute_time_s(1e6, 32, THIS_CPU, cpu_flops_per_s=0)
    with pytest.raises(ValueError, match="backward_share must be <= 1"):
        model_step_inputs(1e6, 32, H100, backward_share=1.5)


def scaling_figure(with_gpu_row: bool):
    """The chart as the chapter draws it: this CPU on loopback and Ethernet, and optionally H100s on NVLink and IB."""
    cpu_links = {LOOPBACK: LOOPBACK_LINK, ETHERNET: published_link(ETHERNET)}
    cpu = model_step_inputs(0.83e6, 32, THIS_CPU, backward_share=0.65, cpu_flops_per_s=CPU_FLOPS_PER_S)
    gpu = model_step_inputs(25e6, 4096, H100, backward_share=0.65)
    worlds = [1, 2, 4, 8, 16, 32, 64]
    tables = {f"overlap {o}": scaling_table(worlds, cpu_links, overlap=o, **cpu) for o in (True, False)}
    gpu_tables = {f"overlap {o}": scaling_table(worlds, {NVLINK: published_link(NVLINK), IB: published_link(IB)},
                                                overlap=o, largest_world=LARGEST_WORLD, **gpu) for o in (True, False)}
    figure = plot_scaling(tables, {1: cpu["compute_s"], 2: 1.5 * cpu["compute_s"]}, hardware="test CPU",
                          title="this CPU", gpu_tables=gpu_tables if with_gpu_row else None, gpu_title="H100s")
    figure.draw_without_rendering()
    return figure


@pytest.mark.parametrize("with_gpu_row", [False, True])
def test_the_scaling_chart_draws_each_row_and_keeps_its_legend_off_the_lines(with_gpu_row):
    figure = scaling_figure(with_gpu_row)
    assert len(figure.axes) == (4 if with_gpu_row else 2)
    for ax in figure.axes:
        assert len(ax.get_lines()) == 2 * 2  # two links, with and without overlap
        assert ax.get_legend() is None
    (legend,) = figure.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert LOOPBACK in labels and (NVLINK in labels) == with_gpu_row and "overlap False" in labels
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in figure.axes)


def test_the_scaling_chart_labels_its_axes_in_plain_numbers():
    figure = scaling_figure(with_gpu_row=True)
    time_ax, efficiency_ax = figure.axes[:2]
    step_labels = [label.get_text() for label in time_ax.yaxis.get_ticklabels(which="both") if label.get_text()]
    assert step_labels and all(label.replace(".", "").isdigit() for label in step_labels)  # "50", not "5 x 10^1"
    assert all(label.get_text().endswith("%") for label in efficiency_ax.yaxis.get_ticklabels() if label.get_text())
    worker_labels = [label.get_text() for label in time_ax.xaxis.get_ticklabels() if label.get_text()]
    assert "64" in worker_labels


def test_the_all_reduce_chart_calls_beta_the_fitted_asymptote():
    sizes = [1_000, 100_000, 10_000_000]
    seconds = [[LOOPBACK_LINK.allreduce_s(size, 2)] for size in sizes]
    figure = plot_allreduce_fit(sizes, seconds, LOOPBACK_LINK, world=2, hardware="test CPU")
    labels = [text.get_text() for ax in figure.axes for text in ax.get_legend().get_texts()]
    assert "beta (fitted asymptote)" in labels and not any("limit" in label for label in labels)


# The DDP job's knobs and bucket timeline, and the timeline's overlap arithmetic and chart.

MLP_PARAMETER_TENSORS = 10  # the digits MLP: 5 linear layers, a weight and a bias each


@pytest.fixture(scope="module")
def knobs_run(tmp_path_factory):
    """The DDP job's knobs and bucket timelines, 3 rounds of 1 step each; the launch leaves no process behind."""
    folder = tmp_path_factory.mktemp("ddp-knobs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(folder))
        result = launch("helpers.ch05_distributed.jobs.ddp", nproc=2, echo=False,
                        args=["--only-knobs", "--rounds", 3, "--repeats", 1]).result
    assert processes_mentioning(str(folder)) == []
    return result


def test_only_knobs_runs_the_knobs_and_the_timeline_alone(knobs_run):
    assert {"knobs", "bf16_rounding", "bucket_timeline"} <= set(knobs_run)
    assert not {"correctness", "scaling", "no_sync_timing"} & set(knobs_run)
    assert all(len(k["step_s"]) == 3 for k in knobs_run["knobs"].values())


def test_bucket_size_sets_the_all_reduce_calls(knobs_run):
    knobs = knobs_run["knobs"]
    assert knobs[DEFAULT]["calls"] == 2 and knobs["bucket_cap_mb=1"]["calls"] == 4
    assert knobs["one bucket per gradient tensor"]["calls"] == MLP_PARAMETER_TENSORS
    assert len({k["bytes"] for k in knobs.values() if k["dtypes"] == ["float"]}) == 1  # buckets move the same bytes


def test_python_hook_sends_what_the_default_sends_and_bf16_half(knobs_run):
    default, python, bf16 = (knobs_run["knobs"][n] for n in (DEFAULT, "allreduce_hook (Python)", "bf16_compress_hook"))
    assert (python["calls"], python["bytes"], python["dtypes"]) == (default["calls"], default["bytes"], ["float"])
    assert python["comm_hook"] == "allreduce_hook" and python["compare_with"] == DEFAULT
    assert 2 * bf16["bytes"] == default["bytes"] and bf16["dtypes"] == ["c10::BFloat16"]
    assert bf16["compare_with"] == "allreduce_hook (Python)"


@pytest.mark.parametrize(("setting", "buckets"), [("bucket_cap_mb=1", 4), ("default", 2)])
def test_timeline_shows_each_bucket_launched_during_backward(knobs_run, setting, buckets):
    """Structural, whatever the load: DDP launches a bucket's all-reduce from inside backward once its gradients
    are ready, in bucket order; every bucket but the last is ready before the last gradient is computed; and
    loss.backward() returns only after every all-reduce has finished."""
    timeline = knobs_run["bucket_timeline"][setting]
    assert timeline["parameter_tensors"] == MLP_PARAMETER_TENSORS and len(timeline["ranks"]) == 2
    for steps in timeline["ranks"]:
        for step in steps:
            (backward_start, backward_end), last = step["backward"], step["last_gradient"]
            allreduces = step["allreduces"]
            assert [a["bucket"] for a in allreduces] == list(range(buckets))
            assert sorted(a["start"] for a in allreduces) == [a["start"] for a in allreduces]
            assert all(backward_start < a["start"] < a["end"] < backward_end for a in allreduces)
            assert all(a["start"] < last for a in allreduces[:-1]) and allreduces[-1]["start"] >= last
            assert step["forward"][1] <= backward_start and backward_end <= step["optimizer_step"][0]
            assert sum(a["bytes"] for a in allreduces) == knobs_run["knobs"][DEFAULT]["bytes"]
    assert 0 < overlapped_share(timeline) < 1


def synthetic_step(offset: float = 0.0) -> dict:
    """Backward from 1 to 10 s, its last gradient at 6 s; all-reduces over 2-5, 4-8 and 7-9 s (union 2-9 s)."""
    intervals = [(2, 5), (4, 8), (7, 9)]
    return {"forward": [offset, offset + 1], "backward": [offset + 1, offset + 10], "last_gradient": offset + 6,
            "optimizer_step": [offset + 10, offset + 11],
            "allreduces": [{"bucket": i, "bytes": 4_000_000, "start": offset + s, "end": offset + e}
                           for i, (s, e) in enumerate(intervals)]}


def test_overlapped_share_counts_the_union_inside_the_gradient_computation():
    assert union([(4, 8), (2, 5), (9, 10)]) == [(2, 8), (9, 10)]
    one = {"ranks": [[synthetic_step()]]}
    assert overlapped_share(one) == pytest.approx(4 / 7)  # 2-6 s of 2-9 s
    late = synthetic_step()
    late["last_gradient"] = 1.5  # all gradients computed before the first all-reduce started: nothing hidden
    assert overlapped_share({"ranks": [[synthetic_step()], [late]]}) == pytest.approx(4 / 14)
    empty = {**synthetic_step(), "allreduces": []}
    with pytest.raises(ValueError, match="no all-reduce"):
        overlapped_share({"ranks": [[empty]]})


def test_timeline_chart_has_a_lane_per_phase_and_bucket_on_each_rank():
    timeline = {"ranks": [[synthetic_step()], [synthetic_step(0.5)]]}
    figure = plot_bucket_timeline(timeline, hardware="test CPU")
    assert "test CPU" in figure._suptitle.get_text()
    labels = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    per_rank = ["forward", "backward", *(f"bucket {i} all-reduce (4.00 MB)" for i in range(3)), "optimizer step"]
    assert labels == [f"rank {r}: {lane}" for r in (0, 1) for lane in per_rank]
    assert figure.axes[0].get_xlabel() == "ms since the step began"
    assert len(figure.legends[0].get_texts()) == 6
    with pytest.raises(ValueError, match="step must be between 0 and 0"):
        plot_bucket_timeline(timeline, hardware="test CPU", step=1)


# The FSDP2 job: its own mesh, the collectives theory predicts, mixed precision, FSDP2 against DDP.

FSDP_JOB = "helpers.ch05_distributed.jobs.fsdp"
FSDP_ROUNDS = 2
FSDP_ARGS = ["--hidden", 64, "--depth", 2, "--rounds", FSDP_ROUNDS, "--repeats", 1]
FSDP_LAYERS = 3  # depth 2: Linear 64 -> 64, 64 -> 64, 64 -> 10
FSDP_PARAMETERS = (64 * 64 + 64) * 2 + 64 * 10 + 10
FP32, BF16 = 4, 2  # bytes per element


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The job launched once with 1 and once with 2 ranks: {ranks: result}, and the processes each launch left."""
    folder = tmp_path_factory.mktemp("fsdp-job")
    results, left_behind = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(folder))  # every process a launch starts names this folder
        for ranks in (1, 2):
            results[ranks] = launch(FSDP_JOB, nproc=ranks, args=FSDP_ARGS, echo=False).result
            left_behind[ranks] = processes_mentioning(str(folder))
    return {"results": results, "left_behind": left_behind}


@pytest.fixture
def one_rank_group():
    """A 1-process gloo group in this process (an in-memory store), always destroyed."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_the_mesh_is_the_jobs_device_whatever_the_accelerator(one_rank_group, monkeypatch):
    def accelerator_asked() -> torch.device:
        raise LookupError("asked which accelerator this machine has")
    monkeypatch.setattr(torch._C, "_get_accelerator", accelerator_asked)  # what FSDP2's default mesh follows
    model = job_fsdp.sharded_model(8, 1, job_fsdp.data_parallel_mesh(torch.device("cpu")))
    for param in model.parameters():
        assert param.device_mesh.device_type == "cpu"
        assert param.device.type == param.to_local().device.type == "cpu"
    assert model(torch.zeros(3, 64)).device.type == "cpu"
    with pytest.raises(LookupError, match="accelerator"):  # the control: without mesh= FSDP2 would ask
        fully_shard(nn.Linear(4, 4))


def test_a_launch_leaves_no_process_behind(runs):
    assert runs["left_behind"] == {1: [], 2: []}


def test_collectives_per_step_are_what_theory_predicts(runs):
    """L layers, 2 ranks: L all-gathers in forward, L again in backward unless reshard_after_forward=False,
    L reduce-scatters; bytes are the full tensors (every parameter gathered, every gradient reduced)."""
    breakdown = runs["results"][2]["breakdown"]
    counts = {name: {kind: c["calls"] for kind, c in b["collectives"].items()} for name, b in breakdown.items()}
    assert counts["FSDP2"] == {"all_gather": 2 * FSDP_LAYERS, "reduce_scatter": FSDP_LAYERS}
    assert counts["FSDP2, reshard_after_forward=False"] == {"all_gather": FSDP_LAYERS, "reduce_scatter": FSDP_LAYERS}
    assert counts["FSDP2, bf16 param_dtype"] == {"all_gather": 2 * FSDP_LAYERS, "reduce_scatter": FSDP_LAYERS}
    assert counts["DDP"] == {"all_reduce": 1}  # a model this small fits in DDP's first bucket
    fsdp = breakdown["FSDP2"]["collectives"]
    assert fsdp["all_gather"]["bytes"] == 2 * FP32 * FSDP_PARAMETERS
    assert fsdp["all_gather"]["largest_bytes"] == FP32 * (64 * 64 + 64)
    assert fsdp["reduce_scatter"]["bytes"] == FP32 * FSDP_PARAMETERS
    assert breakdown["FSDP2, reshard_after_forward=False"]["collectives"]["all_gather"]["bytes"] == FP32 * FSDP_PARAMETERS
    assert breakdown["DDP"]["collectives"]["all_reduce"]["bytes"] == FP32 * FSDP_PARAMETERS


def test_one_rank_makes_no_fsdp2_collective(runs):
    breakdown = runs["results"][1]["breakdown"]
    assert all(breakdown[name]["collectives"] == {} for name in job_fsdp.VARIANTS if name != "DDP")


def test_the_breakdown_adds_up_and_finds_fsdp2s_copies(runs):
    for name, part in runs["results"][2]["breakdown"].items():
        pieces = [part[key] for key in ("collectives_s", "copies_s", "optimizer_s", "rest_s")]
        assert min(pieces) >= 0 and math.isclose(sum(pieces), part["step_s"], rel_tol=1e-9)
        assert (part["copies_s"] > 0) == (name != "DDP")  # zero would mean torch renamed FSDP2's copy records


def test_bf16_is_gathered_and_computed_with_while_fp32_is_stored(runs):
    result = runs["results"][2]
    mixed = result["mixed_precision"]
    assert mixed["sharded_parameter_dtype"] == mixed["sharded_gradient_dtype"] == "float32"
    assert mixed["sharded_weight_shape"] == [32, 64]
    assert mixed["forward_weight_dtype"] == "bfloat16" and mixed["forward_weight_shape"] == [64, 64]
    assert not mixed["forward_weight_is_dtensor"]
    bf16 = result["breakdown"]["FSDP2, bf16 param_dtype"]["collectives"]
    fp32 = result["breakdown"]["FSDP2"]["collectives"]
    assert bf16["all_gather"]["dtype"] == "bfloat16" and bf16["reduce_scatter"]["dtype"] == "float32"
    assert 2 * bf16["all_gather"]["bytes"] == fp32["all_gather"]["bytes"] == 2 * FP32 * FSDP_PARAMETERS
    assert bf16["reduce_scatter"]["bytes"] == fp32["reduce_scatter"]["bytes"]


def test_fsdp2_trains_like_ddp(runs):
    """FSDP2 and DDP do the same arithmetic (an average of 2 gradients is exact either way), so after the same Adam
    steps their parameters may differ only by rounding. The bound is the measured floor: DDP against DDP with each
    rank's images reversed, the same sums rounded in another order. More than that would not be rounding."""
    check = runs["results"][2]["fsdp2_vs_ddp"]
    assert 0 < check["max_abs_diff_reordered_ddp"] < 1e-4 * check["max_abs_parameter"]
    assert check["max_abs_diff_fsdp2_vs_ddp"] <= check["max_abs_diff_reordered_ddp"]


def test_accounted_bytes_halve_from_one_to_two_ranks(runs):
    one, two = runs["results"][1], runs["results"][2]
    assert one["parameters"] == two["parameters"] == FSDP_PARAMETERS and two["sharded_layers"] == FSDP_LAYERS
    assert two["is_dtensor"] and two["placements"] == "(Shard(dim=0),)" and two["mesh_device_type"] == "cpu"
    assert one["accounted_bytes"] == {"parameters": FP32 * FSDP_PARAMETERS, "gradients": FP32 * FSDP_PARAMETERS,
                                      "optimizer_state": 2 * FP32 * FSDP_PARAMETERS}
    assert all(one["accounted_bytes"][part] == 2 * two["accounted_bytes"][part] for part in one["accounted_bytes"])


def test_every_timed_variant_has_one_time_per_round(runs):
    step_s = runs["results"][2]["step_s"]
    assert list(step_s) == list(job_fsdp.TIMED) and all(len(times) == FSDP_ROUNDS for times in step_s.values())


def test_covered_time_counts_overlaps_once():
    assert covered([]) == 0
    assert covered([(5, 6), (0, 2), (1, 3)]) == 4
    assert covered([(0, 10), (2, 3)]) == 10


def launch_record(name: str, ts: float, dims: list) -> dict:
    """A training-thread record of a collective launch, as the trace writes it."""
    return {"name": name, "ts": ts, "dur": 1.0, "args": {"Input Dims": dims}}


def send_record(name: str, ts: float, elements: int, dtype: str) -> dict:
    """A communication-thread record of a collective, as the trace writes it."""
    return {"name": name, "ts": ts, "dur": 10.0, "args": {"Input Dims": [[elements]], "Input type": [dtype]}}


def test_launches_pair_with_their_sends_by_size_and_order():
    launches = [launch_record("c10d::_allgather_base_", 0, [[8], [4], [], [], []]),
                launch_record("c10d::_reduce_scatter_base_", 20, [[4], [8], [], [], [], []])]
    sends = [send_record("gloo:all_reduce", 21, 8, "float"), send_record("gloo:all_gather", 1, 4, "c10::BFloat16")]
    kinds = job_fsdp.collectives_by_kind(job_fsdp.pair_with_sends(launches, sends))
    assert kinds == {"all_gather": {"calls": 1, "bytes": 16, "largest_bytes": 16, "dtype": "bfloat16", "time_s": 1e-5},
                     "reduce_scatter": {"calls": 1, "bytes": 32, "largest_bytes": 32, "dtype": "float32",
                                        "time_s": 1e-5}}
    with pytest.raises(RuntimeError, match="no communication-thread record"):
        job_fsdp.pair_with_sends(launches, sends[:1])


def test_bad_arguments_are_refused_before_joining(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", [FSDP_JOB, "--result", str(tmp_path / "r.json"), "--rounds", "0"])
    with pytest.raises(ValueError, match="--rounds must be an int >= 1, got 0"):
        job_fsdp.main()


# The tensor-parallel job and the hang job.

TP, HANG = "helpers.ch05_distributed.jobs.tensor_parallel", "helpers.ch05_distributed.jobs.hang"
TP_BATCH, TP_DIM = 24, 64
# float32 keeps 24 bits (eps = 1.2e-7). TP sums the second layer's 4d products in two halves and adds the halves, the
# whole block in one pass: reordering a float32 sum moves it by a few eps of its terms' size (measured: about 3 eps of
# the largest value). 1e-5 of the largest value (about 80 eps) leaves room for that and still fails a wrong shard,
# whose error is of the order of the values themselves.
RELATIVE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tp_run(tmp_path_factory):
    """One launch of the tensor-parallel job (no timing), and the private folder its processes mention."""
    folder = tmp_path_factory.mktemp("tp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(folder))
        run = launch(TP, nproc=2, args=["--batch", TP_BATCH, "--dim", TP_DIM, "--rounds", 0], echo=False)
    return run, folder


def test_tensor_parallel_block_matches_the_whole_block(tp_run):
    run, folder = tp_run
    correctness = run.result["correctness"]
    assert set(correctness) == {"output", "input gradient", "0.weight gradient", "0.bias gradient",
                                "2.weight gradient", "2.bias gradient"}
    for name, difference in correctness.items():
        assert difference["max_abs"] > 0, name
        assert difference["max_abs_diff"] <= RELATIVE_TOLERANCE * difference["max_abs"], name
    assert processes_mentioning(str(folder)) == []


def test_each_rank_stores_half_of_each_split_weight(tp_run):
    stored = tp_run[0].result["stored"]
    hidden = 4 * TP_DIM
    assert stored["0.weight"] == {"full": [hidden, TP_DIM], "local": [hidden // 2, TP_DIM], "placement": "Shard(dim=0)"}
    assert stored["0.bias"] == {"full": [hidden], "local": [hidden // 2], "placement": "Shard(dim=0)"}
    assert stored["2.weight"] == {"full": [TP_DIM, hidden], "local": [TP_DIM, hidden // 2], "placement": "Shard(dim=1)"}
    assert stored["2.bias"] == {"full": [TP_DIM], "local": [TP_DIM], "placement": "Replicate()"}


def test_one_all_reduce_of_the_activations_each_way_against_ddp_all_gradients(tp_run):
    result = tp_run[0].result
    activation = {"kind": "all_reduce", "shape": [TP_BATCH, TP_DIM], "dtype": "float", "bytes": TP_BATCH * TP_DIM * 4}
    assert result["collectives"] == {"forward": [activation], "backward": [activation]}
    parameters = 2 * 4 * TP_DIM * TP_DIM + 4 * TP_DIM + TP_DIM
    assert result["traffic"] == {"parameters": parameters, "activation_bytes": TP_BATCH * TP_DIM * 4,
                                 "tp_bytes_per_step": 2 * TP_BATCH * TP_DIM * 4, "ddp_bytes_per_step": 4 * parameters,
                                 "equal_at_batch": pytest.approx(parameters / (2 * TP_DIM))}
    assert any("forward sent all_reduce [24, 64] float (6144 bytes)" in line for line in tp_run[0].rank_lines(1))


def test_collectives_in_reads_the_functional_collectives_and_checks_their_launches():
    events = [{"name": "_c10d_functional::all_reduce", "ts": 2, "args": {"Input Dims": [[8, 4], [], []],
                                                                          "Input type": ["float", "", ""]}},
              {"name": "_c10d_functional::wait_tensor", "ts": 3, "args": {}},
              {"name": "_c10d_functional::_wrap_tensor_autograd", "ts": 2.7, "args": {}},  # torch 2.11 records it
              {"name": "c10d::allreduce_", "ts": 2.5, "args": {}},
              {"name": "aten::mm", "ts": 1}]
    assert collectives_in(events) == [{"kind": "all_reduce", "shape": [8, 4], "dtype": "float", "bytes": 128}]
    with pytest.raises(RuntimeError, match="did not go through DTensor"):
        collectives_in(events + [{"name": "c10d::broadcast_", "ts": 4, "args": {}}])


def test_a_mismatch_is_named_at_once_under_detail(job_tmp):
    """With a 60 s collective timeout, rank 0 raised before it: DETAIL's check named the mismatch, no timeout did."""
    run = launch(HANG, nproc=2, args=["--case", "mismatch", "--timeout-s", 60],
                 env={"TORCH_DISTRIBUTED_DEBUG": "DETAIL"}, echo=False)
    assert run.ok and run.result["debug_level"] == "DETAIL"
    outcome = run.result["rank0"]
    assert outcome["called"] == "all_reduce of shape (4,)" and outcome["error_type"] == "RuntimeError"
    assert "ALLREDUCE" in outcome["key_line"] and "BROADCAST" in outcome["key_line"]
    assert outcome["waited_s"] < 60
    for rank in (0, 1):
        assert any("collectives differ" in line for line in run.rank_lines(rank)), rank
    assert processes_mentioning(str(job_tmp)) == []


def test_a_mismatch_without_detail_waits_for_the_timeout(job_tmp):
    """Without DETAIL nothing compares the calls: rank 0's all_reduce waits the whole timeout, then gloo raises."""
    run = launch(HANG, nproc=2, args=["--case", "mismatch", "--timeout-s", 3], echo=False)
    assert run.ok and run.result["debug_level"] == "OFF"
    outcome = run.result["rank0"]
    assert outcome["error_type"] == "RuntimeError" and outcome["waited_s"] >= 3 - 0.05
    assert "collectives differ" not in outcome["key_line"]
    assert processes_mentioning(str(job_tmp)) == []


@pytest.mark.parametrize("debug", ["OFF", "DETAIL"])
def test_a_missing_rank_times_out_after_the_timeout(job_tmp, debug):
    timeout_s = 3
    run = launch(HANG, nproc=2, args=["--case", "missing", "--timeout-s", timeout_s],
                 env={"TORCH_DISTRIBUTED_DEBUG": debug}, echo=False)
    assert run.ok and run.result["debug_level"] == debug
    outcome = run.result["rank0"]
    assert outcome["error_type"] == "RuntimeError" and outcome["waited_s"] >= timeout_s - 0.05
    expected = "timed out waiting" if debug == "OFF" else "ranks 1 failed to pass monitoredbarrier"
    assert expected in outcome["key_line"].lower()
    assert any("no collective" in line and "returned after" in line for line in run.rank_lines(1))
    assert processes_mentioning(str(job_tmp)) == []


def test_key_line_and_the_timeout_check():
    detail = ("Detected mismatch between collectives on ranks. Rank 0 is running collective: ... "
              "Collectives differ in the following aspects: \t Op type: ALLREDUCEvs BROADCAST")
    assert key_line(detail) == "collectives differ: Op type: ALLREDUCEvs BROADCAST"
    assert key_line("[/src/gloo/unbound_buffer.cc:78] Timed out waiting 5000ms\nmore") == "Timed out waiting 5000ms"
    with pytest.raises(ValueError, match="timeout_s must be a positive number"), process_group(timeout_s=0):
        pass


def test_the_comm_hook_times_each_bucket_and_the_trace_names_each_dtype(one_rank_group):
    model = torch.nn.parallel.DistributedDataParallel(digits_mlp(hidden=16, depth=2), bucket_cap_mb=1 / 2 ** 20)
    timer, gradient_times = job_overlap.CommTimer(), job_overlap.gradient_clock(model)
    model.register_comm_hook(timer, job_overlap.timed_allreduce_hook)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(8, 64), torch.randint(0, 10, (8,))
    for _ in range(2):  # DDP rebuilds its buckets after the first step
        step = job_overlap.traced_step(model, optimizer, x, y, timer, gradient_times)
    parameters = list(model.parameters())
    assert [a["bucket"] for a in step["allreduces"]] == list(range(len(parameters)))  # one bucket per tensor
    assert sorted(a["bytes"] for a in step["allreduces"]) == sorted(4 * p.numel() for p in parameters)
    assert all(step["backward"][0] <= a["start"] <= a["end"] <= step["backward"][1] for a in step["allreduces"])
    assert timer.seconds == pytest.approx(sum(a["end"] - a["start"] for a in step["allreduces"]))
    for name, dtype in (("float", torch.float32), ("double", torch.float64), ("c10::BFloat16", torch.bfloat16)):
        assert TRACE_DTYPES[name] == dtype
        assert TRACE_DTYPES[name].itemsize == torch.tensor([], dtype=dtype).element_size()
