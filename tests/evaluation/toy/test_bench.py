"""evaluation/toy_bench.py on a handful of prompts, with the bundled toy weights."""
import argparse
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from date.io.captions import write_captions
from date.toy import SIZE
from evaluation.toy import bench as toy_bench
from evaluation.toy import methods as toy_methods
from evaluation.toy.methods import METHODS
from evaluation.toy.report import PARTS

PROMPTS = ["a red circle", "a blue square on the left", "a green triangle above a white circle",
           "a yellow square to the left of a purple triangle"]


def test_small_benchmark_run_reports_every_method(tmp_path):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS)
    out = tmp_path / "bench"
    results = toy_bench.main(["--text_path", prompts, "--seeds", "2", "--out", str(out), "--steps", "6", "--skip_freq", "2",
                              "--reference_images", "40", "--bs", "4", "--optim_forward_guidance_wt", "50"])
    with open(out / "results.json") as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(results))
    for method in METHODS:
        entry = saved[method]
        assert entry["n"] == 8 and entry["prompts"] == 4
        assert 0 <= entry["exact_accuracy"] <= 1 and entry["ci95"][0] <= entry["exact_accuracy"] <= entry["ci95"][1]
        assert set(entry["parts"]) == set(PARTS) and set(entry["templates"]) == {"single", "left", "above", "left_of"}
        assert entry["toy_fid"] > 0 and -1 <= entry["clip_score"] <= 1
        assert sorted(os.listdir(out / method / "seed_1")) == ["0.png", "1.png", "2.png", "3.png"]
        assert entry["seconds_per_image"] > 0
    assert set(saved["paired"]["fixed"]) == set(METHODS) - {"fixed"}
    assert set(saved["paired"]["date"]) == set(METHODS) - {"fixed", "date"}
    for compared in saved["paired"].values():
        for paired in compared.values():
            assert paired["gained"] + paired["lost"] <= 8 and 0 <= paired["mcnemar_p"] <= 1
    table = (out / "results.md").read_text()
    assert "| exact accuracy ↑ |" in table and "DATE fast (tiny x̂0 decoder)" in table and "| seconds per image ↓ |" in table
    assert "EBCA − DATE (h = toy CLIP)" in table and "UG (h = toy CLIP)" in table
    assert_same_cell_counts(table, rows=3 + len(PARTS) + 4 + 3)
    with Image.open(out / "grid.png") as grid:  # 4 prompts (all of them) × every method, toy images enlarged
        assert grid.width == len(METHODS) * 128 + (len(METHODS) + 1) * 6 and 4 * 128 < grid.height < 4 * 128 + 4 * 60
        cell = np.asarray(grid.convert("RGB"))[60:60 + 128, 6:6 + 128]
    assert len(np.unique(cell.reshape(-1, 3), axis=0)) < 32 * 32 + 50  # nearest neighbour: no new colours
    with Image.open(out / "accuracy.png") as plot:
        assert plot.width > plot.height
    assert set(saved["fixed"]["templates_ci95"]) == set(saved["fixed"]["templates"])
    # every method changes the fixed-embedding images (same noise); fast mode differs from DATE only in its decoder
    for method in ("fixed70", "ebca", "ug", "ae", "conform", "date", "ae+date"):
        assert any((out / method / "seed_0" / f"{i}.png").read_bytes() != (out / "fixed" / "seed_0" / f"{i}.png").read_bytes()
                   for i in range(4)), method
    assert any((out / "date_fast" / "seed_0" / f"{i}.png").read_bytes() != (out / "date" / "seed_0" / f"{i}.png").read_bytes()
               for i in range(4))
    assert any((out / "ae+date" / "seed_0" / f"{i}.png").read_bytes() != (out / "ae" / "seed_0" / f"{i}.png").read_bytes()
               for i in range(4))  # DATE's embedding steps on top of Attend-and-Excite's latent steps


def test_attention_methods_take_each_object_shape_as_a_concept():
    assert toy_methods.toy_concepts("a red circle on the left") == ("circle",)
    assert toy_methods.toy_concepts("a blue circle above a white circle") == ("circle", "circle")
    assert toy_methods.toy_concepts("a green triangle and a white square") == ("triangle", "square")


