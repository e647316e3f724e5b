"""h = the text loss of Universal Guidance's official CLIP-guided Stable Diffusion script, negated: 100·cos of OpenAI
CLIP RN50, so that `--method ug --h ugclip --optim_forward_guidance_wt 5` is the official guidance strength.

The official loss (`stable-diffusion-guided/scripts/clip_guided.py`, class `Clip`) takes the decoded image in [−1, 1]
to [0, 1] without clamping, resizes it to 224×224 with torchvision's bicubic resize of a tensor (no antialias in the
torchvision 0.12 of its environment), normalizes it with ImageNet's mean and std (not CLIP's) and returns
−`logits_per_image`, i.e. −logit_scale.exp()·cos = −100·cos for RN50. Here h is `logits_per_image` of each image with
its own prompt (the official script runs one image and one prompt at a time). The weights are open_clip's
`RN50-quickgelu` with the `openai` tag: OpenAI's text tower uses QuickGELU, which open_clip's plain `RN50` config
would replace by GELU.
"""
import functools
import os
import pickle
from typing import Sequence

import open_clip
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from date.io.errors import UserInputError
from date.scorers.base import Scorer

DEFAULT_WEIGHTS = "openai"
ARCHITECTURE = "RN50-quickgelu"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_FILES = (".safetensors", ".bin", ".pth")  # what open_clip looks for in a model folder


def ug_clip_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """The official loss's input: images in [0, 1] (not clamped, as the official code) bicubic to size×size without
    antialias, ImageNet-normalized."""
    images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=False)
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def ug_clip_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """A PIL image through the same tensor path: the official loss only ever sees decoded tensors."""
    return ug_clip_input(TF.to_tensor(image.convert("RGB"))[None], size)[0]


class UGCLIPScorer(Scorer):
    def __init__(self, model, tokenizer) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        size = model.visual.image_size
        self.input_size = size[0] if isinstance(size, (tuple, list)) else size
        self.preprocess = functools.partial(ug_clip_pixels, size=self.input_size)

    @classmethod
    def from_pretrained(cls, weights: str = DEFAULT_WEIGHTS, architecture: str = ARCHITECTURE,
                        torch_dtype: torch.dtype = torch.float32) -> "UGCLIPScorer":
        """`weights`: a pretrained tag of the open_clip `architecture` (`openai`: OpenAI's RN50), a checkpoint file of
        it, or an open_clip folder (`open_clip_config.json` and weights; its config names the architecture)."""
        path = os.path.expanduser(weights)
        if os.path.isdir(path):
            if not any(name.endswith(WEIGHT_FILES) for name in os.listdir(path)):
                raise UserInputError(f"{weights} holds no open_clip weights ({', '.join(WEIGHT_FILES)})")
            name, pretrained = f"local-dir:{path}", None
        else:
            name, pretrained = architecture, path if os.path.isfile(path) else weights
        try:
            model = open_clip.create_model(name, pretrained=pretrained)
        except (OSError, ValueError, RuntimeError, AssertionError, pickle.UnpicklingError) as e:
            # unknown name or tag, offline, unreadable file, or weights of another shape (open_clip asserts some)
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UserInputError(f"cannot load the UG CLIP loss's model {name} (weights: {weights}): "
                                 f"{reason}") from None
        return cls(model.to(torch_dtype), open_clip.get_tokenizer(name))

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        features = self.model.encode_text(self.tokenizer([prompt]).to(self.device))[0]
        return features / features.norm()

    def score_pixels(self, pixel_values: torch.Tensor, prompt_encodings: torch.Tensor) -> torch.Tensor:
        features = self.model.encode_image(pixel_values)
        cosine = (features / features.norm(dim=-1, keepdim=True) * prompt_encodings).sum(dim=-1)
        return self.model.logit_scale.exp() * cosine

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """As `Scorer.score`, on the official loss's input (`ug_clip_input`) instead of the bilinear resize and CLIP
        normalization of the other h."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(prompts)} prompts")
        pixel_values = ug_clip_input(images.to(device=self.device, dtype=self.dtype), self.input_size)
        return self.score_pixels(pixel_values, self._encoded_prompts(prompts)).float()
