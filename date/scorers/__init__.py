"""The evaluation functions h, one file each, all `date.Scorer`s; `load_scorer` and `parse_h` serve the command line."""
import math
from typing import Dict, Optional

import torch

from date.io.errors import UserInputError
from date.scorers.base import Scorer
from date.scorers.weighted import Weighted

# name -> (default source, extra sources the loader takes, e.g. a tokenizer)
H_MODELS = {
    "clip": ("openai/clip-vit-large-patch14", {}),
    "ir": ("THUDM/ImageReward", {"ir_tokenizer": "bert-base-uncased"}),
    "pickscore": ("yuvalkirstain/PickScore_v1", {"pickscore_processor": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"}),
    "aesthetic": ("camenduru/improved-aesthetic-predictor", {"aesthetic_clip": "openai/clip-vit-large-patch14"}),
    "hps": ("xswu/HPSv2", {"hps_arch": "ViT-H-14"}),
    "ugclip": ("openai", {"ugclip_arch": "RN50-quickgelu"}),  # Universal Guidance's official CLIP loss, as an h
}


def source_names() -> list:
    return [name for name, (_, extra) in H_MODELS.items() for name in (name, *extra)]


def parse_sources(items) -> Dict[str, str]:
    """`NAME=PATH_OR_ID` items (`--h_model`) -> {name: path}; NAME is an h or one of its extra sources."""
    sources = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value or name not in source_names():
            raise UserInputError(f"--h_model takes NAME=PATH_OR_ID with NAME one of {', '.join(source_names())}, got {item!r}")
        sources[name] = value
    return sources


def parse_h(spec: str) -> Dict[str, float]:
    """`clip` or `name:weight,...` (e.g. `clip:1,ir:0.5`) -> {name: weight}."""
    weights: Dict[str, float] = {}
    for term in spec.split(","):
        name, _, weight = term.strip().partition(":")
        if name not in H_MODELS:
            raise UserInputError(f"--h: unknown evaluation function {name!r} (known: {', '.join(H_MODELS)})")
        if name in weights:
            raise UserInputError(f"--h names {name} twice")
        try:
            weights[name] = float(weight) if weight else 1.0
        except ValueError:
            raise UserInputError(f"--h: weight of {name} must be a number, got {weight!r}") from None
        if not math.isfinite(weights[name]) or weights[name] == 0:
            raise UserInputError(f"--h: weight of {name} must be finite and not zero, got {weight!r}")
    return weights


def load_scorer(name: str, sources: Optional[Dict[str, str]] = None, torch_dtype: torch.dtype = torch.float32) -> Scorer:
    """h `name` from `sources` (hub ids or local paths by source name, see H_MODELS), defaults for the rest."""
    default, extra = H_MODELS[name]
    sources = {**{name: default}, **extra, **(sources or {})}
    if name == "clip":
        from date.scorers.clip import CLIPScorer

        return CLIPScorer.from_pretrained(sources["clip"], torch_dtype=torch_dtype)
    if name == "ir":
        from date.scorers.image_reward import ImageRewardScorer

        return ImageRewardScorer.from_pretrained(sources["ir"], tokenizer=sources["ir_tokenizer"], torch_dtype=torch_dtype)
    if name == "pickscore":
        from date.scorers.pickscore import PickScoreScorer

        return PickScoreScorer.from_pretrained(sources["pickscore"], processor=sources["pickscore_processor"],
                                               torch_dtype=torch_dtype)
    if name == "aesthetic":
        from date.scorers.aesthetic import AestheticScorer

        return AestheticScorer.from_pretrained(sources["aesthetic"], clip=sources["aesthetic_clip"], torch_dtype=torch_dtype)
    if name == "ugclip":
        from date.scorers.ug_clip import UGCLIPScorer

        return UGCLIPScorer.from_pretrained(sources["ugclip"], architecture=sources["ugclip_arch"],
                                            torch_dtype=torch_dtype)
    from date.scorers.hps import HPSScorer

    return HPSScorer.from_pretrained(sources["hps"], architecture=sources["hps_arch"], torch_dtype=torch_dtype)


__all__ = ["H_MODELS", "Scorer", "Weighted", "load_scorer", "parse_h", "parse_sources", "source_names"]
