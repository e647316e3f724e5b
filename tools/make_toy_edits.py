"""Rebuild the bundled toy edit set (`assets/toy/edits.csv`, `assets/toy/edits/<k>.png`): source images made by the
bundled toy model (fixed embeddings, 50 DDIM steps, guidance 8, seeded by the seeding rule) and kept only where the
exact checker says they show their caption, each with one edit of its caption:

- `color`: the one object's color changes, its shape and position stay ("a red circle on the left" -> "a blue circle
  on the left");
- `shape`: its shape changes, color and position stay;
- `color2`: in a two-object scene ("a C S to the left of a C S"), the first object's color changes, the other object
  and the relation stay.

    python tools/make_toy_edits.py [--per_kind 12] [--seed 0]

`evaluation/toy_edit_bench.py` edits these images and judges the results with the same checker.
"""
import argparse
import csv
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from date.io.loading import ASSETS  # noqa: E402

KINDS = ("color", "shape", "color2")
OUT_CSV = os.path.join(ASSETS, "toy", "edits.csv")
OUT_DIR = os.path.join(ASSETS, "toy", "edits")


def candidate(rng: np.random.Generator, kind: str):
    """(source caption, target caption) of one edit of `kind`, both within the toy grammar."""
    from date.toy import COLORS, SHAPES
    from date.toy.captions import POSITIONS, Caption

    colors, shapes = list(COLORS), list(SHAPES)
    color, shape = str(rng.choice(colors)), str(rng.choice(shapes))
    if kind in ("color", "shape"):
        position = str(rng.choice(POSITIONS))
        if kind == "color":
            new = (str(rng.choice([c for c in colors if c != color])), shape)
        else:
            new = (color, str(rng.choice([s for s in shapes if s != shape])))
        return (Caption(((color, shape),), position=position).text,
                Caption((new,), position=position).text)
    other = (str(rng.choice(colors)), str(rng.choice(shapes)))
    while other == (color, shape):
        other = (str(rng.choice(colors)), str(rng.choice(shapes)))
    new = str(rng.choice([c for c in colors if c != color and (c, shape) != other]))
    return (Caption(((color, shape), other), relation="left_of").text,
            Caption(((new, shape), other), relation="left_of").text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per_kind", type=int, default=12, help="edits of each kind")
    parser.add_argument("--seed", type=int, default=0, help="seed of the captions and of the images")
    parser.add_argument("--max_tries", type=int, default=40, help="candidates drawn per kept edit, at most")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from diffusers import StableDiffusionPipeline

    from date.io.outputs import save_image
    from date.io.seeding import image_generator
    from date.sampling import generate
    from date.toy import check

    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(ASSETS, "toy", "sd"), safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(args.seed)
    os.makedirs(OUT_DIR, exist_ok=True)
    rows, tried = [], 0
    for kind in KINDS:
        kept = 0
        for _ in range(args.per_kind * args.max_tries):
            if kept == args.per_kind:
                break
            source, target = candidate(rng, kind)
            image = generate(pipe, [source], None, num_inference_steps=50, guidance_scale=8.0,
                             generator=[image_generator(args.seed, tried)]).images[0]
            tried += 1
            if not check(image, source).ok:
                continue
            name = f"{len(rows)}.png"
            save_image(image, os.path.join(OUT_DIR, name))
            rows.append([f"edits/{name}", source, target, kind])
            kept += 1
        print(f"{kind}: kept {kept} of the images drawn so far ({tried})", file=sys.stderr)
    with open(OUT_CSV, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "source_prompt", "target_prompt", "kind"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} edits to {OUT_CSV} ({tried} images drawn)")


if __name__ == "__main__":
    main()
