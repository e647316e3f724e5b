"""The toy world's judge for folders of toy images made by any script, without regenerating anything.

    python evaluation/toy_judge.py FOLDER [FOLDER ...] [--text_path captions.csv] [--num_eval N]

A folder holds `<k>.png` (or copies `<k>_<j>.png`, 32×32) for caption row k of its own `subset.csv` (as `generate_date*.py --model toy` write
them) or of `--text_path` (which must agree with a folder's own record); a caption outside the toy world's grammar is
refused. For each folder: exact accuracy (`date.toy.check`) with a 95% bootstrap interval over its images, for one-
and two-object captions, per caption template (with intervals) and per part of the verdict, the mean toy-CLIP score and
toy FID against freshly rendered world images (the benchmark's reference set). Writes `<FOLDER>/toy_judge.json` and
prints one table, a column per folder.
"""
import json
import os
import sys
from typing import Dict, List, Sequence, Tuple

from PIL import Image

import date
from date.io import flags
from date.io.atomic import write_text
from date.io.devices import add_threads_flag, pick_device
from date.io.errors import UserInputError, exit_on_user_error
from date.io.outputs import check_writable
from date.toy import SIZE, TEMPLATES, check
from evaluation.image_folder import captioned_images, captions_from_zero, load_rgb
from evaluation.labels import folder_labels
from evaluation.toy.measures import (ASSETS, Judged, clip_scores, load_feature_net, reference_features,
                                     require_toy_captions, summarize)

JUDGE_FILE = "toy_judge.json"


def parse_args(argv: Sequence[str] | None):
    parser = flags.Parser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", metavar="FOLDER", help="folders of toy images <index>.png or <index>_<copy>.png")
    parser.add_argument("--text_path", default=None, help="caption CSV for every folder (default: each folder's own "
                        "subset.csv; when given, it must agree with them)")
    parser.add_argument("--num_eval", type=flags.positive_int, default=None,
                        help="judge the images of captions 0 .. num_eval-1 (default: from caption 0 up to the first one without images)")
    parser.add_argument("--reference_images", type=flags.positive_int, default=2000, help="rendered images for toy FID")
    parser.add_argument("--clip_model", default=os.path.join(ASSETS, "clip"), help="toy CLIP folder")
    parser.add_argument("--fid_net", default=os.path.join(ASSETS, "fid_net"), help="toy FID feature network folder")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    add_threads_flag(parser)
    return parser.parse_args(argv)


def open_folder(folder: str, num_eval: int | None, text_path: str | None) -> Tuple[List[Image.Image], List[str]]:
    """(images, captions) of a folder, every one checked before any model loads."""
    count = num_eval or captions_from_zero(folder)
    if count == 0:
        raise UserInputError(f"{folder}: no image of caption 0 (0.png or 0_0.png); nothing to judge")
    paths, captions = captioned_images(folder, count, text_path)
    if len(paths) < 2:
        raise UserInputError(f"{folder}: {len(paths)} image(s) from caption 0 on; the judge needs at least 2 (toy FID, "
                             "intervals)")
    require_toy_captions(captions, folder)
    images = [load_rgb(path) for path in paths]
    for path, image in zip(paths, images):
        if image.size != (SIZE, SIZE):
            raise UserInputError(f"{path} is {image.width}×{image.height}; the toy checker reads {SIZE}×{SIZE} images")
    check_writable(folder)
    return images, captions


def _cell(value: float | None, interval: Sequence[float | None] = (None, None)) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if interval[0] is None else f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def markdown(results: Sequence[Dict], labels: Sequence[str]) -> str:
    """A column per folder: images, exact accuracy (overall, one/two objects, per template), toy-CLIP, toy FID."""
    templates = [t for t in TEMPLATES if any(t in r["templates"] for r in results)]
    rows = [
        ("images", lambda r: str(r["n"])),
        ("exact accuracy ↑", lambda r: _cell(r["exact_accuracy"], r["ci95"])),
        ("single-object ↑", lambda r: _cell(r["single_object_accuracy"])),
        ("two-object ↑", lambda r: _cell(r["two_object_accuracy"])),
        *[(f"template `{t}` ↑", lambda r, t=t: _cell(r["templates"].get(t), r["templates_ci95"].get(t, (None, None))))
          for t in templates],
        ("toy-CLIP score ↑", lambda r: f"{r['clip_score']:.4f}"),
        ("toy FID ↓", lambda r: f"{r['toy_fid']:.3f}"),
    ]
    lines = ["| metric | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    return "\n".join(lines) + "\n"


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> Dict[str, Dict]:
    args = parse_args(argv)
    device = str(pick_device(args.device))
    opened = {folder: open_folder(folder, args.num_eval, args.text_path) for folder in args.dirs}
    scorer = date.CLIPScorer.from_pretrained(args.clip_model).to(device)
    feature_net = load_feature_net(args.fid_net)
    reference = reference_features(feature_net, args.reference_images)
    results = {}
    for folder, (images, captions) in opened.items():
        verdicts = [check(image, caption) for image, caption in zip(images, captions)]
        judged = Judged(verdicts, clip_scores(scorer, images, captions), images)
        settings = {"text_path": args.text_path, "num_eval": len(images), "reference_images": args.reference_images,
                    "clip_model": args.clip_model, "fid_net": args.fid_net, "device": device}
        results[folder] = {"folder": folder, "settings": settings,
                           **summarize(judged, captions, reference, feature_net)}
        write_text(os.path.join(folder, JUDGE_FILE), json.dumps(results[folder], indent=2) + "\n")
        print(f"Wrote {os.path.join(folder, JUDGE_FILE)}", file=sys.stderr)
    print(markdown(list(results.values()), folder_labels(list(results))), end="")
    return results


if __name__ == "__main__":
    main()
