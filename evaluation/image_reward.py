"""ImageReward of generated images, as in the DATE paper (official checkpoint THUDM/ImageReward, fp32).

    python evaluation/image_reward.py --img_path <generated_dir> [--text_path subset.csv] [--num_eval 5000] [--bs 4]

Prints `Average ImageReward: <x>` and saves the per-image rewards to `<img_path>/image_reward_scores.npz` (key
`scores`). Images are preprocessed like the reference's evaluation (shorter side to 224 bicubic, center crop, CLIP
normalization), after being decoded as RGB.
"""
from typing import List, Sequence

import numpy as np
import torch

from date.io.errors import exit_on_user_error
from date.scorers.image_reward import DEFAULT_MODEL, DEFAULT_TOKENIZER, ImageRewardScorer, pil_to_pixels
from date.io.loading import model_path
from date.io import flags
from evaluation.caption_metric import add_caption_metric_args, run_caption_metric

SCORE_FILE = "image_reward_scores.npz"
LABEL = "ImageReward"


def model_id(model: str, tokenizer: str) -> str:
    """Identifies the rewards' model in saved fingerprints."""
    return f"image_reward:{model}:{tokenizer}"


class ImageRewardMetric:
    """The reward model as caption_metric wants it: loader workers run `transform`, the model scores batches."""

    transform = staticmethod(pil_to_pixels)

    def __init__(self, scorer: ImageRewardScorer):
        self.scorer = scorer

    @torch.no_grad()
    def score_batch(self, images: List[torch.Tensor], captions: List[str]) -> torch.Tensor:
        return self.scorer.score_normalized(torch.stack(images), captions)


def load_scorer(model: str = DEFAULT_MODEL, device: torch.device | str = "cpu",
                tokenizer: str = DEFAULT_TOKENIZER) -> ImageRewardMetric:
    return ImageRewardMetric(ImageRewardScorer.from_pretrained(model, tokenizer).to(device))


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> np.ndarray:
    parser = flags.Parser(description="ImageReward of generated images.")
    add_caption_metric_args(parser, default_bs=4)
    parser.add_argument("--ir_model", default=DEFAULT_MODEL,
                        help="hub repo or local directory holding ImageReward.pt and med_config.json")
    parser.add_argument("--ir_tokenizer", default=DEFAULT_TOKENIZER,
                        help="bert-base-uncased tokenizer: hub id or local directory")
    args = parser.parse_args(argv)
    for name in (args.ir_model, args.ir_tokenizer):
        model_path(name)  # a typo fails before the images are checked
    return run_caption_metric(args, model_id(args.ir_model, args.ir_tokenizer),
                              lambda device: load_scorer(args.ir_model, device, args.ir_tokenizer), SCORE_FILE, LABEL)


if __name__ == "__main__":
    main()