def test_methods_subset_and_bad_methods(tmp_path, capsys):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:2])
    results = toy_bench.main(["--text_path", prompts, "--out", str(tmp_path / "bench"), "--steps", "2",
                              "--reference_images", "20", "--methods", "date_fast,fixed"])
    assert set(results) == {"fixed", "date_fast", "paired", "settings"} and set(results["paired"]) == {"fixed"}
    assert set(results["paired"]["fixed"]) == {"date_fast"}
    assert not (tmp_path / "bench" / "date").exists()
    alone = toy_bench.main(["--text_path", prompts, "--out", str(tmp_path / "alone"), "--steps", "2",
                            "--reference_images", "20", "--methods", "ebca"])
    assert set(alone) == {"ebca", "paired", "settings"} and alone["paired"] == {}
    with pytest.raises(SystemExit) as exit_info:
        toy_bench.main(["--text_path", prompts, "--out", str(tmp_path / "other"), "--methods", "date_clip"])
    assert exit_info.value.code == 2 and "must list some of" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_same_noise_same_images_without_updates(tmp_path):
    """With ρ = 0, s = 0 (no recurrence, which re-noises) and γ = 0, every method must reproduce the fixed-embedding
    images exactly: the comparison is paired."""
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:2])
    out = tmp_path / "bench"
    toy_bench.main(["--text_path", prompts, "--out", str(out), "--steps", "3", "--lr_upt_prompt", "0", "--gamma_attn", "0",
                    "--gamma_norm", "0", "--optim_forward_guidance_wt", "0", "--optim_num_steps", "1", "--reference_images", "20",
                    "--methods", "fixed,ebca,ug,date,date_fast"])
    for index in ("0", "1"):
        for method in ("ebca", "ug", "date", "date_fast"):
            assert (out / "fixed" / "seed_0" / f"{index}.png").read_bytes() == (out / method / "seed_0" / f"{index}.png").read_bytes()


def test_a_rerun_resumes_and_other_settings_are_refused(tmp_path, capsys):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:2])
    out = tmp_path / "bench"
    argv = ["--text_path", prompts, "--out", str(out), "--steps", "3", "--skip_freq", "2", "--methods", "fixed,date",
            "--reference_images", "20"]
    first = toy_bench.main(argv)
    kept, lost = out / "date" / "seed_0" / "0.png", out / "date" / "seed_0" / "1.png"
    kept_bytes, lost_pixels = kept.read_bytes(), pixels(lost)
    Image.new("RGB", (SIZE, SIZE)).save(kept)  # a blank image left in place proves that existing images are reused
    blank = kept.read_bytes()
    lost.unlink()
    second = toy_bench.main(argv)
    assert kept.read_bytes() == blank != kept_bytes
    # remade alone rather than in a batch of two: equal up to float rounding, which may move an edge pixel
    assert np.abs(pixels(lost) - lost_pixels).mean() < 0.5
    assert second["fixed"] == first["fixed"]
    with pytest.raises(SystemExit):
        toy_bench.main(argv + ["--w", "3"])
    assert "other settings (w: 8.0 -> 3.0)" in capsys.readouterr().err


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=float)


def assert_same_cell_counts(markdown: str, rows: int) -> None:
    """Every line of the Markdown table (header, separator, `rows` rows) has as many cells as the header."""
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == 2 + rows and set(table[1].strip("| ").split(" | ")) == {"---"}
    assert {line.count("|") for line in table} == {table[0].count("|")}


@pytest.mark.parametrize("steps, fixed70_steps", [(50, 70), (20, 28), (6, 8)])
def test_fixed70_takes_dates_time_at_any_steps(monkeypatch, steps, fixed70_steps):
    """fixed70 is fixed sampling with 70/50 of --steps (the paper's 70 at its 50): DATE's extra time, whatever --steps."""
    calls = []
    monkeypatch.setattr(toy_methods.date, "generate", lambda *a, **kw: calls.append(kw) or argparse.Namespace(images=[]))
    args = argparse.Namespace(steps=steps, w=8.0, skip_freq=10, lr_upt_prompt=0.5, num_upt_prompt=1)
    for method in ("fixed", "fixed70"):
        toy_methods.sampler(method, None, None, args)(["a red circle"], None, None)
    assert [c["num_inference_steps"] for c in calls] == [steps, fixed70_steps]


