"""report.py on two tiny generated folders: the table's numbers, the paired statistics, the files, the caches."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from date.io.errors import UserInputError
from evaluation import clip_score, image_reward, report
from evaluation.fid import feature_statistics, frechet_distance
from evaluation.image_folder import load_rgb
from evaluation.inception import InceptionFeatures
from evaluation.score_files import save_npz
from evaluation.stats import paired_comparison
from tests.support.evaluation_helpers import TINY_CLIP, assert_one_line_error, make_folder, tiny_clip_checkpoint

from tests.support.paths import REPO as REPO_ROOT


@pytest.fixture
def two_folders(tmp_path):
    """A 'baseline' and a 'date' folder from the same captions, each with ImageReward scores in the official format
    (key `scores` only), DATE's exactly 0.1 higher on every prompt."""
    base, date = str(tmp_path / "baseline"), str(tmp_path / "date")
    make_folder(base, 5, seed=0)
    make_folder(date, 5, seed=1, brightness=60)
    rewards = np.array([0.1, -0.4, 0.3, 0.0, 0.25, 9.0], dtype=np.float32)  # one more score than evaluated
    save_npz(os.path.join(base, "image_reward_scores.npz"), {"scores": rewards})
    save_npz(os.path.join(date, "image_reward_scores.npz"), {"scores": rewards + np.float32(0.1)})
    return base, date


def _argv(tmp_path, base, date, *extra):
    return [date, "--baseline", base, "--reference", base, "--num_eval", "5", "--clip_model", TINY_CLIP,
            "--clip_pretrained", tiny_clip_checkpoint(), "--inception_weights", "random", "--num_workers", "0",
            "--resamples", "500", "--out", str(tmp_path / "table.md"), *extra]


