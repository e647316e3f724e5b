"""BLIP captions of generated images, decoded as Attend-and-Excite's text-text metric decodes them.

Their script captions with LAVIS's `blip_caption` model, type `base_coco` (BLIP base fine-tuned for COCO captioning),
and its default `generate`: the prompt "a picture of " fed to the decoder, beam search with 3 beams, between 10 and 30
tokens (prompt included), repetition penalty 1.0, the prompt cut off the decoded text. LAVIS no longer installs beside
current libraries, so this runs the transformers port of the same architecture (`BlipForConditionalGeneration`, hub id
Salesforce/blip-image-captioning-base) with those settings, and LAVIS's evaluation preprocessing (a 384×384 bicubic
resize of the whole image, CLIP normalization), written out here so that no image processor version changes it.
"""
import functools
from typing import Any, Dict, List, Sequence

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode
from transformers import AutoTokenizer, BlipForConditionalGeneration

from date.io.loading import loading, model_path
from date.scorers.preprocess import CLIP_MEAN, CLIP_STD

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
PROMPT = "a picture of "  # LAVIS blip_caption_base_coco.yaml
IMAGE_SIZE = 384
# LAVIS BlipCaption.generate defaults -> XBertLMHeadDecoder.generate_from_encoder's beam-search call; the rest are
# transformers' defaults of that time, spelled out so a checkpoint's generation_config cannot change them
DECODING: Dict[str, Any] = {"num_beams": 3, "max_length": 30, "min_length": 10, "do_sample": False,
                            "repetition_penalty": 1.0, "length_penalty": 1.0, "early_stopping": False,
                            "no_repeat_ngram_size": 0, "num_return_sequences": 1}


def blip_pixels(image: Image.Image, size: int = IMAGE_SIZE) -> torch.Tensor:
    """LAVIS's `blip_image_eval` processor: resize (not crop) to size×size, bicubic, then CLIP normalization."""
    resized = TF.resize(image.convert("RGB"), [size, size], InterpolationMode.BICUBIC)
    return TF.normalize(TF.to_tensor(resized), CLIP_MEAN, CLIP_STD)


class BlipCaptioner:
    """One caption per image, with Attend-and-Excite's decoding settings."""

    def __init__(self, source: str, device: torch.device) -> None:
        path = model_path(source)
        with loading("BLIP captioner", source):
            self.model = BlipForConditionalGeneration.from_pretrained(path, dtype=torch.float32).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.device = device
        self.transform = functools.partial(blip_pixels, size=self.model.config.vision_config.image_size)

    @torch.no_grad()
    def captions(self, pixels: Sequence[torch.Tensor]) -> List[str]:
        batch = torch.stack(list(pixels)).to(self.device)
        prompt = self.tokenizer([PROMPT] * len(batch), return_tensors="pt").to(self.device)
        tokens = self.model.generate(pixel_values=batch, input_ids=prompt.input_ids,
                                     attention_mask=prompt.attention_mask, **DECODING)
        return [text[len(PROMPT):] for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
