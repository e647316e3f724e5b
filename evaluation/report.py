"""The paper's Table 1 for any set of generated folders, with the uncertainty the paper leaves out.

    python evaluation/report.py <baseline_dir> <date_dir> ... --reference coco.npz --baseline <baseline_dir>

For each folder: zero-shot FID against the reference, and the mean CLIP score and ImageReward over images
0..num_eval-1 with 95% bootstrap intervals. With --baseline, every other folder is also compared with the baseline
prompt by prompt: mean difference with a paired bootstrap interval, win rate, Wilcoxon signed-rank p-value.
Per-image scores (`clip_scores.npz`, `image_reward_scores.npz`) and Inception features (`fid_features.npz`) are saved
in each folder and reused while the images, captions and models are unchanged, so a second run only re-prints.
The table is printed as Markdown and written to --out (.md) with .csv and .json beside it, and drawn in .png (one
panel per metric, bars with intervals, paired Δ); `--grid K` adds a contact sheet .grid.png (captions × folders).
Bars and contact-sheet columns are labelled by what differs between the folders (`evaluation/labels.py`), or
`--labels`. `--metrics toy` adds the toy world's exact accuracy (`date.toy.check`, 0/1 per image); `--metrics
full_prompt min_object text_text` add Attend-and-Excite's multi-concept metrics (`evaluation/multi_concept.py`), each
paired image by image (caption and seed) like the others.
"""
import argparse

import os
import sys
from typing import List, Sequence

from date.io import flags
from date.io.devices import pick_device
from date.io.errors import UserInputError, exit_on_user_error
from date.io.outputs import save_image
from date.io.sheets import contact_sheet
from date.run.loading import quiet_loading
from evaluation import cli, clip_score, concept_clip, concept_scores
from evaluation.fid import Reference
from evaluation.image_folder import load_rgb
from evaluation.inception import RANDOM_WEIGHTS, InceptionFeatures
from evaluation.labels import folder_labels
from evaluation.plots import FID_PANEL, bar_panels, report_panels, save_figure
from evaluation.scoring import Scorers, check_same_prompts, folder_fid, open_folders
from evaluation.stats import DEFAULT_RESAMPLES
from evaluation.table import (AE_METRICS, CLIP, H_METRICS, IMAGE_REWARD, PER_IMAGE_METRICS, TOY_EXACT, Folder,
                              markdown, table_rows, write_outputs)
from evaluation.toy.measures import require_toy_captions

METRICS = ("fid", "clip", "ir", "pick", "aesthetic", "hps", "toy", *AE_METRICS)
DEFAULT_METRICS = ("fid", "clip", "ir")  # the paper's Table 1


