"""Command-line flags shared by every script: a parser that reports a bad flag in one line, and typed values
(positive counts, finite numbers) that refuse nonsense before anything is loaded or written."""
import argparse
import math
import sys
from typing import List


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """`--help` says each flag's default, unless its help already does or there is nothing to say (no value, an off
    switch, an empty list), so that a run's settings can be read off without the source."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        silent = default is None or default is argparse.SUPPRESS or isinstance(default, bool) or default in ("", [])
        if silent or "default" in text.lower() or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one `error:` line (no usage dump) with exit code 2, and shows defaults in
    `--help`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _number(text: str, kind: type, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int, "a positive integer")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int, "an integer ≥ 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A float that is neither NaN nor infinite (they would otherwise name folders and poison every update)."""
    return _number(text, float, "a finite number")


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number ≥ 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def index_list(text: str) -> List[int]:
    """Comma-separated indices ≥ 0, e.g. `3,17,42`."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected indices like 3,17,42, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"indices must not be negative, got {text!r}")
    return values
