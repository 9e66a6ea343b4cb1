"""Launch a distributed job the way a cluster does: `torchrun` in a subprocess, never mp.spawn in a kernel.

The notebook calls launch() (one machine) or launch_nodes() (several "nodes" on 127.0.0.1 with c10d
rendezvous). Each returns a JobRun: torchrun's exit code, every rank's output lines (torchrun's
`--tee` prefixes them `[default0]:`, `[default1]:`, ...), and the JSON result that rank 0 wrote.

A launch never leaves a process behind. torchrun starts its workers in their own sessions, so ending
torchrun's process group alone would orphan them: stop_job() first collects every descendant, asks
torchrun to stop (SIGTERM, on which it stops its workers), then kills whatever is still alive. It runs
on success, on failure, on a timeout and on an interrupt (KeyboardInterrupt from the kernel's stop).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from helpers.core.validate import require_instance, require_int, require_number
from helpers.support.logs import is_noise

STOP_GRACE_S = 5.0
# glibc's malloc serves a block it has once freed from its heap from then on, and the heap of a training process
# fragments: each rank kept about 180 MB it no longer used (measured: the FSDP2 job, 2 ranks, 4 x 1024 MLP). A fixed
# threshold makes every block of 128 KiB or more a mapping of its own, returned to the system when it is freed.
ALLOCATOR_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
# torchrun's agents share one key-value store across restarts, and the failed attempt's keys stay in it: a
# restarted rank can read the address of a dead peer, or (when only some nodes counted a restart) wait for keys
# that the others write elsewhere, a hang (pytorch/pytorch#135712, #167288). With this setting worker rank 0
# hosts a fresh store on a new port in every rendezvous round. Chapter 5, section 7.2 describes both; the tests
# run them.
RESTART_SETTINGS = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


@dataclass
class JobRun:
    """What one launch produced."""

    command: list[list[str]]
    returncode: int
    lines: list[str] = field(default_factory=list)
    result: dict | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def rank_lines(self, local_rank: int, *, node: int | None = None) -> list[str]:
        """The lines that a local rank printed (on `node` for a launch_nodes job), without their prefix."""
        prefix = f"[default{require_int('local_rank', local_rank, minimum=0)}]:"
        if node is not None:
            prefix = f"node{require_int('node', node, minimum=0)} {prefix}"
        return [line[len(prefix):] for line in self.lines if line.startswith(prefix)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a rendezvous endpoint).

    Another program could take it before torchrun binds it; torchrun then fails with 'address in use'
    and the launch raises: run it again.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(module: str, *, nproc_per_node: int, args: list[str] = (), max_restarts: int = 0,
                     nnodes: int = 1, rdzv_endpoint: str | None = None, log_dir: Path | None = None) -> list[str]:
    """The torchrun command line for `python -m torch.distributed.run ... -m module args`."""
    require_instance("module", module, str)
    require_int("nproc_per_node", nproc_per_node, minimum=1)
    require_int("max_restarts", max_restarts, minimum=0)
    require_int("nnodes", nnodes, minimum=1)
    if nnodes > 1 and rdzv_endpoint is None:
        raise ValueError("a job on several nodes needs rdzv_endpoint='host:port'")
    where = (["--standalone"] if nnodes == 1 else
             [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}", "--rdzv-id=course"])
    logs = ["--tee=3", f"--log-dir={log_dir}"] if log_dir else ["--tee=3"]
    return [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc-per-node={nproc_per_node}",
            f"--max-restarts={max_restarts}", *logs, "-m", module, *map(str, args)]


def job_environment(threads_per_process: int | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with OMP_NUM_THREADS set on purpose (None: leave it to torchrun), plus `extra`."""
    env = {**os.environ, "KINETO_LOG_LEVEL": "5", "PYTHONUNBUFFERED": "1", **ALLOCATOR_SETTINGS, **RESTART_SETTINGS}
    env.pop("OMP_NUM_THREADS", None)
    if threads_per_process is not None:
        env["OMP_NUM_THREADS"] = str(require_int("threads_per_process", threads_per_process, minimum=1))
    for name, value in require_instance("env", extra or {}, dict).items():
        if not (isinstance(name, str) and isinstance(value, str)):
            raise TypeError(f"env maps variable names to strings, got {name!r}: {value!r}")
        env[name] = value
    return env


def _family(procs: list[subprocess.Popen]) -> list[psutil.Process]:
    """Each torchrun process and every process below it, as far as they are alive now."""
    family = []
    for proc in procs:
        try:
            root = psutil.Process(proc.pid)
            family += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return family


