"""A deterministic HPS v2.1-format checkpoint for a shrunken OpenCLIP ViT, shared by tools/make_hps_fixture.py (which
records what the reference `hpsv2` package computes with it) and tests/date/scorers/test_scorers.py (which must agree).

Every tensor is drawn from a generator seeded by its key name (`image_reward_recipe.recipe_tensor`), so the checkpoint
is the same whatever the open_clip version that lists the keys."""
import json
import os
from typing import Dict, Tuple

import torch

from tests.support.image_reward_recipe import fingerprint, make_pil_images, recipe_tensor
from tests.support.paths import FIXTURES

ARCHITECTURE = "hps-recipe-vit"  # a ViT-H-14-shaped OpenCLIP model (same blocks and tokenizer), few layers, narrow
CONFIG_DIR = os.path.join(FIXTURES, "open_clip_configs")
PROMPTS = ["a red circle on the left", "a photo of a dog on a beach", "an oil painting of a lighthouse at dusk"]
PIL_CASES = [(0, 0), (1, 1), (2, 2), (3, 0), (0, 2)]  # (image index of make_pil_images, prompt index)
PIXEL_CASES = [0, 1]  # prompt index of each normalized 224×224 pixel tensor


def register(open_clip_module) -> None:
    """Add the recipe's architecture (its config file) to an open_clip: ours or the reference's vendored copy."""
    open_clip_module.add_model_config(CONFIG_DIR)


def config() -> dict:
    with open(os.path.join(CONFIG_DIR, f"{ARCHITECTURE}.json")) as f:
        return json.load(f)


def make_checkpoint(shapes: Dict[str, Tuple[int, ...]]) -> Dict[str, torch.Tensor]:
    """{"state_dict": ...} as HPS_v2.1_compressed.pt holds it, for a model whose state_dict has these shapes."""
    return {"state_dict": {key: recipe_tensor(key, shape) for key, shape in sorted(shapes.items())}}


def rgb_images():
    """The recipe's PIL images as RGB: the reference's preprocessing takes RGB only (as generated images are)."""
    return [image.convert("RGB") for image in make_pil_images()]


def pixel_values() -> torch.Tensor:
    return torch.randn(len(PIXEL_CASES), 3, 224, 224, generator=torch.Generator().manual_seed(7))


__all__ = ["ARCHITECTURE", "config", "PIL_CASES", "PIXEL_CASES", "PROMPTS", "fingerprint", "make_checkpoint",
           "pixel_values", "register", "rgb_images"]
