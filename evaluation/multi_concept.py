"""Attend-and-Excite's multi-concept metrics of a generated folder, per prompt category and overall.

    python evaluation/multi_concept.py FOLDER --text_path assets/prompts/attend_excite.csv

Full-prompt CLIP similarity, minimum object similarity and the text-text similarity of BLIP captions with the prompt
(`evaluation/concept_scores.py`; CLIP ViT-B/16 and BLIP base COCO by default, `--clip_model toy` for the bundled toy
CLIP, `--caption_model none` to skip the captions). Means come with 95% bootstrap intervals over prompts (the images of
one prompt are resampled together), per value of the caption file's `category` column and over all images. Writes
`FOLDER/multi_concept.json` (settings, the summaries, and every image's scores and BLIP caption) and the per-image
score files the report reads (`ae_*_scores.npz`).
"""
import csv
import json
import os
import sys
from typing import Dict, List, Sequence

import numpy as np

from date.io import flags
from date.io.atomic import write_text
from date.io.devices import pick_device
from date.io.errors import UserInputError, exit_on_user_error
from date.io.outputs import CAPTION_FILE
from date.run.loading import quiet_loading
from evaluation import cli
from evaluation.concept_scores import ConceptModels, check_prompts, score_folder
from evaluation.image_folder import captioned_images, caption_index, captions_from_zero
from evaluation.stats import DEFAULT_RESAMPLES, mean_with_ci

OUTPUT_FILE = "multi_concept.json"
ALL = "all"


def _parse_args(argv: Sequence[str] | None):
    parser = flags.Parser(description="Attend-and-Excite's multi-concept metrics of a folder of generated images.")
    parser.add_argument("folder", help="generated images <k>.png or <k>_<j>.png")
    parser.add_argument("--text_path", default=None,
                        help="caption CSV (columns caption and, for per-category results, category); default: the "
                             "folder's subset.csv; when both exist they must agree")
    parser.add_argument("--num_eval", type=flags.positive_int, default=None,
                        help="evaluate captions 0 .. num_eval-1 (default: every caption with images)")
    parser.add_argument("--clip_model", default=None,
                        help="CLIP hub id or local folder (default: openai/clip-vit-base-patch16); toy: the bundled "
                             "toy CLIP")
    parser.add_argument("--caption_model", default=None,
                        help="BLIP captioning hub id or local folder (default: Salesforce/blip-image-captioning-base); "
                             "none: skip the text-text metric")
    parser.add_argument("--resamples", type=flags.positive_int, default=DEFAULT_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    cli.add_loader_args(parser, default_bs=16)
    return parser.parse_args(argv)


def caption_categories(path: str, count: int) -> List[str] | None:
    """The `category` of captions 0..count-1, or None when the file has no such column (or is not UTF-8: only the
    captions' own reader takes other encodings, and categories are optional)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = [row for row in csv.DictReader(f) if any(row.values())]
    except (UnicodeDecodeError, csv.Error):
        return None
    if not rows or "category" not in rows[0]:
        return None
    return [(row["category"] or "").strip() for row in rows[:count]]


def summarize(scores: Dict[str, np.ndarray], prompt_of_image: Sequence[int], categories: Sequence[str] | None,
              resamples: int, seed: int) -> Dict[str, Dict[str, dict]]:
    """Per category (and `all`), per metric: mean, 95% interval over prompts, images `n` and `prompts`.

    Every prompt has the same number of images, so the mean of per-prompt means is the mean over images; bootstrapping
    the per-prompt means keeps the images of one prompt together."""
    prompt_of_image = np.asarray(prompt_of_image)
    groups = {ALL: sorted(set(prompt_of_image.tolist()))}
    for prompt in groups[ALL]:
        if categories is not None and categories[prompt]:
            groups.setdefault(categories[prompt], []).append(prompt)
    summary = {}
    for name, prompts in groups.items():
        summary[name] = {}
        for key, values in scores.items():
            per_prompt = np.array([values[prompt_of_image == p].mean() for p in prompts])
            stats = mean_with_ci(per_prompt, resamples, seed)
            low, high = (None, None) if np.isnan(stats.low) else (stats.low, stats.high)  # one prompt: no interval
            summary[name][key] = {"mean": stats.mean, "low": low, "high": high,
                                  "n": int(np.isin(prompt_of_image, prompts).sum()), "prompts": len(prompts)}
    return summary


def _image_records(paths: Sequence[str], captions: Sequence[str], categories: Sequence[str] | None,
                   scores: Dict[str, np.ndarray], written: List[str] | None) -> List[dict]:
    records = []
    for i, (path, caption) in enumerate(zip(paths, captions)):
        name = os.path.basename(path)
        k, copy = caption_index(path), os.path.splitext(name)[0].partition("_")[2]  # <k>.png or <k>_<copy>.png
        record = {"image": name, "caption_index": k, "copy": int(copy) if copy else None, "caption": caption,
                  "category": None if categories is None else categories[k]}
        record.update({key: float(values[i]) for key, values in scores.items()})
        if written is not None:
            record["blip_caption"] = written[i]
        records.append(record)
    return records


def _print_summary(summary: Dict[str, Dict[str, dict]]) -> None:
    for name, metrics in summary.items():
        cells = [f"{key} {m['mean']:.4f} "
                 + ("(no interval)" if m["low"] is None else f"[{m['low']:.4f}, {m['high']:.4f}]")
                 for key, m in metrics.items()]
        print(f"{name} (n={next(iter(metrics.values()))['n']}): " + "; ".join(cells))


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> dict:
    args = _parse_args(argv)
    num_eval = args.num_eval or captions_from_zero(args.folder)
    if num_eval == 0:
        raise UserInputError(f"{args.folder} holds no image of caption 0 (<0>.png or <0>_<j>.png)")
    paths, captions = captioned_images(args.folder, num_eval, args.text_path)
    check_prompts(captions)
    caption_file = args.text_path or os.path.join(args.folder, CAPTION_FILE)
    categories = caption_categories(caption_file, num_eval)
    quiet_loading()
    models = ConceptModels(args.clip_model, args.caption_model, pick_device(args.device))
    scores, written = {}, None
    for metric in models.metrics():
        scores[metric.key], scorer = score_folder(models, metric, args.folder, paths, captions, args.bs,
                                                  cli.num_workers(args), reuse=False, desc=metric.key)
        if metric.needs_captioner:
            written = scorer.written
    prompt_of_image = [caption_index(path) for path in paths]
    summary = summarize(scores, prompt_of_image, categories, args.resamples, args.seed)
    result = {"settings": {"clip_model": models.clip_source, "caption_model": models.caption_source,
                           "caption_file": caption_file, "num_eval": num_eval, "resamples": args.resamples,
                           "seed": args.seed, "ci_level": 0.95},
              "summary": summary, "images": _image_records(paths, captions, categories, scores, written)}
    out = os.path.join(args.folder, OUTPUT_FILE)
    write_text(out, json.dumps(result, indent=1) + "\n")
    _print_summary(summary)
    print(f"Wrote {out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
