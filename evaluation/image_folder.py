"""Folders of images: which files to evaluate, their captions, and decoding them in batches.

A generated folder holds `<index>.png`, index = row of the caption file (0-based), as written by the generation
scripts and the official DATE code; every metric evaluates indices 0..num_eval-1, so two folders generated from the
same caption file are compared image by image.
"""
import os
import re
import sys
from typing import Any, Callable, Iterator, List, Sequence, Tuple

import torch
from PIL import Image
from tqdm import tqdm

from date.io.errors import UserInputError
from date.io.captions import read_captions
from date.io.outputs import CAPTION_FILE

IMAGE_EXTENSIONS = (".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
_INDEXED_IMAGE = re.compile(r"(\d+)\.png")


def _require_folder(img_dir: str) -> None:
    if not os.path.isdir(img_dir):
        raise UserInputError(f"image folder not found: {img_dir}")


def _indices_present(img_dir: str) -> set:
    return {int(m.group(1)) for name in os.listdir(img_dir) if (m := _INDEXED_IMAGE.fullmatch(name))}


def generated_image_paths(img_dir: str, num_eval: int) -> List[str]:
    """`<img_dir>/0.png` .. `<img_dir>/<num_eval-1>.png`, after checking that they are all there."""
    _require_folder(img_dir)
    present = _indices_present(img_dir)
    if len(present) < num_eval:
        raise UserInputError(f"{img_dir} holds {len(present)} images named <index>.png, "
                             f"fewer than --num_eval {num_eval}")
    missing = [i for i in range(num_eval) if i not in present]
    if missing:
        raise UserInputError(f"{os.path.join(img_dir, f'{missing[0]}.png')} is missing ({len(missing)} of "
                             f"0..{num_eval - 1} missing)")
    return [os.path.join(img_dir, f"{i}.png") for i in range(num_eval)]


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
    beyond = max(_indices_present(img_dir)) + 1
    if beyond > len(captions):
        raise UserInputError(f"captions/images count mismatch: {img_dir} holds {beyond - 1}.png but {caption_path} "
                             f"has only {len(captions)} captions (wrong --text_path?)")
    return paths, captions[:num_eval]


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
