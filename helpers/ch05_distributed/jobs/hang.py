"""Hang job: what a collective that the ranks do not agree on looks like, and what ends the wait.

    TORCH_DISTRIBUTED_DEBUG=DETAIL python -m torch.distributed.run --standalone --nproc-per-node=2 \\
        -m helpers.ch05_distributed.jobs.hang --result out.json --case mismatch --timeout-s 5

Every collective needs every rank of the group. The process group is created with a short timeout
(init_process_group(timeout=...)): a collective that some rank never joins raises after that time
instead of waiting forever (the default is 30 minutes on gloo, 10 minutes on NCCL).

--case mismatch: rank 0 calls all_reduce while rank 1 calls broadcast. Under TORCH_DISTRIBUTED_DEBUG=DETAIL
    the process group first compares each collective's kind and shapes across the ranks and raises at
    once an error that names both; without it, both ranks wait until the timeout.
--case missing: rank 1 never calls the all_reduce that rank 0 calls (it is busy for longer than the timeout,
    as a rank stuck in its data loader would be). Rank 0 waits the whole timeout, then raises; under
    DETAIL the error names the rank that did not arrive.

Each rank catches what its collective raises and prints it, so that the job ends and the notebook can
show it; rank 0 writes the error and how long it waited. gloo only: NCCL ranks wait in the collective
until NCCL's watchdog ends the process (chapter 5 explains what to set there).
"""

import re
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from helpers.ch05_distributed.jobs.common import job_parser, process_group, say, write_result

CASES = ("mismatch", "missing")
BUSY_AFTER_TIMEOUT_S = 2.0  # the missing rank stays busy this much longer than the timeout, then leaves


def case_call(case: str, rank: int, timeout_s: float) -> tuple[str, Callable[[], object]]:
    """What this rank does in the case, in words, and the call that does it."""
    if rank == 0:
        return "all_reduce of shape (4,)", lambda: dist.all_reduce(torch.ones(4))
    if case == "mismatch":
        return "broadcast of shape (4,) from rank 0", lambda: dist.broadcast(torch.ones(4), src=0)
    busy_s = timeout_s + BUSY_AFTER_TIMEOUT_S
    return f"no collective (busy for {busy_s:g} s)", lambda: time.sleep(busy_s)


def key_line(message: str) -> str:
    """The part of an error to read first: what DETAIL's check found to differ, else its first line.

    gloo starts its messages with its source location ("[.../unbound_buffer.cc:78] "): that part is dropped.
    """
    differ = re.search(r"Collectives differ in the following aspects:(.*)", message, re.DOTALL)
    if differ:
        return "collectives differ: " + " ".join(differ.group(1).split())
    return re.sub(r"^\[\S+\] ", "", message.splitlines()[0])


def run_case(case: str, timeout_s: float) -> dict:
    """Run this rank's part of the case: what it called, the error it raised (if any) and how long it took."""
    rank = dist.get_rank()
    called, call = case_call(case, rank, timeout_s)
    outcome = {"rank": rank, "called": called, "error_type": None, "key_line": None, "error": None}
    start = time.perf_counter()
    try:
        call()
    except RuntimeError as error:  # what gloo raises on a timeout, and DETAIL's check on a mismatch
        outcome |= {"error_type": type(error).__name__, "key_line": key_line(str(error)), "error": str(error)}
    outcome["waited_s"] = time.perf_counter() - start
    return outcome


def main() -> None:
    """Run in each process torchrun starts: make the ranks disagree on a collective; rank 0 writes what it saw."""
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, required=True)
    parser.add_argument("--timeout-s", type=float, default=5.0, help="the process group's collective timeout")
    args = parser.parse_args()
    if args.device != "cpu":
        parser.error("the hang demos run on gloo only (--device cpu): on NCCL a rank waits in the collective "
                     "until NCCL's watchdog ends the process")
    if args.timeout_s <= 0:
        parser.error(f"--timeout-s must be positive, got {args.timeout_s:g}")
    with process_group(timeout_s=args.timeout_s):
        debug_level = dist.get_debug_level().name
        outcome = run_case(args.case, args.timeout_s)
        ended = (f"{outcome['error_type']} after {outcome['waited_s']:.2f} s: {outcome['key_line']}"
                 if outcome["error"] else f"returned after {outcome['waited_s']:.2f} s")
        say(f"rank {outcome['rank']} (TORCH_DISTRIBUTED_DEBUG={debug_level}), {outcome['called']}: {ended}")
        write_result({"case": args.case, "debug_level": debug_level, "timeout_s": args.timeout_s,
                      "world_size": dist.get_world_size(), "rank0": outcome}, args.result)


if __name__ == "__main__":
    main()
