"""Tiny generated folders and a tiny OpenCLIP model for the evaluation tests (offline, random weights)."""
import csv
import functools
import json
import os
import tempfile
from typing import List, Sequence

import numpy as np
import open_clip
import torch
from PIL import Image

TINY_CLIP = "tiny-eval-clip"
_TINY_CLIP_CONFIG = {  # ViT and text transformer of one layer each, with the real tokenizer's vocabulary
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CAPTIONS = ["a cat on a sofa", 'a "big" dog, outside', "a photo of\na city at night", "a red car", "blue sky",
            "a green tree"]


def make_folder(folder: str, count: int, seed: int, brightness: int = 0, captions: Sequence[str] = CAPTIONS,
                size: int = 32) -> List[str]:
    """`<folder>/<i>.png` random RGB images and the `subset.csv` they were 'generated' from."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = np.clip(rng.integers(0, 196, (size, size, 3)) + brightness, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{index}.png"))
    with open(os.path.join(folder, "subset.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["caption"])
        writer.writerows([c] for c in captions)
    return [os.path.join(folder, f"{i}.png") for i in range(count)]


@functools.cache
def tiny_clip_checkpoint() -> str:
    """Register the tiny architecture with open_clip (as a user's config file would be) and save random weights."""
    root = tempfile.mkdtemp(prefix="tiny_openclip_")
    with open(os.path.join(root, f"{TINY_CLIP}.json"), "w") as f:
        json.dump(_TINY_CLIP_CONFIG, f)
    open_clip.add_model_config(root)
    torch.manual_seed(0)
    checkpoint = os.path.join(root, "tiny.pt")
    torch.save(open_clip.create_model(TINY_CLIP).state_dict(), checkpoint)
    return checkpoint


def tiny_clip_dir(root: str) -> str:
    """The same tiny model as a self-contained local directory (`--model DIR`): config + weights, no registration."""
    folder = os.path.join(root, "tiny_clip_dir")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": _TINY_CLIP_CONFIG, "preprocess_cfg": {}}, f)
    state = torch.load(tiny_clip_checkpoint(), weights_only=True)
    torch.save(state, os.path.join(folder, "open_clip_pytorch_model.bin"))
    return folder


def assert_one_line_error(capsys, excinfo, *fragments: str) -> str:
    """A user mistake: exit status 2 and one `error:` line on stderr naming what went wrong, after at most the
    progress bars and notes (which caption file) of work done before the mistake showed up (an unreadable image
    midway)."""
    assert excinfo.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    error = lines[-1]
    assert error.startswith("error: "), lines
    assert all(not line or "%|" in line or line.startswith("captions of ") for line in lines[:-1]), lines
    for fragment in fragments:
        assert fragment in error, error
    return error
