"""h = the LAION improved aesthetic predictor (`sac+logos+ava1-l14-linearMSE.pth`), about 5–6 on real images.

An MLP 768→1024→128→64→16→1 (dropout between the first layers) on the L2-normalized CLIP ViT-L/14 image embedding,
as in the predictor's `simple_inference.py`. It ignores the prompt. The MLP is built from the checkpoint's shapes, so a
shrunken checkpoint of the same layout loads too.
"""
from typing import Dict

import torch
from transformers import CLIPModel

from date.io.errors import UserInputError
from date.io.loading import loading, model_path
from date.scorers.base import Scorer, pooled
from date.scorers.checkpoints import load_checkpoint
from date.scorers.preprocess import openai_clip_pixels

DEFAULT_PREDICTOR = "camenduru/improved-aesthetic-predictor"
CHECKPOINT_FILE = "sac+logos+ava1-l14-linearMSE.pth"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
LINEAR_LAYERS = (0, 2, 4, 6, 7)  # nn.Sequential indices of the Linear layers; 1, 3, 5 are dropouts
DROPOUTS = {1: 0.2, 3: 0.2, 5: 0.1}


def predictor_mlp(state_dict: Dict[str, torch.Tensor]) -> torch.nn.Sequential:
    expected = {f"layers.{i}.{p}" for i in LINEAR_LAYERS for p in ("weight", "bias")}
    if set(state_dict) != expected:
        raise UserInputError(f"not an aesthetic predictor checkpoint: keys {sorted(state_dict)[:4]}…, expected {sorted(expected)[:4]}…")
    layers = []
    for i in range(max(LINEAR_LAYERS) + 1):
        if i in DROPOUTS:
            layers.append(torch.nn.Dropout(DROPOUTS[i]))
        else:
            out_features, in_features = state_dict[f"layers.{i}.weight"].shape
            layers.append(torch.nn.Linear(in_features, out_features))
    mlp = torch.nn.Sequential(*layers)
    mlp.load_state_dict({k.removeprefix("layers."): v for k, v in state_dict.items()})
    return mlp


class AestheticScorer(Scorer):
    preprocess = staticmethod(openai_clip_pixels)  # the reference's: OpenAI `clip` package's transform

    def __init__(self, clip: CLIPModel, mlp: torch.nn.Sequential) -> None:
        super().__init__()
        self.clip = clip.eval().requires_grad_(False)
        self.mlp = mlp.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, predictor: str = DEFAULT_PREDICTOR, clip: str = DEFAULT_CLIP,
                        torch_dtype: torch.dtype = torch.float32) -> "AestheticScorer":
        """`predictor`: the .pth file, a folder holding it, or a hub repo; `clip`: CLIP ViT-L/14 (hub id or folder)."""
        _, state_dict = load_checkpoint(predictor, CHECKPOINT_FILE, "the LAION aesthetic predictor")
        mlp = predictor_mlp(state_dict)
        with loading("CLIP for the aesthetic predictor", clip):
            model = CLIPModel.from_pretrained(model_path(clip), dtype=torch_dtype)
        return cls(model, mlp.to(torch_dtype))

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        return torch.zeros(0, device=self.device)  # the aesthetic score ignores the prompt

    def score_pixels(self, pixel_values: torch.Tensor, prompt_encodings: torch.Tensor) -> torch.Tensor:
        features = pooled(self.clip.get_image_features(pixel_values=pixel_values))
        return self.mlp(features / features.norm(dim=-1, keepdim=True)).squeeze(-1)
