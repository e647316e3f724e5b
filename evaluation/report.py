"""The paper's Table 1 for any set of generated folders, with the uncertainty the paper leaves out.

    python evaluation/report.py <baseline_dir> <date_dir> ... --reference coco.npz --baseline <baseline_dir>

For each folder: zero-shot FID against the reference, and the mean CLIP score and ImageReward over images
0..num_eval-1 with 95% bootstrap intervals. With --baseline, every other folder is also compared with the baseline
prompt by prompt: mean difference with a paired bootstrap interval, win rate, Wilcoxon signed-rank p-value.
Per-image scores (`clip_scores.npz`, `image_reward_scores.npz`) and Inception features (`fid_features.npz`) are saved
in each folder and reused while the images, captions and models are unchanged, so a second run only re-prints.
The table is printed as Markdown and written to --out (.md) with .csv and .json beside it, and drawn in .png (one
panel per metric, bars with intervals, paired Δ); `--grid K` adds a contact sheet .grid.png (captions × folders).
"""
import os
import sys

if not __package__:  # run as `python evaluation/<script>.py`: import from the repository root, not from evaluation/
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import csv
import functools
import importlib
import io
import json
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np

from date import flags
from date.errors import UserInputError, exit_on_user_error
from date.outputs import save_image, write_text
from date.sheets import contact_sheet
from evaluation import cli, clip_score
from evaluation.caption_metric import score_captioned_folder
from evaluation.fid import Reference, feature_statistics, frechet_distance
from evaluation.image_folder import captioned_images, generated_image_paths, load_rgb
from evaluation.plots import FID_PANEL, bar_panels, report_panels, save_figure
from evaluation.inception import RANDOM_WEIGHTS, InceptionFeatures
from evaluation.score_files import folder_fingerprint, load_scores, load_valid, save_npz
from evaluation.stats import DEFAULT_RESAMPLES, mean_with_ci, paired_comparison

FEATURES_FILE = "fid_features.npz"
REFERENCE_FEATURES_FILE = "fid_reference_features.npz"  # all images of a reference folder, in name order
METRICS = ("fid", "clip", "ir", "pick", "aesthetic", "hps")
DEFAULT_METRICS = ("fid", "clip", "ir")  # the paper's Table 1


@dataclass(frozen=True)
class PerImageMetric:
    key: str  # column prefix in the CSV/JSON
    header: str  # Markdown column
    score_file: str
    digits: int


CLIP = PerImageMetric("clip_score", "CLIP score↑", clip_score.SCORE_FILE, 4)
IMAGE_REWARD = PerImageMetric("image_reward", "ImageReward↑", "image_reward_scores.npz", 4)
# --metrics name -> (column, h name of date.scorers); scored by evaluation/h_metric.py, only when asked for
H_METRICS = {
    "pick": (PerImageMetric("pick_score", "PickScore↑", "pickscore_scores.npz", 3), "pickscore"),
    "aesthetic": (PerImageMetric("aesthetic", "Aesthetic↑", "aesthetic_scores.npz", 3), "aesthetic"),
    "hps": (PerImageMetric("hps", "HPS v2.1↑", "hps_scores.npz", 4), "hps"),
}


@dataclass
class Folder:
    """A generated folder: the files and captions to evaluate, then its per-image scores and FID."""
    path: str
    name: str
    paths: List[str]
    captions: List[str] | None
    fid: float | None = None
    scores: Dict[str, np.ndarray | None] = field(default_factory=dict)


