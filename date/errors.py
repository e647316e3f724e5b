"""User mistakes are reported as one line and exit code 2, never as a traceback."""
import functools
import sys
from typing import Callable, TypeVar

T = TypeVar("T")


class UserInputError(ValueError):
    """A mistake in what the user asked for (a missing file, a malformed flag...)."""


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a script's main so that a UserInputError prints `error: <message>` and exits with status 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserInputError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapped
