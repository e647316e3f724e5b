"""Model arguments are hub ids or local directories; a bad one is a user mistake reported in one line."""
import contextlib
import os
import re
from typing import Iterator

from date.io.errors import UserInputError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
ASSETS = os.path.join(ROOT, "assets")  # bundled models and prompts
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