def test_report_numbers_files_and_caches(tmp_path, two_folders, capsys, monkeypatch):
    base, date = two_folders
    rows = report.main(_argv(tmp_path, base, date))
    printed = capsys.readouterr().out
    by_name = {row["method"]: row for row in rows}
    assert [row["method"] for row in rows] == ["baseline", "date"] and by_name["baseline"]["is_baseline"]
    assert all(row["n"] == 5 for row in rows)

    # FID: the baseline folder is also the reference, so its FID is 0; the brighter folder is far from it
    assert by_name["baseline"]["fid"] == pytest.approx(0, abs=1e-6)
    assert by_name["date"]["fid"] > 1e-3
    features = {name: np.load(os.path.join(folder, "fid_features.npz"))["features"]
                for name, folder in (("baseline", base), ("date", date))}
    assert features["date"].shape == (5, 2048)
    assert by_name["date"]["fid"] == pytest.approx(
        frechet_distance(*feature_statistics(features["date"]), *feature_statistics(features["baseline"])), rel=1e-6)

    # CLIP score: per-image scores saved beside the images; the table shows their mean within its interval
    clip = {name: np.load(os.path.join(folder, "clip_scores.npz"))["scores"]
            for name, folder in (("baseline", base), ("date", date))}
    for name, row in by_name.items():
        assert row["clip_score"] == pytest.approx(float(clip[name].astype(np.float64).mean()))
        assert row["clip_score_low"] <= row["clip_score"] <= row["clip_score_high"]
    expected = paired_comparison(clip["date"], clip["baseline"], resamples=500)
    assert by_name["date"]["clip_score_diff"] == pytest.approx(expected.mean_diff)
    assert (by_name["date"]["clip_score_diff_low"], by_name["date"]["clip_score_diff_high"]) == pytest.approx(
        (expected.low, expected.high))
    assert by_name["date"]["clip_score_win_rate"] == pytest.approx(expected.win_rate)

    # ImageReward from the saved official-format files: a constant +0.1 on the same prompts
    assert by_name["baseline"]["image_reward"] == pytest.approx(0.05, abs=1e-6)
    assert by_name["date"]["image_reward_diff"] == pytest.approx(0.1, abs=1e-6)
    assert by_name["date"]["image_reward_win_rate"] == 1.0
    assert by_name["date"]["image_reward_wilcoxon_p"] == pytest.approx(0.0625)  # exact: 5 positive differences

    # Markdown printed and saved; CSV and JSON beside it with the same rows
    assert "| baseline (baseline) | 5 | 0.00 |" in printed and "Paired against baseline" in printed
    assert (tmp_path / "table.md").read_text() == printed
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows)) and saved["settings"]["num_eval"] == 5
    with open(tmp_path / "table.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert float(csv_rows[1]["fid"]) == pytest.approx(by_name["date"]["fid"])
    assert csv_rows[0]["clip_score_diff"] == ""

    # a second run reuses every saved score and feature: no model is even built
    def no_model(*args, **kwargs):
        raise AssertionError("recomputed instead of reusing the saved files")

    monkeypatch.setattr(InceptionFeatures, "__call__", no_model)
    monkeypatch.setattr(clip_score.OpenCLIPScore, "__init__", no_model)
    assert report.main(_argv(tmp_path, base, date)) == rows

    # ...until an image changes: then that folder's scores are computed again
    make_folder(date, 5, seed=7)
    with pytest.raises(AssertionError, match="recomputed"):
        report.main(_argv(tmp_path, base, date, "--metrics", "clip"))


def _use_image_reward(monkeypatch, load_scorer, default_model):
    """Stand in for the ImageReward module (no hub here): its default model and how it loads."""
    monkeypatch.setattr(image_reward, "DEFAULT_MODEL", default_model)
    monkeypatch.setattr(image_reward, "DEFAULT_TOKENIZER", "bert")
    monkeypatch.setattr(image_reward, "load_scorer", load_scorer)
    monkeypatch.setattr(image_reward, "model_id", lambda model, tokenizer: f"fake:{model}:{tokenizer}")


def test_report_without_image_reward_shows_na(tmp_path, monkeypatch, capsys):
    """The default ImageReward model cannot be loaded: the column says n/a and the rest is reported."""
    def load_scorer(model, device, tokenizer):
        raise UserInputError(f"cannot load ImageReward from '{model}': offline")

    _use_image_reward(monkeypatch, load_scorer, "hub/reward")
    folder = str(tmp_path / "only")
    make_folder(folder, 4, seed=3)
    argv = [folder, "--metrics", "clip", "ir", "--num_eval", "4", "--clip_model", TINY_CLIP, "--clip_pretrained",
            tiny_clip_checkpoint(), "--num_workers", "0", "--resamples", "200", "--out", str(tmp_path / "t.md")]
    rows = report.main(argv)
    assert rows[0]["image_reward"] is None and rows[0]["fid"] is None and rows[0]["clip_score"] is not None
    assert "| only | 4 | n/a | " in capsys.readouterr().out and "| n/a |" in (tmp_path / "t.md").read_text()
    with pytest.raises(SystemExit) as excinfo:  # a model asked for by name must load
        report.main(argv + ["--ir_model", "hub/reward"])
    assert_one_line_error(capsys, excinfo, "cannot load ImageReward", "offline")


class _Brightness:
    """A stand-in reward model: mean pixel value, which the brighter folder wins on every prompt."""
    transform = staticmethod(TF.to_tensor)

    def score_batch(self, images, captions):
        return torch.stack([image.mean() for image in images])


def test_report_computes_image_reward_with_its_scorer(tmp_path, monkeypatch, capsys):
    base, date = str(tmp_path / "baseline"), str(tmp_path / "date")
    make_folder(base, 4, seed=0)
    make_folder(date, 4, seed=0, brightness=40)
    loaded = []
    _use_image_reward(monkeypatch, lambda model, device, tokenizer: loaded.append(model) or _Brightness(),
                      "fake/reward")
    argv = [base, date, "--baseline", base, "--metrics", "ir", "--num_eval", "4", "--num_workers", "0",
            "--resamples", "200", "--out", str(tmp_path / "t.md")]
    rows = report.main(argv)
    assert loaded == ["fake/reward"]  # one model for both folders
    brightness = {folder: np.array([np.asarray(load_rgb(os.path.join(folder, f"{i}.png")), dtype=np.float64).mean()
                                    / 255 for i in range(4)]) for folder in (base, date)}
    assert rows[0]["image_reward"] == pytest.approx(brightness[base].mean(), rel=1e-5)
    assert rows[1]["image_reward_diff"] == pytest.approx((brightness[date] - brightness[base]).mean(), rel=1e-5)
    assert rows[1]["image_reward_win_rate"] == 1.0
    with np.load(os.path.join(date, "image_reward_scores.npz")) as saved:
        assert str(saved["fingerprint"])  # written with a fingerprint, so the next run reuses it
    assert report.main(argv) == rows and loaded == ["fake/reward"]


@pytest.mark.parametrize("case, fragments", [
    ("different captions", ["different captions", "index 0"]),
    ("contact sheet of different captions", ["different captions", "contact sheets"]),
    ("reference without mu/sigma", ["lacks mu and sigma"]),
    ("no reference", ["--reference is required"]),
])
def test_report_user_mistakes(tmp_path, two_folders, capsys, case, fragments):
    base, date = two_folders
    argv = _argv(tmp_path, base, date)
    if case.endswith("different captions"):
        (tmp_path / "date" / "subset.csv").write_text("caption\n" + "another prompt\n" * 6)
    if case.startswith("contact sheet"):
        del argv[argv.index("--baseline"):argv.index("--baseline") + 2]
        argv = [base] + argv + ["--grid", "2"]  # two folders, no baseline: the sheet alone needs the same captions
    elif case == "reference without mu/sigma":
        wrong = str(tmp_path / "wrong.npz")
        save_npz(wrong, {"m": np.zeros(2048)})
        argv[argv.index("--reference") + 1] = wrong
    elif case == "no reference":
        del argv[argv.index("--reference"):argv.index("--reference") + 2]
    with pytest.raises(SystemExit) as excinfo:
        report.main(argv)
    assert_one_line_error(capsys, excinfo, *fragments)
    assert not os.path.exists(os.path.join(date, "clip_scores.npz"))  # checked before any model ran


def test_scripts_run_from_any_folder(tmp_path):
    """`python evaluation/<script>.py` finds the installed `date` and `evaluation` packages from any working folder
    and reports a mistake in one line. One script is run for real (each start imports torch and diffusers: ~10 s
    here); none patches `sys.path`."""
    missing = str(tmp_path / "missing")
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "evaluation", "fid.py"), missing, "coco.npz"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: image folder not found: {missing}"
    scripts = [name for name in os.listdir(os.path.join(REPO_ROOT, "evaluation")) if name.endswith(".py")]
    for script in scripts:
        with open(os.path.join(REPO_ROOT, "evaluation", script)) as f:
            assert "sys.path" not in f.read(), script


