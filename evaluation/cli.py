"""Command-line plumbing shared by the evaluation scripts: batch size, device, CPU threads and image-loader workers."""
import argparse
import os

from date.io.devices import add_threads_flag
from date.io.flags import positive_int


def default_num_workers() -> int:
    """Image decoding workers: pytorch-fid's choice, one per available CPU up to 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 8)


def add_loader_args(parser: argparse.ArgumentParser, default_bs: int) -> None:
    """`--bs`, `--device`, `--threads`, `--num_workers`: how every evaluation script runs its network over the images."""
    parser.add_argument("--bs", type=positive_int, default=default_bs, help="images per forward pass")
    parser.add_argument("--device", default=None, help="e.g. cuda, cuda:1, cpu (default: cuda when available)")
    add_threads_flag(parser)
    parser.add_argument("--num_workers", type=int, default=None,
                        help="image decoding processes (default: number of CPUs, at most 8; 0 decodes in-process)")


def num_workers(args: argparse.Namespace) -> int:
    return default_num_workers() if args.num_workers is None else max(0, args.num_workers)
