"""Model arguments are hub ids or local directories; a bad one is a user mistake reported in one line."""
import contextlib
import hashlib
import os
import re
from typing import Iterator

from date.io.errors import UserInputError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
ASSETS = os.path.join(ROOT, "assets")  # bundled models and prompts
_EDGE = 1 << 20  # bytes read at each end of a weight file for its fingerprint
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def model_path(name_or_dir: str) -> str:
    """Return a local directory as is, pass a hub id through, and reject a path that does not exist."""
    path = os.path.expanduser(name_or_dir)
    if os.path.isdir(path):
        return path
    if _HUB_ID.fullmatch(name_or_dir) and not os.path.exists(path):
        return name_or_dir
    raise UserInputError(f"model directory not found: {name_or_dir}")


@contextlib.contextmanager
def loading(what: str, name_or_dir: str) -> Iterator[None]:
    """Turn the loaders' errors (offline hub, missing files, wrong folder) into one clear line."""
    try:
        yield
    except (OSError, ValueError, EnvironmentError) as e:
        if isinstance(e, UserInputError):
            raise
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(f"cannot load {what} from '{name_or_dir}': {first_line}") from e


def model_identity(name_or_dir: str) -> str:
    """What identifies a model in a run's record: a hub id as is, a local folder or file by a fingerprint of its
    files (relative names, sizes, and the first and last MiB of each), so that the same model resumes a folder from
    any checkout, path or copy, and another model never does."""
    path = os.path.expanduser(name_or_dir)
    if not os.path.exists(path):
        return name_or_dir
    if os.path.isfile(path):
        files = [(os.path.basename(path), path)]
    else:
        files = sorted((os.path.relpath(os.path.join(d, n), path), os.path.join(d, n))
                       for d, subdirs, names in os.walk(path) for n in names if not n.startswith("."))
    digest = hashlib.sha256()
    for relative, full in files:
        size = os.path.getsize(full)
        digest.update(f"{relative.replace(os.sep, '/')}\0{size}\0".encode())
        with open(full, "rb") as f:
            digest.update(f.read(_EDGE))
            if size > 2 * _EDGE:
                f.seek(-_EDGE, os.SEEK_END)
                digest.update(f.read(_EDGE))
            elif size > _EDGE:
                digest.update(f.read())
    return "local:sha256:" + digest.hexdigest()[:16]