def stop_job(procs: list[subprocess.Popen]) -> None:
    """End each torchrun and every process it started: SIGTERM first, then SIGKILL for what is left.

    The tree is listed before torchrun is signalled (a worker whose parent has exited can no longer be
    found as its child) and again after, in case torchrun was starting a worker at that moment.
    """
    family = _family(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    family += _family(procs)
    _, alive = psutil.wait_procs(family, timeout=STOP_GRACE_S)
    for member in alive:
        try:
            family += member.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(family, timeout=STOP_GRACE_S)
    for proc in procs:
        proc.wait()


def _pump(proc: subprocess.Popen, lines: list[str], echo: bool, label: str) -> None:
    """Copy a process's output lines into `lines` (and print them), dropping the profiler's noise."""
    for raw in proc.stdout:
        line = label + raw.rstrip("\n")
        if is_noise(line):
            continue
        lines.append(line)
        if echo:
            print(line, flush=True)


def run_commands(commands: list[list[str]], *, env: dict[str, str], timeout_s: float,
                 echo: bool) -> tuple[int, list[str]]:
    """Start every command, show their output as it comes, wait for all; stop them all on any way out.

    With several commands (one per node) each line starts with its node: `node1 [default0]:...`.
    """
    lines: list[str] = []
    procs, pumps = [], []
    deadline = time.monotonic() + timeout_s
    try:
        for index, command in enumerate(commands):
            label = f"node{index} " if len(commands) > 1 else ""
            procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True, start_new_session=True))
            pumps.append(threading.Thread(target=_pump, args=(procs[-1], lines, echo, label), daemon=True))
            pumps[-1].start()
        while any(proc.poll() is None for proc in procs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the job ran longer than {timeout_s:g} s and was stopped")
            time.sleep(0.05)
    finally:
        stop_job(procs)
        for pump in pumps:
            pump.join(timeout=STOP_GRACE_S)
        for proc in procs:
            proc.stdout.close()
    return max((proc.returncode for proc in procs), key=abs), lines


def _launch(module: str, commands_for, *, args, threads_per_process, env, timeout_s, echo, check) -> JobRun:
    """Shared body of launch() and launch_nodes(): a result file, the commands, the run, the result."""
    require_number("timeout_s", timeout_s, strictly_positive=True)
    args = [str(a) for a in require_instance("args", args, (list, tuple))]
    with tempfile.TemporaryDirectory(prefix="course-job-") as folder:
        result_path = Path(folder) / "result.json"
        commands = commands_for([*args, "--result", str(result_path)], Path(folder) / "logs")
        start = time.perf_counter()
        code, lines = run_commands(commands, env=job_environment(threads_per_process, env), timeout_s=timeout_s,
                                   echo=echo)
        run = JobRun(commands, code, lines, wall_s=time.perf_counter() - start)
        if result_path.exists():
            run.result = json.loads(result_path.read_text())
    if check and (not run.ok or run.result is None):
        tail = "\n".join(lines[-15:])
        what = f"failed with exit code {code}" if not run.ok else "wrote no result (did rank 0 call write_result?)"
        raise RuntimeError(f"{module} {what}; its last lines:\n{tail}")
    return run


def launch(module: str, *, nproc: int = 2, args: list = (), max_restarts: int = 0, threads_per_process: int | None = 1,
           env: dict[str, str] | None = None, timeout_s: float = 300, echo: bool = True, check: bool = True) -> JobRun:
    """Run `torchrun --standalone --nproc-per-node=nproc -m module args --result FILE` and return its JobRun.

    threads_per_process sets OMP_NUM_THREADS (None leaves it to torchrun); env adds environment variables
    (TORCH_DISTRIBUTED_DEBUG, ...); check raises on a failed job.
    """
    def commands(full_args, log_dir):
        return [torchrun_command(module, nproc_per_node=nproc, args=full_args, max_restarts=max_restarts,
                                 log_dir=log_dir)]
    return _launch(module, commands, args=args, threads_per_process=threads_per_process, env=env, timeout_s=timeout_s,
                   echo=echo, check=check)


def launch_nodes(module: str, *, nodes: int = 2, nproc_per_node: int = 1, args: list = (), max_restarts: int = 0,
                 threads_per_process: int | None = 1, env: dict[str, str] | None = None, timeout_s: float = 300,
                 echo: bool = True, check: bool = True) -> JobRun:
    """Run the job as `nodes` torchrun agents on 127.0.0.1 that meet by c10d rendezvous on a free port."""
    require_int("nodes", nodes, minimum=2)
    endpoint = f"127.0.0.1:{free_port()}"

    def commands(full_args, log_dir):
        return [torchrun_command(module, nproc_per_node=nproc_per_node, args=full_args, nnodes=nodes,
                                 max_restarts=max_restarts, rdzv_endpoint=endpoint, log_dir=log_dir / f"node{n}")
                for n in range(nodes)]
    return _launch(module, commands, args=args, threads_per_process=threads_per_process, env=env, timeout_s=timeout_s,
                   echo=echo, check=check)