def _warn(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def cached_features(features: InceptionFeatures, cache: str, paths: Sequence[str], desc: str) -> np.ndarray:
    """Inception features of `paths`, saved in the `cache` file and reused while images and weights match."""
    fingerprint = folder_fingerprint(paths, None, f"inception:{features.weights_id}")
    saved = load_valid(cache, "features", fingerprint)
    if saved is not None:
        return saved
    computed = features(paths, desc)
    try:
        save_npz(cache, {"features": computed, "fingerprint": np.array(fingerprint)})
    except OSError as e:  # e.g. a read-only reference folder: the result is still right, only slower next time
        _warn(f"could not cache features in {cache}: {e}")
    return computed


def folder_fid(folder: Folder, reference: Reference, features: InceptionFeatures) -> float:
    """FID of a folder's images against the reference, both through the feature caches."""
    own = cached_features(features, os.path.join(folder.path, FEATURES_FILE), folder.paths, f"FID {folder.name}")
    reference_cache = os.path.join(reference.path, REFERENCE_FEATURES_FILE)
    reference_stats = reference.statistics(functools.partial(cached_features, features, reference_cache))
    return frechet_distance(*feature_statistics(own), *reference_stats)


_IMAGE_REWARD_API = ("DEFAULT_MODEL", "DEFAULT_TOKENIZER", "model_id", "load_scorer")


def image_reward_backend():
    """`evaluation.image_reward` when it is installed and usable, else None (the column then shows saved scores or
    n/a). Kept behind this one function: the ImageReward script ships separately."""
    try:
        module = importlib.import_module("evaluation.image_reward")
    except ImportError as e:
        _warn(f"ImageReward cannot be computed here ({e}); only saved image_reward_scores.npz files are used")
        return None
    if not all(hasattr(module, name) for name in _IMAGE_REWARD_API):
        _warn(f"evaluation.image_reward lacks one of {', '.join(_IMAGE_REWARD_API)}; only saved scores are used")
        return None
    return module


def _display_names(dirs: Sequence[str]) -> List[str]:
    """Folder names as methods; full paths where two folders share a name."""
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    return [name if names.count(name) == 1 else d for name, d in zip(names, dirs)]


def _open_folders(dirs: Sequence[str], num_eval: int, text_path: str | None, need_captions: bool) -> List[Folder]:
    folders = []
    for path, name in zip(dirs, _display_names(dirs)):
        if need_captions:
            paths, captions = captioned_images(path, num_eval, text_path)
        else:
            paths, captions = generated_image_paths(path, num_eval), None
        folders.append(Folder(path, name, paths, captions))
    return folders


def _check_same_prompts(folders: Sequence[Folder], baseline: Folder) -> None:
    for folder in folders:
        if folder.captions is not None and folder.captions != baseline.captions:
            first = next(i for i, (a, b) in enumerate(zip(folder.captions, baseline.captions)) if a != b)
            raise UserInputError(f"{folder.path} and {baseline.path} used different captions (first at index {first}); "
                                 "paired statistics and contact sheets need the same prompts")


class _DefaultModelUnavailable(Exception):
    """The default ImageReward model could not be loaded: the report goes on with saved scores or n/a."""


class Scorers:
    """Per-image scores of a folder for each metric, loading each model at most once and only when some folder has
    no valid saved scores."""

    def __init__(self, args, device, workers: int):
        self.args, self.device, self.workers = args, device, workers
        self.ir_backend = image_reward_backend() if "ir" in args.metrics else None
        self.h_sources = {}
        if set(H_METRICS) & set(args.metrics):
            from evaluation import h_metric

            self.h_sources = {H_METRICS[m][1]: h_metric.sources_for(H_METRICS[m][1], args.h_model)
                              for m in args.metrics if m in H_METRICS}

    @functools.cached_property
    def _clip(self) -> clip_score.OpenCLIPScore:
        return clip_score.OpenCLIPScore(self.args.clip_model, self.args.clip_pretrained, self.device)

    @functools.cached_property
    def _image_reward(self):
        model, tokenizer = self._ir_source
        try:
            return self.ir_backend.load_scorer(model, self.device, tokenizer)
        except UserInputError as e:
            if self.args.ir_model is not None:  # asked for by name: a mistake to report
                raise
            raise _DefaultModelUnavailable(str(e)) from None

    @property
    def _ir_source(self) -> Tuple[str, str]:
        """(model, tokenizer) of the ImageReward network."""
        return (self.args.ir_model or self.ir_backend.DEFAULT_MODEL,
                self.args.ir_tokenizer or self.ir_backend.DEFAULT_TOKENIZER)

    def clip(self, folder: Folder) -> np.ndarray:
        model_id = clip_score.model_id(self.args.clip_model, self.args.clip_pretrained)
        return score_captioned_folder(folder.path, folder.paths, folder.captions, model_id, lambda: self._clip,
                                      CLIP.score_file, self.args.bs, self.workers, reuse=True,
                                      desc=f"CLIP score {folder.name}")

    @functools.cache
    def _h_metric(self, name: str):
        from evaluation import h_metric

        return h_metric.build(name, self.h_sources[name], self.device)

    def h(self, metric: str, folder: Folder) -> np.ndarray:
        """PickScore, aesthetic score or HPS v2.1 (evaluation/h_metric.py), saved scores reused."""
        from evaluation import h_metric

        column, name = H_METRICS[metric]
        return score_captioned_folder(folder.path, folder.paths, folder.captions,
                                      h_metric.fingerprint(name, self.h_sources[name]), lambda: self._h_metric(name),
                                      column.score_file, self.args.bs, self.workers, reuse=True,
                                      desc=f"{column.header.rstrip('↑')} {folder.name}")

    def image_reward(self, folder: Folder) -> np.ndarray | None:
        """Saved or computed rewards; with the default model unavailable (e.g. offline), saved ones or None."""
        if self.ir_backend is not None:
            try:
                return score_captioned_folder(folder.path, folder.paths, folder.captions,
                                              self.ir_backend.model_id(*self._ir_source), lambda: self._image_reward,
                                              IMAGE_REWARD.score_file, self.args.bs, self.workers, reuse=True,
                                              desc=f"ImageReward {folder.name}")
            except _DefaultModelUnavailable as e:
                _warn(f"ImageReward not computed ({e}); pass --ir_model with a local copy, or --metrics fid clip")
                self.ir_backend = None
        return load_scores(os.path.join(folder.path, IMAGE_REWARD.score_file), len(folder.paths))


def _metric_columns(metric: PerImageMetric, scores: np.ndarray | None, resamples: int, seed: int) -> dict:
    if scores is None:
        return {metric.key: None, f"{metric.key}_low": None, f"{metric.key}_high": None}
    summary = mean_with_ci(scores, resamples, seed)
    return {metric.key: summary.mean, f"{metric.key}_low": summary.low, f"{metric.key}_high": summary.high}


def _paired_columns(metric: PerImageMetric, scores: np.ndarray | None, baseline: np.ndarray | None, resamples: int,
                    seed: int) -> dict:
    if scores is None or baseline is None:
        return {}
    comparison = paired_comparison(scores, baseline, resamples, seed)
    return {f"{metric.key}_diff": comparison.mean_diff, f"{metric.key}_diff_low": comparison.low,
            f"{metric.key}_diff_high": comparison.high, f"{metric.key}_win_rate": comparison.win_rate,
            f"{metric.key}_wilcoxon_p": comparison.wilcoxon_p}


def per_image_metrics(folders: Sequence[Folder]) -> List[PerImageMetric]:
    """CLIP score and ImageReward always (n/a when absent), then each further metric that was computed."""
    extra = [column for column, _ in H_METRICS.values() if any(column.key in f.scores for f in folders)]
    return [CLIP, IMAGE_REWARD, *extra]


def table_rows(folders: Sequence[Folder], baseline: Folder | None, resamples: int = DEFAULT_RESAMPLES,
               seed: int = 0) -> List[dict]:
    """One flat dict per folder: the CSV/JSON rows, from which the Markdown tables are also drawn."""
    rows = []
    for folder in folders:
        row = {"method": folder.name, "path": folder.path, "n": len(folder.paths), "fid": folder.fid,
               "is_baseline": folder is baseline}
        for metric in per_image_metrics(folders):
            scores = folder.scores.get(metric.key)
            row.update(_metric_columns(metric, scores, resamples, seed))
            if baseline is not None and folder is not baseline:
                row.update(_paired_columns(metric, scores, baseline.scores.get(metric.key), resamples, seed))
        rows.append(row)
    return rows


def _mean_ci(row: dict, key: str, digits: int) -> str:
    if row.get(key) is None:
        return "n/a"
    return f"{row[key]:.{digits}f} [{row[f'{key}_low']:.{digits}f}, {row[f'{key}_high']:.{digits}f}]"


def _p_value(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def markdown(rows: Sequence[dict]) -> str:
    """Table 1 (method, N, FID, CLIP score, ImageReward), then the paired comparisons if there is a baseline."""
    metrics = [m for m in (CLIP, IMAGE_REWARD, *(c for c, _ in H_METRICS.values())) if any(m.key in r for r in rows)]
    lines = ["| Method | N | FID↓ | " + " | ".join(m.header for m in metrics) + " |", "|---|---:|---:|" + "---:|" * len(metrics)]
    for row in rows:
        fid = "n/a" if row["fid"] is None else f"{row['fid']:.2f}"
        name = f"{row['method']} (baseline)" if row["is_baseline"] else row["method"]
        lines.append(f"| {name} | {row['n']} | {fid} | " + " | ".join(_mean_ci(row, m.key, m.digits) for m in metrics) + " |")
    lines.append("")
    lines.append("Means with 95% bootstrap intervals over prompts; FID is a set-level number (no interval).")
    paired = [(row, metric) for row in rows for metric in metrics if f"{metric.key}_diff" in row]
    if paired:
        baseline = next(row["method"] for row in rows if row["is_baseline"])
        lines += ["", f"Paired against {baseline} (same prompts):", "",
                  "| Method | Metric | Δ mean [95% CI] | Win rate | Wilcoxon p |", "|---|---|---:|---:|---:|"]
        for row, metric in paired:
            key = metric.key
            lines.append(f"| {row['method']} | {metric.header.rstrip('↑')} | {row[f'{key}_diff']:+.{metric.digits}f} "
                         f"[{row[f'{key}_diff_low']:+.{metric.digits}f}, {row[f'{key}_diff_high']:+.{metric.digits}f}] "
                         f"| {row[f'{key}_win_rate']:.3f} | {_p_value(row[f'{key}_wilcoxon_p'])} |")
    return "\n".join(lines) + "\n"


def _csv_text(rows: Sequence[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows({key: ("" if row.get(key) is None else row[key]) for key in columns} for row in rows)
    return buffer.getvalue()


def write_outputs(out_md: str, table: str, rows: Sequence[dict], settings: dict) -> List[str]:
    """The Markdown table at `out_md`, its rows as .csv and .json beside it; each file replaced atomically."""
    stem = os.path.splitext(out_md)[0]
    os.makedirs(os.path.dirname(os.path.abspath(out_md)), exist_ok=True)
    outputs = {out_md: table, f"{stem}.csv": _csv_text(rows),
               f"{stem}.json": json.dumps({"settings": settings, "rows": list(rows)}, indent=2) + "\n"}
    for path, text in outputs.items():
        write_text(path, text)
    return list(outputs)


def _parse_args(argv: Sequence[str] | None):
    parser = flags.Parser(description="FID, CLIP score and ImageReward of generated folders as a Table 1.")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="generated folders (<index>.png and subset.csv)")
    parser.add_argument("--reference", help="FID reference: pytorch-fid statistics (.npz, e.g. the paper's coco.npz) "
                                            "or a folder of reference images")
    parser.add_argument("--baseline", help="folder to compare every other folder with, prompt by prompt")
    parser.add_argument("--num_eval", type=flags.positive_int, default=5000, help="evaluate images 0 .. num_eval-1")
    parser.add_argument("--text_path", default=None,
                        help="caption CSV for every folder (default: each folder's own subset.csv, else ./subset.csv)")
    parser.add_argument("--metrics", nargs="+", choices=METRICS, default=list(DEFAULT_METRICS),
                        help="metrics to compute (default: fid clip ir, the paper's; also pick aesthetic hps)")
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
    cli.add_loader_args(parser, default_bs=16)
    args = parser.parse_args(argv)
    if "fid" in args.metrics and args.reference is None:
        parser.error("--reference is required for FID (or leave fid out of --metrics)")
    if not args.out.endswith(".md"):
        parser.error(f"--out must end with .md: {args.out}")
    parent = os.path.dirname(os.path.abspath(args.out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        parser.error(f"--out {args.out}: {parent} is not a writable folder")
    return args


def grid_indices(args, num_eval: int) -> List[int]:
    """The contact sheet's rows: `--grid_indices`, or the first `--grid` K; every one an evaluated image."""
    indices = args.grid_indices if args.grid_indices is not None else list(range(args.grid or 0))
    beyond = [i for i in indices if i >= num_eval]
    if beyond:
        raise UserInputError(f"contact sheet index {beyond[0]} is beyond the evaluated images 0..{num_eval - 1}")
    return indices


def write_grid(folders: Sequence[Folder], indices: Sequence[int], path: str) -> None:
    """Rows: captions `indices`; columns: the folders (same captions, checked), names on top."""
    rows = [[load_rgb(folder.paths[i]) for folder in folders] for i in indices]
    captions = [f"{i}: {folders[0].captions[i]}" for i in indices]
    sheet = contact_sheet(rows, captions, [folder.name for folder in folders], cell=192)
    save_image(sheet, path)


def _with_baseline_first(dirs: Sequence[str], baseline: str | None) -> List[str]:
    if baseline is None:
        return list(dirs)
    others = [d for d in dirs if os.path.realpath(d) != os.path.realpath(baseline)]
    return [baseline] + others


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> List[dict]:
    args = _parse_args(argv)
    device, workers = cli.pick_device(args.device), cli.num_workers(args)
    # every input is checked before the first model is loaded
    grid = grid_indices(args, args.num_eval)
    need_captions = bool(set(METRICS[1:]) & set(args.metrics)) or bool(grid)
    folders = _open_folders(_with_baseline_first(args.dirs, args.baseline), args.num_eval, args.text_path,
                            need_captions)
    baseline = folders[0] if args.baseline is not None else None
    if baseline is not None or grid:
        _check_same_prompts(folders, baseline or folders[0])
    if "clip" in args.metrics:
        clip_score.open_clip_source(args.clip_model, args.clip_pretrained)
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
        if reference is not None:
            folder.fid = folder_fid(folder, reference, features)

    rows = table_rows(folders, baseline, args.resamples, args.seed)
    table = markdown(rows)
    print(table, end="")
    written = write_outputs(args.out, table, rows, {**vars(args), "ci_level": 0.95})
    stem = os.path.splitext(args.out)[0]
    metrics = [(m.key, m.header) for m in (CLIP, IMAGE_REWARD, *(c for c, _ in H_METRICS.values()))]
    panels = report_panels(rows, metrics)
    if panels:
        save_figure(bar_panels(panels, "95% intervals over prompts; Δ: paired against the baseline", [FID_PANEL]),
                    f"{stem}.png")
        written.append(f"{stem}.png")
    if grid:
        write_grid(folders, grid, f"{stem}.grid.png")
        written.append(f"{stem}.grid.png")
    print(f"Wrote {', '.join(written)}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
