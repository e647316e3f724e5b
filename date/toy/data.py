"""Training data for the toy models: rendered (caption, image) pairs and captions that are false for an image."""
from dataclasses import dataclass
from typing import List

import numpy as np
import torch
from tqdm import tqdm

from date.toy.captions import COLORS, SHAPES, Caption, Placed, judge
from date.toy.world import render, sample_pair

_OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}


@dataclass
class Pairs:
    """Rendered pairs: images uint8 N×3×SIZE×SIZE, one true caption each, and each scene's objects."""

    images: torch.Tensor
    captions: List[Caption]
    objects: List[List[Placed]]

    def __len__(self) -> int:
        return len(self.captions)

    def texts(self, index: torch.Tensor | List[int]) -> List[str]:
        return [self.captions[i].text for i in index]


def make_pairs(count: int, seed: int, progress: bool = True) -> Pairs:
    """`count` pairs from the world's distribution, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, 3, *render([]).size), dtype=np.uint8)
    captions, objects = [], []
    for i in tqdm(range(count), desc="rendering", disable=not progress, mininterval=2):
        caption, shapes = sample_pair(rng)
        images[i] = np.asarray(render(shapes)).transpose(2, 0, 1)
        captions.append(caption)
        objects.append([s.placed() for s in shapes])
    return Pairs(torch.from_numpy(images), captions, objects)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]."""
    return images.float() / 255


def _variants(caption: Caption, rng: np.random.Generator) -> Caption:
    """One random edit of a caption: a color, a shape, a position or relation, or the order of two objects."""
    objects = list(caption.objects)
    edits = ["color", "shape"] + (["where"] if caption.template not in ("single", "and") else []) + (
        ["swap"] if len(objects) == 2 else []
    )
    edit = rng.choice(edits)
    if edit == "swap":
        return Caption(tuple(objects[::-1]), relation=caption.relation)
    if edit == "where":
        if caption.position:
            return Caption(caption.objects, position=_OPPOSITE[caption.position])
        return Caption(caption.objects, relation="above" if caption.relation == "left_of" else "left_of")
    k = rng.integers(len(objects))
    color, shape = objects[k]
    if edit == "color":
        color = rng.choice([c for c in COLORS if c != color])
    else:
        shape = rng.choice([s for s in SHAPES if s != shape])
    objects[k] = (str(color), str(shape))
    if len(objects) == 2 and objects[0] == objects[1]:
        return _variants(caption, rng)
    return Caption(tuple(objects), position=caption.position, relation=caption.relation)


def hard_negative(caption: Caption, objects: List[Placed], rng: np.random.Generator) -> Caption:
    """A caption one edit away from `caption` that is false for the scene `objects` (the lesson CLIP needs most)."""
    while True:
        candidate = _variants(caption, rng)
        if not judge(candidate, objects).ok:
            return candidate


def spatial_negative(caption: Caption, objects: List[Placed], rng: np.random.Generator) -> Caption:
    """The caption with its position flipped or its two objects swapped around the relation, when that is false for
    the scene: the only edits that are about where things are, which a random edit picks too rarely to be learned."""
    if caption.position:
        candidate = Caption(caption.objects, position=_OPPOSITE[caption.position])
    elif caption.relation in ("left_of", "above"):
        candidate = Caption(caption.objects[::-1], relation=caption.relation)
    else:
        return hard_negative(caption, objects, rng)
    return hard_negative(caption, objects, rng) if judge(candidate, objects).ok else candidate


def truth_matrix(captions: List[Caption], objects: List[List[Placed]]) -> torch.Tensor:
    """truth[i, j]: caption j holds for scene i (judged only where the named objects are exactly the scene's)."""
    named = [sorted(c.objects) for c in captions]
    present = [sorted((p.color, p.shape) for p in o) for o in objects]
    return torch.tensor(
        [[n == p and judge(c, o).ok for c, n in zip(captions, named)] for o, p in zip(objects, present)]
    )

