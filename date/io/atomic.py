"""The one way every script writes a file: to a temporary name, then renamed into place, so that a killed run leaves
either the old file or the whole new one, never half of it."""
import os
from typing import Callable


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call write(tmp_path), then rename onto `path`: readers see the old file or the whole new one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str) -> None:
    """A text file (UTF-8, line ends as given) written atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    atomic_write(path, write)
