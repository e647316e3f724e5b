"""User mistakes are reported as one line and exit code 2, never as a traceback."""
import functools
import sys
from typing import Callable, TypeVar

T = TypeVar("T")


class UserInputError(ValueError):
    """A mistake in what the user asked for (a missing file, a malformed flag...)."""


class StoppedRun(Exception):
    """A run that stopped for a reason the user reads in one line (interrupted, out of memory), with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a script's main so that a UserInputError prints `error: <message>` and exits with status 2, a StoppedRun
    prints its line and exits with its code, and Ctrl-C prints `interrupted` (exit 130) instead of a traceback."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserInputError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except StoppedRun as e:
            print(e, file=sys.stderr)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapped
