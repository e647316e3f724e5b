"""h = Σ wᵢ·hᵢ, each hᵢ on its own scale.

DATE's step is normalized (c moves by ρ whatever ‖∇h‖), so the weights set the mix of gradient directions, not the
step size: h and 3·h give the same images, and with several terms a term whose h varies more steeply pulls harder.
"""
from typing import Dict, Optional, Sequence

import torch

from date.scorers.base import Scorer


class Weighted(Scorer):
    """`Weighted({"clip": 1.0, "ir": 0.5})` loads each h with its default model (`date.scorers.load_scorer`);
    `scorers={name: Scorer}` passes them in."""

    def __init__(self, weights: Dict[str, float], scorers: Optional[Dict[str, Scorer]] = None) -> None:
        super().__init__()
        if scorers is None:
            from date.scorers import load_scorer

            scorers = {name: load_scorer(name) for name in weights}
        if set(weights) != set(scorers) or not weights:
            raise ValueError(f"weights for {sorted(weights)} but scorers for {sorted(scorers)}")
        self.weights = dict(weights)
        self.scorers = torch.nn.ModuleDict(scorers)

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Σ wᵢ·hᵢ(images, prompts): each scorer preprocesses the images its own way. (B,) float32."""
        return sum(weight * self.scorers[name].score(images, prompts) for name, weight in self.weights.items())
