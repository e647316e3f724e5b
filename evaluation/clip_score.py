"""CLIP score as in the DATE paper: cosine similarity of OpenCLIP ViT-g-14 (laion2b_s12b_b42k) embeddings of each
generated image and its caption (~0.32 for Stable Diffusion 1.5, not multiplied by 100).

    python evaluation/clip_score.py --img_path <generated_dir> [--text_path subset.csv] [--num_eval 5000]

Prints `Average CLIP score: <x>` and saves the per-image scores to `<img_path>/clip_scores.npz` (key `scores`).
"""
import os
import pickle
from typing import List, Sequence, Tuple

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from date.io import flags
from date.io.errors import UserInputError, exit_on_user_error
from evaluation.caption_metric import add_caption_metric_args, run_caption_metric

DEFAULT_MODEL = "ViT-g-14"
DEFAULT_PRETRAINED = "laion2b_s12b_b42k"
SCORE_FILE = "clip_scores.npz"
LABEL = "CLIP score"


def model_id(model: str, pretrained: str | None) -> str:
    """Identifies the scores' model in saved fingerprints."""
    return f"open_clip:{model}:{pretrained}"


def open_clip_source(model: str, pretrained: str | None) -> Tuple[str, str | None]:
    """(model name, pretrained) for open_clip's factory, checked without downloading anything.

    `model` is an OpenCLIP architecture name, an `hf-hub:`/`local-dir:` identifier, or a local directory holding
    `open_clip_config.json` and weights; `pretrained` is a tag of that architecture or a checkpoint file.
    """
    if os.path.isdir(model):
        return f"local-dir:{model}", None
    if model.startswith(("hf-hub:", "local-dir:")):
        return model, None
    if model not in open_clip.list_models():
        raise UserInputError(f"unknown OpenCLIP model {model!r} (not a built-in architecture nor a local directory)")
    known_tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained and pretrained not in known_tags and not os.path.isfile(pretrained):
        raise UserInputError(f"--pretrained {pretrained!r} is neither a pretrained tag of {model} nor a file")
    return model, pretrained


class OpenCLIPScore:
    """Cosine similarity between OpenCLIP embeddings of an image and of its caption."""

    def __init__(self, model: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED,
                 device: torch.device = torch.device("cpu")):
        name, pretrained = open_clip_source(model, pretrained)
        try:
            self.model, _, self.transform = open_clip.create_model_and_transforms(name, pretrained=pretrained,
                                                                                  device=device)
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as e:  # offline hub, corrupt checkpoint...
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserInputError(f"cannot load OpenCLIP {name} (pretrained: {pretrained}): {reason}") from None
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        self.device = device

    @torch.no_grad()
    def score_batch(self, images: List[torch.Tensor], captions: List[str]) -> np.ndarray:
        pixels = torch.stack(images).to(self.device)
        tokens = self.tokenizer(captions).to(self.device)
        # the official script runs under CUDA autocast (fp16); on the CPU everything stays fp32
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
            image_features = self.model.encode_image(pixels).float()
            text_features = self.model.encode_text(tokens).float()
        return (F.normalize(image_features, dim=-1) * F.normalize(text_features, dim=-1)).sum(-1).cpu().numpy()


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> np.ndarray:
    parser = flags.Parser(description="CLIP score (OpenCLIP cosine similarity) of generated images.")
    add_caption_metric_args(parser, default_bs=16)
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="OpenCLIP architecture, hf-hub:/local-dir: identifier, or local directory")
    parser.add_argument("--pretrained", default=DEFAULT_PRETRAINED, help="pretrained tag or local checkpoint file")
    args = parser.parse_args(argv)
    open_clip_source(args.model, args.pretrained)  # a typo fails before the images are checked
    return run_caption_metric(args, model_id(args.model, args.pretrained),
                              lambda device: OpenCLIPScore(args.model, args.pretrained, device), SCORE_FILE, LABEL)


if __name__ == "__main__":
    main()
