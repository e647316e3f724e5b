"""Table 1 as data: the per-image metrics it shows, one row per generated folder, and the Markdown, CSV and JSON
written from those rows."""
import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

from date.io.atomic import write_text
from evaluation import clip_score, concept_scores
from evaluation.stats import DEFAULT_RESAMPLES, mean_with_ci, paired_comparison


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
# the toy world's exact checker (evaluation/toy/measures.py): 1 where an image shows exactly its caption, else 0
TOY_EXACT = PerImageMetric("toy_exact", "Toy exact accuracy↑", "toy_exact_scores.npz", 3)
# Attend-and-Excite's multi-concept metrics (evaluation/concept_scores.py), by their --metrics name
_AE_HEADERS = {"full_prompt": "A&E full prompt↑", "min_object": "A&E min object↑", "text_text": "A&E text-text↑"}
AE_METRICS = {m.key: PerImageMetric(f"ae_{m.key}", _AE_HEADERS[m.key], m.score_file, 4) for m in concept_scores.METRICS}
OPTIONAL_METRICS = (*(column for column, _ in H_METRICS.values()), TOY_EXACT, *AE_METRICS.values())  # when computed
PER_IMAGE_METRICS = (CLIP, IMAGE_REWARD, *OPTIONAL_METRICS)


@dataclass
class Folder:
    """A generated folder: the files and captions to evaluate, then its per-image scores and FID."""
    path: str
    name: str
    paths: List[str]
    captions: List[str] | None
    fid: float | None = None
    scores: Dict[str, np.ndarray | None] = field(default_factory=dict)


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
    extra = [column for column in OPTIONAL_METRICS if any(column.key in f.scores for f in folders)]
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
    metrics = [m for m in PER_IMAGE_METRICS if any(m.key in r for r in rows)]
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
