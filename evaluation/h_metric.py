"""PickScore, aesthetic score or HPS v2.1 of generated images, with the interface of evaluation/clip_score.py: per-image
scores saved beside the images with a fingerprint, `Average <metric>: <x>` printed. Images go through each reference's
own preprocessing (the CLIP processors', open_clip's validation transform), after being decoded as RGB."""
import functools
import os
from typing import Dict, List, Sequence

import numpy as np
import torch

from date.io.errors import exit_on_user_error
from date.io.loading import model_path
from date.scorers import H_MODELS, Scorer, load_scorer, parse_sources
from date.io import flags
from evaluation.caption_metric import add_caption_metric_args, run_caption_metric


class HMetric:
    """A scorer as caption_metric wants it: loader workers run `transform` (the reference's preprocessing)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.transform = scorer.preprocess

    @torch.no_grad()
    def score_batch(self, images: List[torch.Tensor], captions: List[str]) -> torch.Tensor:
        pixels = torch.stack(images).to(self.scorer.device, self.scorer.dtype)
        return self.scorer.score_pixels(pixels, self.scorer._encoded_prompts(captions)).float()


def sources_for(name: str, items: Sequence[str]) -> Dict[str, str]:
    """The `--h_model` items that belong to h `name`, checked (a typo fails before any image is read)."""
    sources = {key: value for key, value in parse_sources(items).items() if key.split("_")[0] == name}
    for path in sources.values():
        if not os.path.isfile(path):
            model_path(path)
    return sources


def fingerprint(name: str, sources: Dict[str, str]) -> str:
    """Identifies the model of saved scores: every source, defaults included."""
    every = {name: H_MODELS[name][0], **H_MODELS[name][1], **sources}
    return f"{name}:" + ",".join(f"{k}={v}" for k, v in sorted(every.items()))


def build(name: str, sources: Dict[str, str], device) -> HMetric:
    return HMetric(load_scorer(name, sources).to(device))


@exit_on_user_error
def main(name: str, label: str, argv: Sequence[str] | None = None) -> np.ndarray:
    parser = flags.Parser(description=f"{label} of generated images.")
    add_caption_metric_args(parser, default_bs=16)
    extra = ", ".join(H_MODELS[name][1])
    parser.add_argument("--h_model", action="append", default=[], metavar="NAME=PATH_OR_ID",
                        help=f"{name} (default {H_MODELS[name][0]}){', ' + extra if extra else ''}: hub id or local path")
    args = parser.parse_args(argv)
    sources = sources_for(name, args.h_model)
    return run_caption_metric(args, fingerprint(name, sources), functools.partial(build, name, sources),
                              f"{name}_scores.npz", label)
