"""Folders of images: which files to evaluate, their captions, and decoding them in batches.

A generated folder holds `<index>.png`, index = row of the caption file (0-based), as written by the generation
scripts and the official DATE code, or with several images per caption `<index>_<copy>.png`; every metric evaluates
the images of captions 0..num_eval-1, so two folders generated from the same caption file are compared image by image.
"""
import os
import re
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch
from PIL import Image
from tqdm import tqdm

from date.io.errors import UserInputError
from date.io.captions import read_captions
from date.io.outputs import CAPTION_FILE

IMAGE_EXTENSIONS = (".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
_INDEXED_IMAGE = re.compile(r"(\d+)(?:_(\d+))?\.png")  # <k>.png, or <k>_<j>.png: copy j of caption k


def _require_folder(img_dir: str) -> None:
    if not os.path.isdir(img_dir):
        raise UserInputError(f"image folder not found: {img_dir}")


def _images_present(img_dir: str) -> Dict[int, Set[Optional[int]]]:
    """Caption index -> the copies present (None for `<k>.png`)."""
    present: Dict[int, Set[Optional[int]]] = {}
    for name in os.listdir(img_dir):
        if match := _INDEXED_IMAGE.fullmatch(name):
            present.setdefault(int(match.group(1)), set()).add(None if match.group(2) is None else int(match.group(2)))
    return present


def caption_index(path: str) -> int:
    """The caption row an image was made from: k of `<k>.png` or `<k>_<j>.png`."""
    return int(_INDEXED_IMAGE.fullmatch(os.path.basename(path)).group(1))


def captions_from_zero(img_dir: str) -> int:
    """How many captions 0, 1, … have images, up to the first caption without one (either layout)."""
    _require_folder(img_dir)
    present, count = _images_present(img_dir), 0
    while count in present:
        count += 1
    return count


def generated_image_paths(img_dir: str, num_eval: int) -> List[str]:
    """The images of captions 0..num_eval-1, after checking that they are all there: `<k>.png`, or with several images
    per caption `<k>_0.png` .. `<k>_<N-1>.png` (N from caption 0; the same for every caption), caption-major."""
    _require_folder(img_dir)
    present = _images_present(img_dir)
    single = any(None in copies for copies in present.values())
    if single and any(j is not None for copies in present.values() for j in copies):
        raise UserInputError(f"{img_dir} mixes <k>.png and <k>_<j>.png images; keep one layout per folder")
    copies = [None] if single else list(range(max(present.get(0, {0})) + 1))
    if len(present) < num_eval:
        raise UserInputError(f"{img_dir} holds images of {len(present)} captions (named <index>.png or "
                             f"<index>_<copy>.png), fewer than --num_eval {num_eval}")
    names = [f"{k}.png" if j is None else f"{k}_{j}.png" for k in range(num_eval) for j in copies]
    missing = [name for name in names if not os.path.isfile(os.path.join(img_dir, name))]
    if missing:
        raise UserInputError(f"{os.path.join(img_dir, missing[0])} is missing ({len(missing)} of the {len(names)} "
                             f"images of captions 0..{num_eval - 1} missing)")
    return [os.path.join(img_dir, name) for name in names]


def all_image_paths(img_dir: str) -> List[str]:
    """Every image file of a folder (any common extension), sorted by name: a reference set such as COCO val2014."""
    _require_folder(img_dir)
    names = sorted(n for n in os.listdir(img_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
    if len(names) < 2:
        raise UserInputError(f"{img_dir} holds {len(names)} images; statistics need at least 2")
    return [os.path.join(img_dir, n) for n in names]


def folder_captions(img_dir: str, text_path: str | None) -> Tuple[str, List[str]]:
    """(caption file, its captions) for a folder: the `subset.csv` the generator saved beside its images, or
    `text_path`, which must then agree with that record. Never a file found elsewhere by chance: a folder without a
    record needs `--text_path`. Says which file it uses."""
    record = os.path.join(img_dir, CAPTION_FILE)
    has_record = os.path.isfile(record)
    if text_path is None and not has_record:
        raise UserInputError(f"{img_dir} has no {CAPTION_FILE} (the captions its images were made from); give "
                             "--text_path")
    path = record if text_path is None else text_path
    captions = read_captions(path)
    if text_path is not None and has_record and os.path.abspath(text_path) != os.path.abspath(record):
        recorded = read_captions(record)
        common = min(len(recorded), len(captions))
        mismatch = next((i for i in range(common) if recorded[i] != captions[i]), None)
        if mismatch is not None:
            raise UserInputError(f"--text_path {text_path} disagrees with {record}, the captions {img_dir}'s images "
                                 f"were made from (first at index {mismatch}: {captions[mismatch]!r} vs "
                                 f"{recorded[mismatch]!r}); leave out --text_path")
    print(f"captions of {img_dir}: {path}", file=sys.stderr)
    return path, captions


def captioned_images(img_dir: str, num_eval: int, text_path: str | None = None) -> Tuple[List[str], List[str]]:
    """(image paths, captions) for indices 0..num_eval-1, checking that the caption file matches the folder."""
    paths = generated_image_paths(img_dir, num_eval)
    caption_path, captions = folder_captions(img_dir, text_path)
    if len(captions) < num_eval:
        raise UserInputError(f"{caption_path} has {len(captions)} captions but --num_eval is {num_eval}")
    beyond = max(_images_present(img_dir)) + 1
    if beyond > len(captions):
        raise UserInputError(f"captions/images count mismatch: {img_dir} holds images of caption {beyond - 1} but "
                             f"{caption_path} has only {len(captions)} captions (wrong --text_path?)")
    return paths, [captions[caption_index(path)] for path in paths]


def load_rgb(path: str) -> Image.Image:
    """Decode an image fully (so a truncated file fails here, not later) as RGB, like pytorch-fid and OpenCLIP."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:  # PIL reports corrupt files with any of these
        raise UserInputError(f"cannot read image {path}: {e}") from None


class _Unreadable:
    """What a loader worker returns for a bad file, so the main process can raise a one-line error."""

    def __init__(self, message: str):
        self.message = message


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], transform: Callable[[Image.Image], Any]):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            image = load_rgb(self.paths[index])
        except UserInputError as e:
            return _Unreadable(str(e))
        return self.transform(image)


def _as_list(batch: list) -> list:
    return batch


def image_batches(paths: Sequence[str], transform: Callable[[Image.Image], Any], batch_size: int,
                  num_workers: int = 0, desc: str | None = None) -> Iterator[list]:
    """Decoded, transformed images in order, `batch_size` at a time, as plain lists (image sizes may differ)."""
    loader = torch.utils.data.DataLoader(_ImageFiles(paths, transform), batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=_as_list)
    with tqdm(total=len(loader), desc=desc, unit="batch") as progress:  # closed (newline) before any error line
        for batch in loader:
            for item in batch:
                if isinstance(item, _Unreadable):
                    raise UserInputError(item.message)
            yield batch
            progress.update()