def test_report_plot_grid_and_a_new_output_folder(tmp_path, two_folders, capsys):
    """`--out` in a folder that does not exist yet; the plot has a panel per metric; the contact sheet has one row per
    chosen caption and one column per folder, and long or non-ASCII captions do not break its labels."""
    from evaluation.plots import report_panels

    base, date = two_folders
    out = tmp_path / "results" / "deeper" / "table1.md"
    argv = [a if a != str(tmp_path / "table.md") else str(out) for a in _argv(tmp_path, base, date)]
    rows = report.main(argv + ["--grid_indices", "4,0"])
    written = capsys.readouterr().err
    assert out.exists() and (out.parent / "table1.png").exists() and (out.parent / "table1.grid.png").exists()
    assert "table1.grid.png" in written
    panels = report_panels(rows, [("clip_score", "CLIP score↑"), ("image_reward", "ImageReward↑")],
                           [row["method"] for row in rows])
    assert [name for name, _ in panels] == ["FID ↓", "CLIP score↑", "ImageReward↑"]
    assert panels[1][1][1][4].startswith("Δ ") and panels[1][1][0][4] is None  # the paired Δ on the non-baseline bar
    with Image.open(out.parent / "table1.png") as plot:
        assert plot.width > plot.height > 200
    with Image.open(out.parent / "table1.grid.png") as sheet:
        sheet.load()
    cell, pad = 192, 6
    assert sheet.width == 2 * cell + 3 * pad  # two folders
    assert 2 * cell < sheet.height < 2 * cell + 200  # two rows, each with its caption under it
    with pytest.raises(SystemExit) as exit_info:
        report.main(argv + ["--grid", "6"])
    assert_one_line_error(capsys, exit_info, "index 5")


def test_contact_sheet_cells_and_labels():
    from date.io.sheets import contact_sheet, wrap, label_font

    images = [[Image.new("RGB", (32, 32), (200, 0, 0)), Image.new("RGB", (64, 40), (0, 0, 200))] for _ in range(3)]
    captions = ["x" * 5000, "un carré bleu à gauche → 日本語 ✓", "a " * 400]
    sheet = contact_sheet(images, captions, ["fixed", "DATE (h = CLIP) with a very long method name indeed"], cell=64,
                          verdicts=[[True, False], [None, True], [False, None]])
    assert sheet.width == 2 * 64 + 3 * 6
    pixels = np.asarray(sheet)
    assert (pixels == [200, 0, 0]).all(-1).sum() >= 3 * (64 * 64 - 20 * 20)  # three red cells, up to their marks
    for caption in captions:
        lines = wrap(caption, label_font(14), 140, 2)
        assert 1 <= len(lines) <= 2 and all(label_font(14).getlength(line) <= 140 for line in lines)
    assert wrap("x" * 5000, label_font(14), 140, 2)[-1].endswith("…")
    with pytest.raises(ValueError):
        contact_sheet(images, captions[:2], ["a", "b"])
