"""Caption files and their split across processes."""
import codecs
import csv
import io
import os
from typing import Iterator, List, Sequence, Tuple

from date.io.atomic import atomic_write
from date.io.errors import UserInputError

csv.field_size_limit(1 << 24)


def read_captions(path: str, max_count: int | None = None) -> List[str]:
    """Read the `caption` column of a CSV file (the paper's `subset.csv` format), in file order. UTF-8 with or without
    a byte-order mark, or UTF-16 with one (what spreadsheet programs write); anything else is one clear error."""
    header, rows = read_table(path)
    if "caption" not in header:
        raise UserInputError(f"{path} has no 'caption' column (columns: {header})")
    captions = _column(header, rows, "caption")
    if not captions:
        raise UserInputError(f"{path} has a 'caption' column but no captions")
    if max_count is not None:
        captions = captions[:max_count]
    for index, caption in enumerate(captions):
        if not caption.strip():
            raise UserInputError(f"{path}: caption {index} is empty")
    return captions


def read_column(path: str, name: str, max_count: int | None = None) -> List[str] | None:
    """Another column of a caption file, row by row as `read_captions` reads captions ("" where a row is short);
    None when the file has no such column."""
    header, rows = read_table(path)
    if name not in header:
        return None
    return _column(header, rows, name)[:max_count]


def read_table(path: str, kind: str = "caption file", columns: str = "a 'caption' column") -> Tuple[List[str], List[List[str]]]:
    """The header (names stripped) and the rows of a CSV file (any encoding `_decode` reads); a missing, unreadable
    or empty file is one line naming it as `kind` and saying it should have `columns`."""
    if os.path.isdir(path):
        raise UserInputError(f"{path} is a folder; expected a {kind} (CSV with {columns})")
    if not os.path.isfile(path):
        raise UserInputError(f"{kind} not found: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserInputError(f"cannot read {kind} {path}: {e.strerror}") from None
    rows = list(_csv_rows(path, _decode(path, data)))
    if not rows:
        raise UserInputError(f"{path} is empty; expected a CSV file with {columns}")
    return [name.strip() for name in rows[0]], rows[1:]


def _column(header: List[str], rows: List[List[str]], name: str) -> List[str]:
    column = header.index(name)
    return [row[column] if column < len(row) else "" for row in rows if row]  # blank lines are not rows


def _decode(path: str, data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise UserInputError(f"{path} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
                             "save it as UTF-8 CSV") from None
    if "\0" in text:
        raise UserInputError(f"{path} contains NUL characters; is it a CSV text file?")
    return text


def _csv_rows(path: str, text: str) -> Iterator[List[str]]:
    try:
        yield from csv.reader(io.StringIO(text, newline=""))
    except csv.Error as e:
        raise UserInputError(f"{path} is not a readable CSV file: {e}") from None


def write_captions(path: str, captions: Sequence[str]) -> None:
    """Write captions as a CSV with a `caption` column, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["caption"])
            writer.writerows([c] for c in captions)

    atomic_write(path, write)
