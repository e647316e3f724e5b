"""h = PickScore (Kirstain et al. 2023): CLIP ViT-H/14 fine-tuned on Pick-a-Pic human preferences.

The reference (the model card's inference code) scores logit_scale.exp() · cos(image, text), about 21–23 on real images;
we report it on that scale. Its processor (and tokenizer) is LAION's CLIP-H one.
"""
import functools

import torch
from transformers import AutoProcessor, CLIPModel

from date.io.loading import loading, model_path
from date.scorers.clip import CLIPScorer
from date.scorers.preprocess import processor_pixels

DEFAULT_MODEL = "yuvalkirstain/PickScore_v1"
DEFAULT_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class PickScoreScorer(CLIPScorer):
    def __init__(self, model: CLIPModel, processor) -> None:
        super().__init__(model, processor.tokenizer)
        self.preprocess = functools.partial(processor_pixels, processor.image_processor)  # the reference's own

    @classmethod
    def from_pretrained(cls, name_or_dir: str = DEFAULT_MODEL, processor: str = DEFAULT_PROCESSOR,
                        torch_dtype: torch.dtype = torch.float32) -> "PickScoreScorer":
        with loading("PickScore model", name_or_dir):
            model = CLIPModel.from_pretrained(model_path(name_or_dir), dtype=torch_dtype)
        with loading("PickScore processor", processor):
            return cls(model, AutoProcessor.from_pretrained(model_path(processor)))

    def score_pixels(self, pixel_values: torch.Tensor, prompt_encodings: torch.Tensor) -> torch.Tensor:
        return self.model.logit_scale.exp() * super().score_pixels(pixel_values, prompt_encodings)
