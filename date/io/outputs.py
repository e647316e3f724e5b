"""Output folders: their names, their config record, and images written so that a killed run never leaves a bad file."""
import json
import os
from typing import Dict, Iterable, List, Sequence

from PIL import Image

from date.io.atomic import atomic_write
from date.io.errors import UserInputError
from date.io.seeding import ImageKey
from date.io.captions import read_captions, write_captions

CAPTION_FILE = "subset.csv"  # a folder's record of its captions, row k = image k
_LATER_SETTINGS = {"images_per_caption": 1}  # settings added since folders were first recorded: their value before


def folder_name(prefix: str, scheduler: str, steps: int, w: float, seed: int, name: str | None,
                x0_decoder: str | None = None, model: str | None = None) -> str:
    """The official naming scheme, e.g. DATE_CLIP_scheduler_DDIM_steps_50_w_8.0_seed_6_name_TEST; a model of another
    family than SD 1.x/2.x adds `_model_<shortcut or folder name>`, fast mode (x̂0 decoded by a tiny decoder, other
    images) `_x0_<decoder folder name>`, both before the name."""
    folder = f"{prefix}_scheduler_{scheduler}_steps_{steps}_w_{w}_seed_{seed}"
    if model:
        folder += "_model_" + model
    if x0_decoder:
        folder += "_x0_" + os.path.basename(os.path.normpath(x0_decoder))
    return folder + (f"_name_{name}" if name else "")


def save_image(image: Image.Image, path: str) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def image_path(folder: str, key: ImageKey) -> str:
    """`<k>.png` for caption k, `<k>_<j>.png` for copy j of caption k (several images per caption)."""
    return os.path.join(folder, f"{key}.png" if isinstance(key, int) else f"{key[0]}_{key[1]}.png")


def image_keys(indices: Iterable[int], per_caption: int) -> List[ImageKey]:
    """The images of captions `indices`: k each with one image per caption, else (k, 0) .. (k, per_caption − 1)."""
    if per_caption == 1:
        return list(indices)
    return [(index, copy) for index in indices for copy in range(per_caption)]


def pending(folder: str, keys: Iterable[ImageKey]) -> List[ImageKey]:
    """Images not written yet (resuming skips the rest)."""
    return [key for key in keys if not os.path.exists(image_path(folder, key))]


def check_writable(folder: str) -> None:
    """Refuse an output folder that cannot be created or written, before any model loads: a file in the way, or a
    read-only parent."""
    path = folder
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserInputError(f"cannot write to {folder}: {path} is a file, not a folder")
    if not os.access(path or ".", os.W_OK | os.X_OK):
        raise UserInputError(f"cannot write to {folder}: {path} is not writable")


def read_config(folder: str) -> Dict | None:
    """A folder's config.json (None when there is none): the record its images are resumed against."""
    path = os.path.join(folder, "config.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserInputError(f"cannot read {path} ({e}): it records how the images there were made; restore it or "
                             "use another output folder") from None
    if not isinstance(config, dict):
        raise UserInputError(f"{path} is not a config record; restore it or use another output folder")
    return config


def check_resumable(folder: str, config: Dict, captions: List[str], unknown: Sequence[str] = ()) -> None:
    """Refuse to mix images made with different settings or captions in one folder (`unknown`: settings not known
    yet, e.g. in a dry run, left out of the comparison)."""
    previous_config = read_config(folder)
    if previous_config is None:
        return
    previous = previous_config.get("settings", {})
    if "seeding" not in previous:
        raise UserInputError(f"{folder} holds images seeded by an earlier rule that gave every --generate_seed the same "
                             "noise; use another output folder")
    previous = {**{k: v for k, v in _LATER_SETTINGS.items() if k in config["settings"]}, **previous}
    changed = [k for k in previous if k not in unknown and previous[k] != config["settings"].get(k)]
    if changed:
        diffs = ", ".join(f"{k}: {previous[k]!r} -> {config['settings'].get(k)!r}" for k in changed)
        raise UserInputError(f"{folder} holds images made with other settings ({diffs}); use another output folder")
    caption_file = os.path.join(folder, CAPTION_FILE)
    old_captions = read_captions(caption_file) if os.path.exists(caption_file) else []
    common = min(len(old_captions), len(captions))
    if old_captions[:common] != captions[:common]:
        raise UserInputError(f"{folder} holds images of other captions; use another output folder")


def record_captions(folder: str, captions: Sequence[str]) -> None:
    """The folder's `subset.csv`: caption k of image k. It only grows: a resume with fewer captions (a smaller
    --max_cnt) keeps the longer record its images were made from."""
    path = os.path.join(folder, CAPTION_FILE)
    if os.path.exists(path) and len(read_captions(path)) >= len(captions):
        return
    write_captions(path, captions)


def write_config(folder: str, config: Dict) -> None:
    """config.json: the settings that made the images (a resume with other values is refused) and the run's record."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(os.path.join(folder, "config.json"), write)
