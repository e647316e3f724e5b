"""Per-image metrics of (generated image, caption) pairs, such as CLIP score and ImageReward: computed, saved and
summarized the same way, so each metric script only says how to load its model and score one batch."""
import argparse
import os
from typing import Any, Callable, List, Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from date.io import flags
from date.io.devices import pick_device
from date.run.loading import quiet_loading
from evaluation import cli
from evaluation.image_folder import captioned_images, image_batches
from evaluation.score_files import folder_fingerprint, load_scores, save_scores


class CaptionScorer(Protocol):
    """`transform` turns one decoded image into the model's input (it runs in DataLoader workers, so keep it a light
    callable, not a method of the model); `score_batch` scores transformed images against their captions."""

    transform: Callable[[Image.Image], Any]

    def score_batch(self, images: List[Any], captions: List[str]) -> np.ndarray | torch.Tensor:
        ...


def compute_scores(scorer: CaptionScorer, paths: Sequence[str], captions: Sequence[str], batch_size: int,
                   num_workers: int = 0, desc: str = "scoring") -> np.ndarray:
    """One float32 score per image, in order."""
    scores = np.empty(len(paths), dtype=np.float32)
    start = 0
    for batch in image_batches(paths, scorer.transform, batch_size, num_workers, desc=desc):
        batch_captions = list(captions[start:start + len(batch)])
        batch_scores = scorer.score_batch(batch, batch_captions)
        if isinstance(batch_scores, torch.Tensor):
            batch_scores = batch_scores.detach().float().cpu().numpy()
        scores[start:start + len(batch)] = np.asarray(batch_scores, dtype=np.float32).reshape(len(batch))
        start += len(batch)
    return scores


def score_captioned_folder(img_dir: str, paths: Sequence[str], captions: Sequence[str], model_id: str,
                           get_scorer: Callable[[], CaptionScorer], score_file: str, batch_size: int,
                           num_workers: int = 0, reuse: bool = False, desc: str = "scoring") -> np.ndarray:
    """Scores of `paths` (from `captioned_images`), saved to `<img_dir>/<score_file>` with their fingerprint.

    With `reuse`, scores saved earlier for the same images, captions and `model_id` are returned instead, and
    `get_scorer` (which may load a large model) is not called.
    """
    score_path = os.path.join(img_dir, score_file)
    fingerprint = folder_fingerprint(paths, captions, model_id)
    if reuse:
        saved = load_scores(score_path, len(paths), fingerprint)
        if saved is not None:
            return saved
    scores = compute_scores(get_scorer(), paths, captions, batch_size, num_workers, desc)
    save_scores(score_path, scores, fingerprint)
    return scores


def add_caption_metric_args(parser: argparse.ArgumentParser, default_bs: int) -> None:
    """The official scripts' flags: `--img_path --text_path --num_eval --bs`, plus `--device --num_workers`."""
    parser.add_argument("--img_path", required=True, help="folder of generated images <index>.png")
    parser.add_argument("--text_path", default=None,
                        help="caption CSV (column `caption`, row = image index); default: <img_path>/subset.csv, the "
                             "generator's record; when given, it must agree with that record")
    parser.add_argument("--num_eval", type=flags.positive_int, default=5000, help="score images 0 .. num_eval-1")
    cli.add_loader_args(parser, default_bs)


def run_caption_metric(args: argparse.Namespace, model_id: str, build_scorer: Callable[[torch.device], CaptionScorer],
                       score_file: str, label: str) -> np.ndarray:
    """A metric script's whole job: check the inputs, load the model, score, save, print `Average <label>: <x>`."""
    paths, captions = captioned_images(args.img_path, args.num_eval, args.text_path)
    device = pick_device(args.device)
    quiet_loading()
    scores = score_captioned_folder(args.img_path, paths, captions, model_id, lambda: build_scorer(device),
                                    score_file, args.bs, cli.num_workers(args), desc=label)
    print(f"Evaluated {len(scores)} images; per-image scores saved to {os.path.join(args.img_path, score_file)}")
    print(f"Average {label}: {scores.mean():.6f}")
    return scores
