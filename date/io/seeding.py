"""The one seeding rule of every script: image `index` of a run seeded `seed` gets its own CPU generator.

Its noise (initial latents, then any per-step noise) depends on (seed, index) only, so files are identical whatever the
batch size or number of processes. torch's CPU generator keeps only the low 32 bits of a seed, so the rule packs
(seed, index) into 32 bits without overlap: seed·100,003 + index is distinct for every index < 100,003 and
seed < 42,949 (larger values wrap around modulo 2³²).
"""
import torch

RULE = "seed*100003+index"  # recorded in config.json: a folder made with another rule is not resumed
STRIDE = 100_003


def image_seed(seed: int, index: int) -> int:
    return (seed * STRIDE + index) % 2**32


def image_generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(image_seed(seed, index))
