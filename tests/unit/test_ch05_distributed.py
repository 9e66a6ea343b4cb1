"""Tests of helpers/ch05_distributed/: launches leave no process behind, DDP is correct, a restart loses nothing;
the cost model, the memory arithmetic, the charts and the exercise checks."""

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

import helpers.ch05_distributed.jobs.ddp as job_ddp
import helpers.ch05_distributed.jobs.resume as job_resume
from helpers.ch05_distributed.comm_model import (
    AlphaBeta, bucket_sizes, fit_alpha_beta, predict_step, ring_allreduce_bytes_per_worker, scaling_table,
)
from helpers.ch05_distributed.exercises import check_bucketed_allreduce_ms, check_gpu_count
from helpers.ch05_distributed.jobs.common import digits_mlp, flat_parameters, job_parser
from helpers.ch05_distributed.launch import launch, launch_nodes, torchrun_command
from helpers.ch05_distributed.plots import plot_allreduce_fit, plot_scaling
from helpers.ch05_distributed.sharding_memory import bytes_per_parameter, workers_needed
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
    deadline = time.monotonic() + 120
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
    assert fp64["max_abs_diff_ddp_vs_single"] <= 1e6 * torch.finfo(torch.float64).eps * fp64["max_abs_parameter"]
    assert fp32["max_abs_diff_ddp_vs_single"] < 1e-3 * fp32["max_abs_parameter"]
    no_sync = result["no_sync"]
    assert no_sync["without no_sync"]["calls"] == 4 * no_sync["with no_sync"]["calls"] > 0
    assert no_sync["without no_sync"]["bytes"] == 4 * no_sync["with no_sync"]["bytes"]
    assert no_sync["max_abs_gradient_difference"] <= 1e-6 * no_sync["max_abs_gradient"]


def test_fsdp2_halves_what_each_rank_holds(job_tmp):
    args = ["--hidden", 64, "--depth", 2, "--rounds", 2, "--repeats", 1]
    one, two = (launch("helpers.ch05_distributed.jobs.fsdp", nproc=n, args=args, echo=False).result for n in (1, 2))
    assert one["parameters"] == two["parameters"] == 64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    assert two["is_dtensor"] and two["placements"] == "(Shard(dim=0),)"
    for part in ("parameter_bytes", "gradient_bytes", "optimizer_bytes"):
        assert one[part] == 2 * two[part] > 0
    assert set(two["step_s"]) == {"FSDP2", "DDP"} and len(two["step_s"]["DDP"]) == 2


def test_restart_after_a_killed_rank_loses_nothing(job_tmp):
    killed = launch("helpers.ch05_distributed.jobs.resume", nproc=2, max_restarts=1, echo=False,
                    args=["--checkpoint-dir", job_tmp / "a", "--steps", 12, "--kill-rank", 1, "--kill-at-step", 7])
    assert killed.result["attempt"] == 1 and killed.result["resumed_from_step"] == 5
    assert any("killing this process at step 7" in line for line in killed.lines)
    whole = launch_nodes("helpers.ch05_distributed.jobs.resume", nodes=2, threads_per_process=1, echo=False,
                         args=["--checkpoint-dir", job_tmp / "b", "--steps", 12])
    assert whole.result["attempt"] == 0 and whole.result["resumed_from_step"] == 0
    assert {line.split(" ")[0] for line in whole.lines if line.startswith("node")} == {"node0", "node1"}
    assert killed.result["parameters_sha256"] == whole.result["parameters_sha256"]
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
    assert check_gpu_count("E1", 3) and not check_gpu_count("E1", 2)
    mib, alpha, beta, n = 2 ** 20, 50e-6, 10e9 / 8, 64
    full, last = divmod(4 * 25.6e6 - mib, 25 * mib)
    buckets = [mib] + [25 * mib] * int(full) + [last]
    right = 1e3 * sum(2 * (n - 1) * alpha + 2 * (n - 1) / n * b / beta for b in buckets)
    assert check_bucketed_allreduce_ms("E2", right)
    no_latency = 1e3 * 2 * (n - 1) / n * 4 * 25.6e6 / beta
    one_bucket = no_latency + 1e3 * 2 * (n - 1) * alpha
    assert not check_bucketed_allreduce_ms("E2", no_latency)
    assert not check_bucketed_allreduce_ms("E2", one_bucket)


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


@pytest.mark.parametrize("job", ["ddp", "allreduce", "fsdp", "resume"])
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