def _parse_args(argv: Sequence[str] | None):
    parser = flags.Parser(description="FID, CLIP score and ImageReward of generated folders as a Table 1.")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="generated folders (<index>.png and subset.csv)")
    parser.add_argument("--reference", help="FID reference: pytorch-fid statistics (.npz, e.g. the paper's coco.npz) "
                                            "or a folder of reference images")
    parser.add_argument("--baseline", help="folder to compare every other folder with, prompt by prompt")
    parser.add_argument("--num_eval", type=flags.positive_int, default=5000, help="evaluate images 0 .. num_eval-1")
    parser.add_argument("--text_path", default=None,
                        help="caption CSV for every folder (default: each folder's own subset.csv; when given, it must agree with them)")
    parser.add_argument("--metrics", nargs="+", choices=METRICS, default=list(DEFAULT_METRICS),
                        help="metrics to compute (default: fid clip ir, the paper's; also pick aesthetic hps; toy: "
                             "the toy world's exact accuracy; full_prompt min_object text_text: Attend-and-Excite's "
                             "multi-concept metrics)")
    parser.add_argument("--h_model", action="append", default=[], metavar="NAME=PATH_OR_ID",
                        help="model of pick/aesthetic/hps, as in generate_date.py (pickscore, pickscore_processor, "
                             "aesthetic, aesthetic_clip, hps)")
    parser.add_argument("--clip_model", default=clip_score.DEFAULT_MODEL,
                        help="OpenCLIP architecture or local directory")
    parser.add_argument("--clip_pretrained", default=clip_score.DEFAULT_PRETRAINED,
                        help="OpenCLIP pretrained tag or checkpoint file")
    parser.add_argument("--ir_model", default=None,
                        help="ImageReward hub repo or local directory (default: evaluation/image_reward.py's)")
    parser.add_argument("--ir_tokenizer", default=None, help="its BERT tokenizer (default: image_reward.py's)")
    parser.add_argument("--ae_clip_model", default=None,
                        help=f"CLIP of full_prompt/min_object/text_text (default: {concept_clip.DEFAULT_MODEL}; toy: "
                             "the bundled toy CLIP)")
    parser.add_argument("--caption_model", default=None,
                        help="BLIP captioner of text_text (default: Salesforce/blip-image-captioning-base)")
    parser.add_argument("--inception_weights", default=None,
                        help=f"local pt_inception-2015-12-05-6726825d.pth; '{RANDOM_WEIGHTS}' for smoke tests only")
    parser.add_argument("--resamples", type=flags.positive_int, default=DEFAULT_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--out", default="report.md", help="Markdown output; .csv, .json and .png (the plot) are "
                        "written beside it; its folder is created")
    parser.add_argument("--grid", type=flags.positive_int, default=None, metavar="K",
                        help="also write <out>.grid.png: captions 0..K-1 as rows, one column per folder")
    parser.add_argument("--grid_indices", type=flags.index_list, default=None, metavar="I,J,...",
                        help="the contact sheet's caption indices instead of the first K, e.g. 3,17,42")
    parser.add_argument("--labels", type=_labels, default=None, metavar="A,B,...",
                        help="names of the folders on plot bars and contact-sheet columns, in the table's order (the "
                             "--baseline folder first; default: what differs between the folder names)")
    cli.add_loader_args(parser, default_bs=16)
    args = parser.parse_args(argv)
    if "fid" in args.metrics and args.reference is None:
        parser.error("--reference is required for FID (or leave fid out of --metrics)")
    if "text_text" in args.metrics and args.caption_model == concept_scores.NONE:
        parser.error("--metrics text_text needs a captioner; leave it out, or give --caption_model")
    if not args.out.endswith(".md"):
        parser.error(f"--out must end with .md: {args.out}")
    parent = os.path.dirname(os.path.abspath(args.out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        parser.error(f"--out {args.out}: {parent} is not a writable folder")
    return args


def _labels(text: str) -> List[str]:
    labels = [label.strip() for label in text.split(",")]
    if not all(labels) or len(set(labels)) != len(labels):
        raise argparse.ArgumentTypeError(f"must be distinct non-empty names joined by ',', got {text!r}")
    return labels


def labels_for(folders: Sequence[Folder], labels: Sequence[str] | None) -> List[str]:
    """`--labels`, one per folder, or labels made from what differs between the folder names."""
    if labels is None:
        return folder_labels([folder.path for folder in folders])
    if len(labels) != len(folders):
        raise UserInputError(f"--labels gives {len(labels)} names for {len(folders)} folders (one per folder, the "
                             "--baseline folder first)")
    return list(labels)


def grid_indices(args, num_eval: int) -> List[int]:
    """The contact sheet's rows: `--grid_indices`, or the first `--grid` K; every one an evaluated image."""
    indices = args.grid_indices if args.grid_indices is not None else list(range(args.grid or 0))
    beyond = [i for i in indices if i >= num_eval]
    if beyond:
        raise UserInputError(f"contact sheet index {beyond[0]} is beyond the evaluated images 0..{num_eval - 1}")
    return indices


def write_grid(folders: Sequence[Folder], labels: Sequence[str], indices: Sequence[int], path: str) -> None:
    """Rows: captions `indices`; columns: the folders (same captions, checked), their labels on top."""
    rows = [[load_rgb(folder.paths[i]) for folder in folders] for i in indices]
    captions = [f"{i}: {folders[0].captions[i]}" for i in indices]
    sheet = contact_sheet(rows, captions, labels, cell=192)
    save_image(sheet, path)


def _with_baseline_first(dirs: Sequence[str], baseline: str | None) -> List[str]:
    if baseline is None:
        return list(dirs)
    others = [d for d in dirs if os.path.realpath(d) != os.path.realpath(baseline)]
    return [baseline] + others


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> List[dict]:
    args = _parse_args(argv)
    quiet_loading()
    device, workers = pick_device(args.device), cli.num_workers(args)
    # every input is checked before the first model is loaded
    grid = grid_indices(args, args.num_eval)
    need_captions = bool(set(METRICS[1:]) & set(args.metrics)) or bool(grid)
    folders = open_folders(_with_baseline_first(args.dirs, args.baseline), args.num_eval, args.text_path,
                            need_captions)
    baseline = folders[0] if args.baseline is not None else None
    if baseline is not None or grid:
        check_same_prompts(folders, baseline or folders[0])
    labels = labels_for(folders, args.labels)
    if "toy" in args.metrics:
        for folder in folders:
            require_toy_captions(folder.captions, folder.path)
    if "clip" in args.metrics:
        clip_score.open_clip_source(args.clip_model, args.clip_pretrained)
    ae_metrics = [m for m in args.metrics if m in AE_METRICS]
    if ae_metrics:
        for folder in folders:
            concept_scores.check_prompts(folder.captions)
    reference = Reference(args.reference) if "fid" in args.metrics else None
    features = InceptionFeatures(args.inception_weights, device, args.bs, workers)
    scorers = Scorers(args, device, workers)

    for folder in folders:
        if "clip" in args.metrics:
            folder.scores[CLIP.key] = scorers.clip(folder)
        if "ir" in args.metrics:
            folder.scores[IMAGE_REWARD.key] = scorers.image_reward(folder)
        for metric in (m for m in args.metrics if m in H_METRICS):
            folder.scores[H_METRICS[metric][0].key] = scorers.h(metric, folder)
        if "toy" in args.metrics:
            folder.scores[TOY_EXACT.key] = scorers.toy_exact(folder)
        for metric in ae_metrics:
            folder.scores[AE_METRICS[metric].key] = scorers.attend_excite(metric, folder)
        if reference is not None:
            folder.fid = folder_fid(folder, reference, features)

    rows = table_rows(folders, baseline, args.resamples, args.seed)
    table = markdown(rows)
    print(table, end="")
    written = write_outputs(args.out, table, rows, {**vars(args), "ci_level": 0.95})
    stem = os.path.splitext(args.out)[0]
    panels = report_panels(rows, [(m.key, m.header) for m in PER_IMAGE_METRICS], labels)
    if panels:
        save_figure(bar_panels(panels, "95% intervals over prompts; Δ: paired against the baseline", [FID_PANEL]),
                    f"{stem}.png")
        written.append(f"{stem}.png")
    if grid:
        write_grid(folders, labels, grid, f"{stem}.grid.png")
        written.append(f"{stem}.grid.png")
    print(f"Wrote {', '.join(written)}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
