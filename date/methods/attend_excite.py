"""Attend-and-Excite (Chefer et al., SIGGRAPH 2023) on a stock SD 1.x/2.x pipeline.

Before each of the first `max_iter_to_alter` steps, x_t takes a gradient step on the loss
    L = max over concepts of max(0, 1 − max over pixels of smooth(A_concept)),
A the conditional call's cross-attention maps (`date.methods.attention_maps`: averaged over layers and heads at 16×16,
softmax over the text tokens after ×100), step size `scale_factor`·√(linear 1 → 0.5 over the steps). At the steps of
`thresholds` ({step: threshold}), while an image's L exceeds 1 − threshold, x_t first takes such steps (at most
`max_refinement_steps`): the official iterative refinement. As the official `pipeline_attend_and_excite.py`, which
samples one image at a time; here a batch, each image with its own loss, gradient and refinement count.
"""
import functools
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch

from date.methods.attention_maps import CrossAttentionMaps, smooth, text_softmax, token_maps
from date.methods import latent_steering
from date.methods.latent_steering import descend, step_sizes


@dataclass(frozen=True)
class Settings:
    """The official defaults (`config.py`, SD 1.4)."""

    max_iter_to_alter: int = 25
    thresholds: Dict[int, float] = field(default_factory=lambda: {0: 0.05, 10: 0.5, 20: 0.8})
    scale_factor: float = 20.0
    scale_range: tuple = (1.0, 0.5)
    attention_res: int = 16
    smooth_attentions: bool = True
    sigma: float = 0.5
    kernel_size: int = 3
    max_refinement_steps: int = 20


def max_attention(maps: torch.Tensor, tokens: torch.Tensor, settings: Settings) -> torch.Tensor:
    """(batch, n): each concept token's largest (smoothed) attention over the pixels."""
    concept = token_maps(text_softmax(maps), tokens - 1)
    if settings.smooth_attentions:
        concept = smooth(concept, settings.kernel_size, settings.sigma)
    return concept.amax(dim=(-2, -1))


class AttendExcite:
    """The update of one batch: `self(latents, i, t)` is x_t for step i; `trace` lists every gradient step's losses."""

    def __init__(self, settings: Settings, maps: CrossAttentionMaps, cond: torch.Tensor, tokens: torch.Tensor,
                 steps: int) -> None:
        self.settings, self.maps, self.cond, self.tokens = settings, maps, cond, tokens
        self.sizes = step_sizes(settings.scale_factor, steps, settings.scale_range)
        self.trace: List = []

    def loss(self, latents: torch.Tensor, t) -> torch.Tensor:
        """Per image: max over concepts of max(0, 1 − max attention), from a conditional call at x_t."""
        return (1 - max_attention(self.maps(latents, t, self.cond), self.tokens, self.settings)).clamp(min=0).amax(dim=1)

    def __call__(self, latents: torch.Tensor, i: int, t) -> torch.Tensor:
        settings, size = self.settings, self.sizes[i]
        with torch.enable_grad():
            # 1. The loss at x_t.
            latents = latents.detach().requires_grad_(True)
            loss = self.loss(latents, t)
            # 2. At a refinement step: gradient steps while an image's loss is above its target.
            if i in settings.thresholds:
                target = max(0.0, 1.0 - settings.thresholds[i])
                active = loss > target
                if active.any():
                    for _ in range(settings.max_refinement_steps):
                        latents = latents.detach().requires_grad_(True)
                        loss = self.loss(latents, t)
                        latents = descend(latents, loss * active, size, self.trace)
                        active = active & (loss > target)
                        if not active.any():
                            break
                    latents = latents.detach().requires_grad_(True)
                    loss = self.loss(latents, t)
            # 3. The step's own gradient step, in the first max_iter_to_alter steps.
            if i < settings.max_iter_to_alter:
                latents = descend(latents, loss, size, self.trace)
        return latents.detach()


def generate(pipe, prompts: Sequence[str], scorer=None, concepts: Sequence[Sequence[str]] = (),
             settings: Settings = Settings(), **kwargs):
    """Sample with Attend-and-Excite, exciting each prompt's `concepts` (its words); with a `scorer`, DATE's
    embedding updates too. Keyword arguments as for `date.generate`."""
    return latent_steering.generate(pipe, prompts, scorer, concepts, functools.partial(AttendExcite, settings),
                                    settings.attention_res, **kwargs)
