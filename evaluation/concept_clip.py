"""Attend-and-Excite's CLIP similarities (Chefer et al. 2023, `metrics/` of their code), on transformers' CLIP.

Their image metrics compare a generated image with a prompt embedded as the 80 ImageNet templates average it ("a photo
of a {}." ...; `assets/prompts/imagenet_templates.json`): each template filled with the text, each filled template
embedded and normalized, the mean normalized again. Both the full prompt and each half of it (split at " and ", else
" with ") are embedded so, and an image's "minimum object similarity" is the smaller of its two half similarities: a
missing object pulls it down even when the full prompt still scores well. Their text-text metric compares a caption of
the image, embedded plainly, with the templated prompt. Images go through OpenAI CLIP's own preprocessing, and
everything is computed in fp32 (their script on a GPU ran CLIP in fp16).
"""
import functools
import json
import os
from typing import Dict, List, Sequence, Tuple

import torch
from transformers import AutoTokenizer, CLIPModel

from date.io.errors import UserInputError
from date.io.loading import ASSETS, loading, model_path
from date.scorers.base import pooled
from date.scorers.preprocess import openai_clip_pixels

DEFAULT_MODEL = "openai/clip-vit-base-patch16"  # OpenAI's ViT-B/16, which their scripts load with `clip.load`
TEMPLATES_FILE = os.path.join(ASSETS, "prompts", "imagenet_templates.json")
SEPARATORS = (" and ", " with ")


@functools.cache
def imagenet_templates() -> Tuple[str, ...]:
    with open(TEMPLATES_FILE, encoding="utf-8") as f:
        return tuple(json.load(f)["templates"])


def templated(text: str, templates: Sequence[str]) -> List[str]:
    """Every template filled with `text`, with their clean-up of the doubled article that a prompt starting with "a"
    makes ("a photo of a a cat." -> "a photo of a cat."); plain substring replacements, exactly as theirs."""
    return [template.format(text).replace("a a", "a").replace("the a", "a") for template in templates]


def prompt_halves(prompt: str) -> Tuple[str, str]:
    """The two objects of a prompt: the text before and after the first " and " (or, without one, " with ")."""
    for separator in SEPARATORS:
        if separator in prompt:
            parts = prompt.split(separator)
            return parts[0], parts[1]
    raise UserInputError(f"cannot split the prompt {prompt!r} into two objects (Attend-and-Excite's metrics split at "
                         "' and ' or ' with ')")


class ConceptCLIP:
    """A CLIP model with the embeddings Attend-and-Excite's metrics use; templated text embeddings are cached."""

    def __init__(self, source: str, device: torch.device) -> None:
        path = model_path(source)
        with loading("CLIP", source):
            self.model = CLIPModel.from_pretrained(path, dtype=torch.float32).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.device = device
        self.transform = functools.partial(openai_clip_pixels, size=self.model.config.vision_config.image_size)
        self._templated: Dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def image_features(self, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalized image embeddings of `transform`ed images."""
        features = pooled(self.model.get_image_features(pixel_values=torch.stack(list(pixels)).to(self.device)))
        return features / features.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalized embeddings of texts as they are (no template)."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.tokenizer.model_max_length,
                                return_tensors="pt").to(self.device)
        features = pooled(self.model.get_text_features(input_ids=tokens.input_ids,
                                                       attention_mask=tokens.attention_mask))
        return features / features.norm(dim=-1, keepdim=True)

    def templated_features(self, texts: Sequence[str]) -> torch.Tensor:
        """One row per text: the normalized mean of its normalized template embeddings."""
        for text in dict.fromkeys(texts):
            if text not in self._templated:
                mean = self.text_features(templated(text, imagenet_templates())).mean(dim=0)
                self._templated[text] = mean / mean.norm()
        return torch.stack([self._templated[text] for text in texts])
