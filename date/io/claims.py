"""Image claims: several runs on one output folder (two commands, or jobs on a shared filesystem) split its images
instead of each generating all of them.

Before generating an image (`<k>.png`) a process creates `<k>.png.claim` with O_EXCL (atomic on local filesystems and NFS v3+),
holding its host and pid; the claim is removed once the image is written or the process stops. A claim whose process
is gone (same host, pid not running) is stale and taken over; one from another host is respected until it is removed.
"""
import os
import socket
from typing import Iterable, List, Sequence, Set, Tuple

from date.io.outputs import image_path
from date.io.seeding import ImageKey

_HOST = socket.gethostname()


def _claim_path(folder: str, key: ImageKey) -> str:
    return image_path(folder, key) + ".claim"


def _is_stale(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            host, pid = f.read().split()
        if host != _HOST:
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):  # unreadable, half-written, or a pid we may not signal: respected
        return False
    return False


class Claims:
    """The images this process is generating; `release_all` (or leaving the `with` block) drops the rest."""

    def __init__(self, folder: str):
        self.folder = folder
        self.held: Set[ImageKey] = set()
        self.elsewhere: Set[ImageKey] = set()  # images another live run holds

    def take(self, queue: Sequence[ImageKey], limit: int) -> Tuple[List[ImageKey], List[ImageKey]]:
        """Claim up to `limit` images of `queue` that nobody else holds and are not written yet, in order; return
        them and the part of the queue not looked at."""
        taken = []
        position = 0
        while position < len(queue) and len(taken) < limit:
            index = queue[position]
            position += 1
            if os.path.exists(image_path(self.folder, index)):
                continue
            if self._create(index):
                taken.append(index)
                self.elsewhere.discard(index)
            else:
                self.elsewhere.add(index)
        return taken, list(queue[position:])

    def _create(self, index: ImageKey) -> bool:
        path = _claim_path(self.folder, index)
        for _ in range(2):  # a second try after removing a stale claim
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not _is_stale(path):
                    return False
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{_HOST} {os.getpid()}\n")
            self.held.add(index)
            return True
        return False

    def release(self, indices: Iterable[ImageKey]) -> None:
        for index in indices:
            if index in self.held:
                self.held.discard(index)
                try:
                    os.remove(_claim_path(self.folder, index))
                except FileNotFoundError:
                    pass

    def release_all(self) -> None:
        self.release(list(self.held))

    def __enter__(self) -> "Claims":
        return self

    def __exit__(self, *exc) -> None:
        self.release_all()
