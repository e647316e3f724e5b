"""The one seeding rule of every script: image `index` of a run seeded `seed` (with several images per caption, copy
`j` of caption `index`) gets its own CPU generator.

Its noise (initial latents, then any per-step noise) depends on (seed, index, j) only, so files are identical whatever
the batch size or number of processes. torch's CPU generator keeps only the low 32 bits of a seed, so the rule packs
them into 32 bits without overlap: seed·100,003 + index + j·2²⁶ is distinct for every index < 100,003 and, with one
image per caption (j = 0), seed < 42,949; with several, seed < 671 and j < 64 (larger values wrap around modulo 2³²).
Copy 0 of caption k is the image k of a run with one image per caption.
"""
from typing import Tuple, Union

import torch

RULE = "seed*100003+index"  # recorded in config.json: a folder made with another rule is not resumed
STRIDE = 100_003
COPY_STRIDE = 2**26

ImageKey = Union[int, Tuple[int, int]]  # caption index k (image `<k>.png`), or (k, j) (image `<k>_<j>.png`)


def image_seed(seed: int, key: ImageKey) -> int:
    index, copy = (key, 0) if isinstance(key, int) else key
    return (seed * STRIDE + index + copy * COPY_STRIDE) % 2**32


def image_generator(seed: int, key: ImageKey) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(image_seed(seed, key))
