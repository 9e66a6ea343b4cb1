"""All-reduce job: how long one all-reduce takes on this machine's backend, from bytes to tens of MB.

    python -m torch.distributed.run --standalone --nproc-per-node=2 \\
        -m helpers.ch05_distributed.jobs.allreduce --result out.json

The message sizes are visited in turn in each round (interleaved), so a slow spell of the machine
spreads over all sizes instead of landing on one. Chapter 5 fits latency and bandwidth to the result.
"""

import torch
import torch.distributed as dist

from helpers.ch05_distributed.jobs.common import job_parser, median_time_s, process_group, say, write_result


def message_sizes_bytes(smallest: int, largest: int) -> list[int]:
    """Sizes from smallest to largest bytes, a factor of 4 apart (fp32 elements: multiples of 4 bytes)."""
    sizes, size = [], smallest
    while size <= largest:
        sizes.append(size)
        size *= 4
    return sizes


def repeats_for(size_bytes: int) -> int:
    """More calls for small messages (each is short and noisy), fewer for large ones."""
    return 20 if size_bytes <= 64 * 1024 else 8 if size_bytes <= 2 * 1024 ** 2 else 4


def main() -> None:
    """Run in each process torchrun starts: time all-reduces of every size; rank 0 writes the result."""
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--smallest-bytes", type=int, default=8)
    parser.add_argument("--largest-bytes", type=int, default=32 * 1024 ** 2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with process_group(args.device) as device:
        sizes = message_sizes_bytes(args.smallest_bytes, args.largest_bytes)
        tensors = {size: torch.ones(size // 4, device=device) for size in sizes}
        for tensor in tensors.values():  # warm-up: the first call of each size sets up buffers
            dist.all_reduce(tensor)
        times = {size: [] for size in sizes}
        for _ in range(args.rounds):
            for size, tensor in tensors.items():
                times[size].append(median_time_s(lambda t=tensor: dist.all_reduce(t), repeats_for(size)))
        say(f"rank {dist.get_rank()}: {len(sizes)} sizes x {args.rounds} rounds timed")
        write_result({"world_size": dist.get_world_size(), "backend": dist.get_backend(),
                      "sizes_bytes": sizes, "seconds": [times[s] for s in sizes]}, args.result)


if __name__ == "__main__":
    main()
