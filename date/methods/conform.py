"""CONFORM (Meral et al., CVPR 2024, "Contrast is All You Need") on a stock SD 1.x/2.x pipeline.

Before each of the first `max_iter_to_alter` steps, x_t takes a gradient step on a contrastive loss over the concepts'
cross-attention maps (`date.methods.attention_maps`: averaged over layers and heads at 16×16, smoothed, flattened):
each concept's map at x_t and its map at the previous step are a positive pair, maps of different concepts negative
pairs, and the loss is NT-Xent (temperature τ) over them (`ntxent`: pytorch-metric-learning's `NTXentLoss`, as the
official code calls it). Step size `scale_factor`·√(linear 1 → 0.5 over the steps). At the steps in
`iterative_refinement_steps`, x_t first takes `refinement_steps` such steps. As the official `pipeline_conform.py`
with the settings of its notebook (the repository's run script); a group per concept holds the concept's one token.
"""
import functools
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from date.methods import latent_steering
from date.methods.attention_maps import CrossAttentionMaps, smooth, text_softmax, token_maps
from date.methods.latent_steering import descend, step_sizes


@dataclass(frozen=True)
class Settings:
    """The official notebook's settings (`notebook.ipynb`; the pipeline's own defaults differ in max_iter_to_alter,
    25, and softmax_normalize, True)."""

    max_iter_to_alter: int = 30
    refinement_steps: int = 20
    iterative_refinement_steps: Tuple[int, ...] = (0, 10, 20)
    scale_factor: float = 20.0
    attention_res: int = 16
    do_smoothing: bool = True
    smoothing_kernel_size: int = 3
    smoothing_sigma: float = 0.5
    temperature: float = 0.5
    softmax_normalize: bool = False


def ntxent(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent per batch element of (batch, m, d) `embeddings` with (m,) `labels`: over every ordered positive pair
    (a, p), −log(e^{s_ap} / (e^{s_ap} + Σ_n e^{s_an})), s the cosine similarity / τ, n the anchor's negatives;
    averaged over the pairs. No positive or no negative pair: 0, not depending on the embeddings."""
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    if not positive.any() or same.all():
        return embeddings.new_zeros(embeddings.shape[0])
    z = F.normalize(embeddings, dim=-1)
    similarity = z @ z.transpose(1, 2) / temperature
    anchor, other = positive.nonzero(as_tuple=True)
    negatives = similarity[:, anchor].masked_fill(same[anchor], float("-inf"))  # (batch, pairs, m)
    logits = torch.cat([similarity[:, anchor, other, None], negatives], dim=2)
    return -(torch.softmax(logits, dim=2)[..., 0] + torch.finfo(logits.dtype).tiny).log().mean(dim=1)


class Conform:
    """The update of one batch: `self(latents, i, t)` is x_t for step i; `trace` lists every gradient step's losses."""

    def __init__(self, settings: Settings, maps: CrossAttentionMaps, cond: torch.Tensor, tokens: torch.Tensor,
                 steps: int) -> None:
        self.settings, self.maps, self.cond, self.tokens = settings, maps, cond, tokens
        self.sizes = step_sizes(settings.scale_factor, steps)
        self.previous: Optional[torch.Tensor] = None  # the maps of the last conditional call of the step before
        self.trace: List = []

    def embed(self, maps: torch.Tensor) -> torch.Tensor:
        """(batch, n, res²): each concept's map, as the loss sees it."""
        settings = self.settings
        text = text_softmax(maps) if settings.softmax_normalize else maps[..., 1:-1]
        concept = token_maps(text, self.tokens - 1)
        if settings.do_smoothing:
            concept = smooth(concept, settings.smoothing_kernel_size, settings.smoothing_sigma)
        return concept.flatten(2)

    def loss(self, maps: torch.Tensor) -> torch.Tensor:
        """Per image: NT-Xent over the concepts' maps now and at the previous step (one class per concept)."""
        labels = torch.arange(self.tokens.shape[1], device=maps.device)
        embeddings = self.embed(maps)
        if self.previous is not None:  # in the official order: each concept's map now, then before
            embeddings = torch.stack([embeddings, self.embed(self.previous)], dim=2).flatten(1, 2)
            labels = labels.repeat_interleave(2)
        return ntxent(embeddings, labels, self.settings.temperature)

    def __call__(self, latents: torch.Tensor, i: int, t) -> torch.Tensor:
        settings, size = self.settings, self.sizes[i]
        with torch.enable_grad():
            # 1. At a refinement step: refinement_steps gradient steps first.
            if i in settings.iterative_refinement_steps:
                for _ in range(settings.refinement_steps):
                    latents = latents.detach().requires_grad_(True)
                    latents = descend(latents, self.loss(self.maps(latents, t, self.cond)), size, self.trace)
            # 2. The loss at x_t; its maps are the next step's previous maps.
            latents = latents.detach().requires_grad_(True)
            maps = self.maps(latents, t, self.cond)
            loss = self.loss(maps)
            # 3. The step's own gradient step, in the first max_iter_to_alter steps.
            if i < settings.max_iter_to_alter:
                latents = descend(latents, loss, size, self.trace)
        self.previous = maps.detach()
        return latents.detach()


def generate(pipe, prompts: Sequence[str], scorer=None, concepts: Sequence[Sequence[str]] = (),
             settings: Settings = Settings(), **kwargs):
    """Sample with CONFORM, contrasting each prompt's `concepts` (its words); with a `scorer`, DATE's embedding
    updates too. Keyword arguments as for `date.generate`."""
    return latent_steering.generate(pipe, prompts, scorer, concepts, functools.partial(Conform, settings),
                                    settings.attention_res, **kwargs)
