"""Edits files (`image,source_prompt,target_prompt`, image paths relative to the file) and the record of them an
edit folder keeps, read with one-line errors: `edit_date.py` and `evaluation/edit_metrics.py`."""
import csv
import hashlib
import io
import os
from dataclasses import dataclass
from typing import List, Sequence

from date.io.captions import read_table
from date.io.errors import UserInputError

EDITS_RECORD = "edits.csv"  # a folder's record of its edits: row k of image k (source image fingerprint, prompts)
COLUMNS = ("image", "source_prompt", "target_prompt")


@dataclass(frozen=True)
class Edit:
    image: str  # the source image's path
    source_prompt: str
    target_prompt: str


def read_edits(path: str) -> List[Edit]:
    """The rows of an edits file, image paths resolved against its folder; every problem is one line."""
    header, rows = read_table(path, "edits file", f"columns {','.join(COLUMNS)}")
    rows = [row for row in rows if row]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise UserInputError(f"{path} has no {', '.join(repr(m) for m in missing)} column (columns: {header})")
    folder = os.path.dirname(os.path.abspath(path))
    edits = []
    for index, row in enumerate(rows):
        values = {name: (row[header.index(name)] if header.index(name) < len(row) else "").strip() for name in COLUMNS}
        if not values["image"]:
            raise UserInputError(f"{path}: row {index} has no image")
        if not values["target_prompt"]:
            raise UserInputError(f"{path}: row {index} has an empty target_prompt")
        edits.append(Edit(os.path.join(folder, values["image"]), values["source_prompt"], values["target_prompt"]))
    if not edits:
        raise UserInputError(f"{path} has the columns {','.join(COLUMNS)} but no rows")
    return edits


def check_image(path: str, index: int):
    """The source image of row `index`, opened and fully read (an unreadable one is a user mistake)."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise UserInputError(f"edit {index}: image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise UserInputError(f"edit {index}: cannot read image {path} ({type(e).__name__}: {e})") from None


def _fingerprint(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def edits_record(edits: Sequence[Edit]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image_sha256", "source_prompt", "target_prompt"])
    writer.writerows([_fingerprint(e.image), e.source_prompt, e.target_prompt] for e in edits)
    return out.getvalue()


def check_edits_record(folder: str, edits: Sequence[Edit]) -> None:
    """Refuse to resume a folder whose images were made from other source images or prompts."""
    path = os.path.join(folder, EDITS_RECORD)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", newline="") as f:
        old = list(csv.reader(f))[1:]
    new = list(csv.reader(io.StringIO(edits_record(edits))))[1:]
    common = min(len(old), len(new))
    if old[:common] != new[:common]:
        row = next(k for k in range(common) if old[k] != new[k])
        raise UserInputError(f"{folder} holds edits of other source images or prompts (row {row}); use another "
                             "output folder")