def test_a_rerun_with_fewer_methods_keeps_the_earlier_rows(tmp_path):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:2])
    out = tmp_path / "bench"
    argv = ["--text_path", prompts, "--out", str(out), "--steps", "2", "--skip_freq", "1", "--reference_images", "20"]
    first = toy_bench.main(argv + ["--methods", "fixed,date"])
    again = toy_bench.main(argv + ["--methods", "fixed"])
    assert again["date"] == first["date"] and again["fixed"] == first["fixed"] and again["paired"] == first["paired"]
    assert again["settings"]["methods"] == ["fixed", "date"] and again["settings"]["kept_methods"] == ["date"]
    table = (out / "results.md").read_text()
    assert "| metric | fixed | DATE (h = toy CLIP) |" in table and "Kept from an earlier run" in table
    assert json.loads((out / "results.json").read_text())["date"] == json.loads(json.dumps(first["date"]))
    other = toy_bench.main(argv + ["--methods", "fixed", "--seeds", "2"])  # other settings: the earlier rows do not apply
    assert set(other) == {"fixed", "paired", "settings"} and other["settings"]["kept_methods"] == []


@pytest.mark.parametrize("caption, message", [("a red circle and a red circle", "caption 1"), ("a cat", "caption 1")])
def test_captions_outside_the_grammar_are_refused(tmp_path, capsys, caption, message):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, ["a red circle", caption])
    with pytest.raises(SystemExit) as exit_info:
        toy_bench.main(["--text_path", prompts, "--out", str(tmp_path / "bench")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "bench").exists()


def test_one_image_per_method_is_refused(tmp_path, capsys):
    """Toy FID is a Fréchet distance between covariances: one image has none."""
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:1])
    with pytest.raises(SystemExit) as exit_info:
        toy_bench.main(["--text_path", prompts, "--out", str(tmp_path / "bench")])
    assert exit_info.value.code == 2 and "toy FID needs at least 2 images" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()


def test_summarize_runs_over_a_setting(tmp_path, capsys):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:2])
    for rho in ("0.25", "1", "0.5"):
        toy_bench.main(["--prompts", prompts, "--out", str(tmp_path / "sweep" / f"rho_{rho}"), "--steps", "2",  # old names
                        "--skip_freq", "1", "--lr_upt_prompt", rho, "--methods", "fixed,date", "--reference_images", "20",
                        "--batch_size", "2"])
    (tmp_path / "sweep" / "notes").mkdir()  # not a benchmark folder: ignored
    summary = toy_bench.main(["--summarize", str(tmp_path / "sweep")])
    assert summary["varying"] == ["lr_upt_prompt"] and summary["runs"] == ["rho_0.25", "rho_0.5", "rho_1"]
    table = (tmp_path / "sweep" / "summary.md").read_text()
    assert table.count("| DATE (h = toy CLIP) |") == 3 and table.count("| fixed |") == 3
    assert_same_cell_counts(table, rows=6)
    (tmp_path / "alone" / "rho_1").mkdir(parents=True)  # one run: no setting varies, no column for one
    shutil.copy(tmp_path / "sweep" / "rho_1" / "results.json", tmp_path / "alone" / "rho_1")
    assert toy_bench.main(["--summarize", str(tmp_path / "alone")])["varying"] == []
    assert_same_cell_counts((tmp_path / "alone" / "summary.md").read_text(), rows=2)
    with Image.open(tmp_path / "sweep" / "summary.png") as plot:
        assert plot.width > plot.height
    capsys.readouterr()
    for argv in (["--summarize", str(tmp_path / "sweep" / "notes")], ["--summarize", "x", "--out", "y"]):
        with pytest.raises(SystemExit) as exit_info:
            toy_bench.main(argv)
        assert exit_info.value.code == 2 and capsys.readouterr().err.startswith("error: ")
