"""The one check of a `--device` flag, shared by every script: a bad device is a user mistake, said in one line."""
from typing import Optional

import torch

from date.io.errors import UserInputError


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
