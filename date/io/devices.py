"""The one check of a `--device` flag, shared by every script: a bad device is a user mistake, said in one line; and
`--threads`, torch's CPU threads."""
import argparse
from typing import Optional

import torch

from date.io.errors import UserInputError
from date.io.flags import positive_int


def default_device() -> str:
    """The GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_device(name: Optional[str]) -> torch.device:
    """`name` (cpu, cuda or cuda:N) as a device this machine has; None picks `default_device()`."""
    if name is None:
        name = default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserInputError(f"--device must be cpu, cuda or cuda:<index>, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise UserInputError(f"--device must be cpu, cuda or cuda:<index>, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"--device {name} asked for, but no CUDA GPU is available (use --device cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserInputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


class _SetThreads(argparse.Action):
    """Applies `--threads` as soon as it is read, so that every script using the flag gets it without a call of its own
    (loading and sampling both run after parsing)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        torch.set_num_threads(values)
        setattr(namespace, self.dest, values)


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """`--threads N`: torch's CPU threads in this process; without it torch's own choice (one per core), which can
    be many times slower than one thread on a machine shared with other processes."""
    parser.add_argument("--threads", type=positive_int, default=None, action=_SetThreads,
                        help="CPU threads torch uses (default: torch's own, one per core; on a shared machine fewer "
                             "can be much faster)")
