"""User mistakes are reported as one line and exit code 2, never as a traceback."""
import contextlib
import functools
import signal
import sys
import threading
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


class UserInputError(ValueError):
    """A mistake in what the user asked for (a missing file, a malformed flag...)."""


class StoppedRun(Exception):
    """A run that stopped for a reason the user reads in one line (interrupted, out of memory), with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's cancel, `kill`, torchrun stopping its workers), raised where the run is so that it stops
    as after Ctrl-C: every handler of KeyboardInterrupt sees it and says how far the run got."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set a signal handler
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_code(stop: Optional[BaseException], code: int) -> int:
    """128 + the signal's number for a run stopped by SIGTERM (143, what the shell reports for it), else `code`."""
    return 128 + signal.SIGTERM if isinstance(stop, Terminated) else code


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a script's main so that a UserInputError prints `error: <message>` and exits with status 2, a StoppedRun
    prints its line and exits with its code, and Ctrl-C prints `interrupted` (exit 130) instead of a traceback; SIGTERM
    stops a run as Ctrl-C does, with the same line, and exits 143."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            with _sigterm_as_interrupt():
                return main(*args, **kwargs)
        except UserInputError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except StoppedRun as e:  # the loop turns an interrupt into a StoppedRun that says how far it got
            print(e, file=sys.stderr)
            sys.exit(_exit_code(e.__context__, e.exit_code))
        except KeyboardInterrupt as e:
            print("interrupted", file=sys.stderr)
            sys.exit(_exit_code(e, 130))

    return wrapped
