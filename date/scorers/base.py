"""The evaluation function h(image, prompt) that DATE ascends, as one interface for every reward model."""
from typing import Dict, Sequence

import torch

from date.scorers.preprocess import CLIP_SIZE, to_clip_input


def pooled(output) -> torch.Tensor:
    """Projected features from a transformers `get_*_features` call: a tensor before transformers 5, an output object since."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class Scorer(torch.nn.Module):
    """Base class: differentiable in the image, constant in the prompt.

    Subclasses encode one prompt (`encode_prompt`, done once per prompt and cached, without gradient) and score a batch of
    normalized 224×224 images against stacked prompt encodings (`score_pixels`). `score` is the single entry point that
    DATE and the evaluation scripts use, so every h gets the same image path.
    """

    input_size = CLIP_SIZE  # side of the square image the vision tower takes
    preprocess = None  # PIL image -> the tower's input, as the reference's evaluation prepares it (score_pil)

    def __init__(self) -> None:
        super().__init__()
        self._prompt_cache: Dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        raise NotImplementedError

    def score_pixels(self, pixel_values: torch.Tensor, prompt_encodings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encoded_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        for prompt in prompts:
            cached = self._prompt_cache.get(prompt)
            if cached is None or cached.device != self.device:
                with torch.no_grad():
                    self._prompt_cache[prompt] = self.encode_prompt(prompt)
        return torch.stack([self._prompt_cache[p] for p in prompts])

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """h for a batch: images float B×3×H×W in [0, 1] (any size, any dtype/device), one prompt each; returns (B,) float32."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(prompts)} prompts")
        pixel_values = to_clip_input(images.to(device=self.device, dtype=self.dtype), self.input_size)
        return self.score_pixels(pixel_values, self._encoded_prompts(prompts)).float()

    @torch.no_grad()
    def score_pil(self, images: Sequence, prompts: Sequence[str]) -> torch.Tensor:
        """h of PIL images through the reference's own evaluation preprocessing (`preprocess`). (B,) float32."""
        pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device, self.dtype)
        return self.score_pixels(pixels, self._encoded_prompts(list(prompts))).float()

    def forward(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return self.score(images, prompts)
