"""h = HPS v2.1 (Wu et al. 2023): OpenCLIP ViT-H/14 fine-tuned on human preferences (`HPS_v2.1_compressed.pt`).

The reference (`hpsv2`'s scoring) takes the cosine of normalized image and text features, about 0.25–0.32 on real
images. Built with open_clip's own model and tokenizer, the checkpoint's `state_dict` loaded as it is.
"""
import os
from typing import Sequence

import open_clip
import torch
from PIL import Image

from ..loading import loading, model_path
from .base import Scorer
from .checkpoints import model_file, read_state_dict

DEFAULT_CHECKPOINT = "xswu/HPSv2"
CHECKPOINT_FILE = "HPS_v2.1_compressed.pt"
ARCHITECTURE = "ViT-H-14"


class HPSScorer(Scorer):
    def __init__(self, model, tokenizer, preprocess=None) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        size = model.visual.image_size
        self.input_size = size[0] if isinstance(size, (tuple, list)) else size

    @classmethod
    def from_pretrained(cls, checkpoint: str = DEFAULT_CHECKPOINT, architecture: str = ARCHITECTURE,
                        torch_dtype: torch.dtype = torch.float32) -> "HPSScorer":
        """`checkpoint`: the .pt file, a folder holding it, or a hub repo; `architecture`: an open_clip model name."""
        source = checkpoint if os.path.isfile(checkpoint) else model_path(checkpoint)
        with loading("HPS v2.1", checkpoint):
            path = model_file(source, CHECKPOINT_FILE, f"HPS v2.1's {CHECKPOINT_FILE}")
            state_dict = read_state_dict(path, CHECKPOINT_FILE, key="state_dict")
            model, _, preprocess = open_clip.create_model_and_transforms(architecture, pretrained=None)
            model.load_state_dict({k.removeprefix("module."): v for k, v in state_dict.items()})
        return cls(model.to(torch_dtype), open_clip.get_tokenizer(architecture), preprocess)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        features = self.model.encode_text(self.tokenizer([prompt]).to(self.device))[0]
        return features / features.norm()

    def score_pixels(self, pixel_values: torch.Tensor, prompt_encodings: torch.Tensor) -> torch.Tensor:
        features = self.model.encode_image(pixel_values)
        return (features / features.norm(dim=-1, keepdim=True) * prompt_encodings).sum(dim=-1)

    @torch.no_grad()
    def score_pil(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """The reference's path: open_clip's validation transform (resize 224 bicubic, center crop). (B,) float32."""
        pixels = torch.stack([self.preprocess(image) for image in images])
        return self.score_pixels(pixels.to(self.device, self.dtype), self._encoded_prompts(list(prompts))).float()
