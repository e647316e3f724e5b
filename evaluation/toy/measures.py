"""What is measured on toy-world images, whoever made them: the checker's verdicts summarized per part and caption
template with bootstrap intervals, the toy-CLIP score and toy FID against freshly rendered world images. Shared by the
benchmark (`bench.py`), the judge of any folder (`judge.py`) and the report's `--metrics toy`."""
import hashlib
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from date.io.errors import UserInputError
from date.io.loading import ASSETS as ALL_ASSETS
from date.toy import SIZE, Verdict, check, parse
from date.toy import captions as toy_captions, checker as toy_checker
from date.toy.fid import FeatureNet, embed_images, frechet_distance
from date.toy.world import render, sample_pair
from evaluation.stats import mean_with_ci
from evaluation.toy.report import PARTS

ASSETS = os.path.join(ALL_ASSETS, "toy")
REFERENCE_SEED = 12345


@dataclass
class Judged:
    """Everything measured on one method's images, in (seed, prompt) order."""

    verdicts: List[Verdict]
    clip_scores: np.ndarray
    images: List[Image.Image]


def require_toy_captions(captions: Sequence[str], where: str) -> None:
    """Refuse, before any model loads, captions the checker cannot judge: those outside the toy world's grammar."""
    for index, caption in enumerate(captions):
        try:
            parse(caption)
        except ValueError as e:
            raise UserInputError(f"{where}: caption {index}: {e} (the toy checker reads only the toy world's captions)") from None


def load_feature_net(path: str) -> FeatureNet:
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise UserInputError(f"toy FID network not found: {path}")
    return FeatureNet.from_pretrained(path)


@torch.no_grad()
def clip_scores(scorer, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
    pixels = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    return np.concatenate([scorer.score(pixels[i : i + 256], prompts[i : i + 256]).cpu().numpy() for i in range(0, len(images), 256)])


def part_values(verdicts: Sequence[Verdict], part: str) -> np.ndarray:
    """0/1 per image for one part of the verdict; positions only over captions that have one (NaN elsewhere)."""
    if part == "no_extra":
        return np.array([v.extra_objects == 0 for v in verdicts], dtype=float)
    if part == "positions":
        return np.array([np.nan if v.positions is None else float(v.positions) for v in verdicts])
    return np.array([getattr(v, part) for v in verdicts], dtype=float)


def per_prompt(values: np.ndarray, prompt_count: int) -> np.ndarray:
    """Average over seeds: images are stored seed-major, so (seeds × prompts) -> one value per prompt."""
    return values.reshape(-1, prompt_count).mean(0)


def summarize(judged: Judged, prompts: Sequence[str], reference_features: np.ndarray, feature_net: FeatureNet) -> Dict:
    ok = np.array([v.ok for v in judged.verdicts], dtype=float)
    accuracy = mean_with_ci(per_prompt(ok, len(prompts)))
    templates = [parse(p).template for p in prompts] * (len(ok) // len(prompts))
    two_object = np.array([parse(p).objects[1:] != () for p in prompts] * (len(ok) // len(prompts)))
    parts = {}
    for part in PARTS:
        values = part_values(judged.verdicts, part)
        parts[part] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else None
    return {
        "exact_accuracy": accuracy.mean,
        "ci95": [accuracy.low, accuracy.high],
        "n": len(ok),
        "prompts": len(prompts),
        "single_object_accuracy": float(ok[~two_object].mean()) if np.any(~two_object) else None,
        "two_object_accuracy": float(ok[two_object].mean()) if np.any(two_object) else None,
        "parts": parts,
        "templates": {t: float(ok[np.array(templates) == t].mean()) for t in dict.fromkeys(templates)},
        "templates_ci95": template_intervals(ok, prompts),
        "clip_score": float(judged.clip_scores.mean()),
        "toy_fid": frechet_distance(embed_images(feature_net, judged.images), reference_features),
    }


def template_intervals(ok: np.ndarray, prompts: Sequence[str]) -> Dict[str, List[float]]:
    """95% bootstrap interval of each template's accuracy, over its prompts (seeds averaged per prompt); [None, None]
    for a template with a single prompt."""
    by_prompt = per_prompt(ok, len(prompts))
    templates = np.array([parse(p).template for p in prompts])
    out: Dict[str, List[float | None]] = {}
    for template in dict.fromkeys(templates):
        values = by_prompt[templates == template]
        interval = mean_with_ci(values) if len(values) > 1 else None
        out[str(template)] = [interval.low, interval.high] if interval else [None, None]
    return out


def reference_features(feature_net: FeatureNet, count: int) -> np.ndarray:
    """Features of `count` freshly rendered world images (fixed seed, so every run compares with the same set)."""
    rng = np.random.default_rng(REFERENCE_SEED)
    images = [render(sample_pair(rng)[1]) for _ in tqdm(range(count), desc="reference", file=sys.stdout, mininterval=5)]
    return embed_images(feature_net, images)


def _unchanged(image: Image.Image) -> Image.Image:
    return image


def checker_id() -> str:
    """Names the checker in saved scores' fingerprints: its code (checker and truth conditions), so a changed checker
    judges again rather than reusing old verdicts."""
    digest = hashlib.sha256()
    for module in (toy_checker, toy_captions):
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    return "date.toy.check:" + digest.hexdigest()[:16]


class ExactChecker:
    """`date.toy.check` as a per-image metric of `evaluation/caption_metric.py`: 1 where an image shows exactly its
    caption, else 0 (captions checked beforehand with `require_toy_captions`)."""

    transform = staticmethod(_unchanged)

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def score_batch(self, images: List[Image.Image], captions: List[str]) -> np.ndarray:
        for image in images:
            if image.size != (SIZE, SIZE):
                raise UserInputError(f"{self.folder}: the toy checker reads {SIZE}×{SIZE} images, got "
                                     f"{image.width}×{image.height} (not a toy-world folder?)")
        return np.array([check(image, caption).ok for image, caption in zip(images, captions)], dtype=np.float32)
