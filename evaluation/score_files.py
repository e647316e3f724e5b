"""Per-image score and feature files saved beside the images, written atomically and reused only when still valid.

A file is valid for a request when it was computed from the same image files (names, sizes, modification times),
the same captions and the same model: that is what the `fingerprint` records. Files without a fingerprint (written by
the official DATE scripts, key `scores` only) are trusted as long as they hold enough entries.
"""
import hashlib
import os
from typing import Mapping, Sequence

import numpy as np

from date.io.atomic import atomic_write


def folder_fingerprint(paths: Sequence[str], captions: Sequence[str] | None, model_id: str) -> str:
    """A short hash of what a per-image result depends on."""
    digest = hashlib.sha256(model_id.encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\0{os.path.basename(path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    for caption in captions or ():
        digest.update(b"\1" + caption.encode())
    return digest.hexdigest()[:32]


def save_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """np.savez written atomically: readers never see a half-written file."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def save_scores(path: str, scores: np.ndarray, fingerprint: str = "") -> None:
    """The official format (key `scores`, float32, one per image index) plus the fingerprint it was computed for."""
    save_npz(path, {"scores": np.asarray(scores, dtype=np.float32), "fingerprint": np.array(fingerprint)})


def load_scores(path: str, count: int, fingerprint: str | None = None) -> np.ndarray | None:
    """The first `count` saved scores, or None when the file is missing, too short, or from other inputs."""
    saved = load_valid(path, "scores", fingerprint, allow_unfingerprinted=True)
    if saved is None or len(saved) < count:
        return None
    return saved[:count]


def load_valid(path: str, key: str, fingerprint: str | None = None,
               allow_unfingerprinted: bool = False) -> np.ndarray | None:
    """`key` of a saved .npz, or None when it is missing, unreadable, or its fingerprint differs from `fingerprint`
    (a file without fingerprint passes only with `allow_unfingerprinted`)."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as saved:
            if key not in saved:
                return None
            stored = str(saved["fingerprint"]) if "fingerprint" in saved else ""
            if fingerprint is not None and stored != fingerprint and (stored or not allow_unfingerprinted):
                return None
            return saved[key]
    except (OSError, ValueError):  # a corrupt cache is recomputed, not an error
        return None
