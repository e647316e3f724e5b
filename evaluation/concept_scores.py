"""Attend-and-Excite's three per-image metrics as caption metrics (`evaluation/caption_metric.py`): each saved beside
the images with its fingerprint, so `multi_concept.py` and the report compute them the same way and reuse each other's.

- `full_prompt`: CLIP similarity of the image and the templated prompt;
- `min_object`: the smaller of its similarities with the two templated halves of the prompt;
- `text_text`: CLIP similarity of the image's BLIP caption and the templated prompt.
"""
import functools
from dataclasses import dataclass
from typing import Callable, List, Sequence

import numpy as np
import torch

from date.io.loading import model_identity
from date.run.loading import resolve_model
from evaluation import blip_captions, concept_clip
from evaluation.caption_metric import CaptionScorer, score_captioned_folder

NONE = "none"  # --caption_model none: no captioner, no text-text metric


class FullPrompt:
    def __init__(self, clip: concept_clip.ConceptCLIP) -> None:
        self.clip, self.transform = clip, clip.transform

    def score_batch(self, images: List[torch.Tensor], captions: List[str]) -> torch.Tensor:
        return (self.clip.image_features(images) * self.clip.templated_features(captions)).sum(-1)


class MinObject:
    def __init__(self, clip: concept_clip.ConceptCLIP) -> None:
        self.clip, self.transform = clip, clip.transform

    def score_batch(self, images: List[torch.Tensor], captions: List[str]) -> torch.Tensor:
        features = self.clip.image_features(images)
        first, second = zip(*(concept_clip.prompt_halves(caption) for caption in captions))
        return torch.minimum((features * self.clip.templated_features(first)).sum(-1),
                             (features * self.clip.templated_features(second)).sum(-1))


class TextText:
    """Also keeps the captions it wrote, in order, for the per-image record."""

    def __init__(self, clip: concept_clip.ConceptCLIP, captioner: blip_captions.BlipCaptioner) -> None:
        self.clip, self.captioner, self.transform = clip, captioner, captioner.transform
        self.written: List[str] = []

    def score_batch(self, images: List[torch.Tensor], captions: List[str]) -> torch.Tensor:
        written = self.captioner.captions(images)
        self.written += written
        return (self.clip.text_features(written) * self.clip.templated_features(captions)).sum(-1)


@dataclass(frozen=True)
class ConceptMetric:
    key: str
    score_file: str
    build: Callable[["ConceptModels"], CaptionScorer]
    needs_captioner: bool = False


METRICS = (
    ConceptMetric("full_prompt", "ae_full_prompt_scores.npz", lambda models: FullPrompt(models.clip)),
    ConceptMetric("min_object", "ae_min_object_scores.npz", lambda models: MinObject(models.clip)),
    ConceptMetric("text_text", "ae_text_text_scores.npz", lambda models: TextText(models.clip, models.captioner), True),
)
BY_KEY = {metric.key: metric for metric in METRICS}


class ConceptModels:
    """CLIP (hub id, local folder or `toy`) and the BLIP captioner (or `none`), each loaded on first use only."""

    def __init__(self, clip_model: str | None, caption_model: str | None, device: torch.device) -> None:
        self.clip_source = resolve_model(clip_model, concept_clip.DEFAULT_MODEL, "clip")
        self.caption_source = caption_model or blip_captions.DEFAULT_MODEL
        self.device = device

    @property
    def captions(self) -> bool:
        return self.caption_source != NONE

    def metrics(self) -> List[ConceptMetric]:
        return [metric for metric in METRICS if self.captions or not metric.needs_captioner]

    @functools.cached_property
    def clip(self) -> concept_clip.ConceptCLIP:
        return concept_clip.ConceptCLIP(self.clip_source, self.device)

    @functools.cached_property
    def captioner(self) -> blip_captions.BlipCaptioner:
        return blip_captions.BlipCaptioner(self.caption_source, self.device)

    def fingerprint(self, metric: ConceptMetric) -> str:
        """What a saved score depends on: the CLIP model, and for text-text the captioner too."""
        clip = f"ae-clip:{model_identity(self.clip_source)}"
        return f"{clip}+ae-blip:{model_identity(self.caption_source)}" if metric.needs_captioner else clip


def check_prompts(captions: Sequence[str]) -> None:
    """Every prompt must split into two objects: checked before any model is loaded."""
    for caption in dict.fromkeys(captions):
        concept_clip.prompt_halves(caption)


def score_folder(models: ConceptModels, metric: ConceptMetric, folder: str, paths: Sequence[str],
                 captions: Sequence[str], batch_size: int, num_workers: int, reuse: bool,
                 desc: str) -> tuple[np.ndarray, CaptionScorer | None]:
    """Per-image scores of one metric (saved to `<folder>/<score_file>`), and the scorer when one was built."""
    built: List[CaptionScorer] = []

    def scorer() -> CaptionScorer:
        built.append(metric.build(models))
        return built[0]

    scores = score_captioned_folder(folder, paths, captions, models.fingerprint(metric), scorer, metric.score_file,
                                    batch_size, num_workers, reuse=reuse, desc=desc)
    return scores, (built[0] if built else None)
