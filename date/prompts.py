"""Caption files and their split across processes."""
import csv
import os
from typing import List, Sequence

from .errors import UserInputError

csv.field_size_limit(1 << 24)


def read_captions(path: str, max_count: int | None = None) -> List[str]:
    """Read the `caption` column of a CSV file (the paper's `subset.csv` format), in file order."""
    if not os.path.isfile(path):
        raise UserInputError(f"caption file not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "caption" not in reader.fieldnames:
            raise UserInputError(f"{path} has no 'caption' column (columns: {reader.fieldnames})")
        captions = [row["caption"] for row in reader]
    if max_count is not None:
        captions = captions[:max_count]
    for index, caption in enumerate(captions):
        if caption is None or not caption.strip():
            raise UserInputError(f"{path}: caption {index} is empty")
    return captions


def write_captions(path: str, captions: Sequence[str]) -> None:
    """Write captions as a CSV with a `caption` column, atomically."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["caption"])
        writer.writerows([c] for c in captions)
    os.replace(tmp, path)
