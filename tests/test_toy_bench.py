"""evaluation/toy_bench.py on a handful of prompts, with the bundled toy weights."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from date.prompts import write_captions
from date.toy import SIZE
from evaluation import toy_bench

PROMPTS = ["a red circle", "a blue square on the left", "a green triangle above a white circle",
           "a yellow square to the left of a purple triangle"]


def test_small_benchmark_run_reports_every_method(tmp_path):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS)
    out = tmp_path / "bench"
    results = toy_bench.main(["--prompts", prompts, "--seeds", "2", "--out", str(out), "--steps", "6", "--skip_freq", "2",
                              "--reference_images", "40", "--batch_size", "4"])
    with open(out / "results.json") as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(results))
    for method in ("fixed", "date_clip", "date_fast"):
        entry = saved[method]
        assert entry["n"] == 8 and entry["prompts"] == 4
        assert 0 <= entry["exact_accuracy"] <= 1 and entry["ci95"][0] <= entry["exact_accuracy"] <= entry["ci95"][1]
        assert set(entry["parts"]) == set(toy_bench.PARTS) and set(entry["templates"]) == {"single", "left", "above", "left_of"}
        assert entry["toy_fid"] > 0 and -1 <= entry["clip_score"] <= 1
        assert sorted(os.listdir(out / method / "seed_1")) == ["0.png", "1.png", "2.png", "3.png"]
    assert set(saved["paired"]) == {"date_clip", "date_fast"}
    for paired in saved["paired"].values():
        assert paired["gained"] + paired["lost"] <= 8 and 0 <= paired["mcnemar_p"] <= 1
    table = (out / "results.md").read_text()
    assert "| exact accuracy ↑ |" in table and "DATE fast (tiny x̂0 decoder)" in table
    # fast mode differs from DATE only in how x̂0 is decoded inside updates: other images, same noise
    assert any((out / "date_fast" / "seed_0" / f"{i}.png").read_bytes() != (out / "date_clip" / "seed_0" / f"{i}.png").read_bytes()
               for i in range(4))


def test_methods_subset_and_bad_methods(tmp_path, capsys):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:2])
    results = toy_bench.main(["--prompts", prompts, "--out", str(tmp_path / "bench"), "--steps", "2",
                              "--reference_images", "20", "--methods", "date_fast,fixed"])
    assert set(results) == {"fixed", "date_fast", "paired", "settings"} and set(results["paired"]) == {"date_fast"}
    assert not (tmp_path / "bench" / "date_clip").exists()
    with pytest.raises(SystemExit) as exit_info:
        toy_bench.main(["--prompts", prompts, "--out", str(tmp_path / "other"), "--methods", "date_clip"])
    assert exit_info.value.code == 2 and "must list fixed" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_same_noise_same_images_without_updates(tmp_path):
    """With ρ = 0, DATE must reproduce the fixed-embedding images exactly: the comparison is paired."""
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:2])
    out = tmp_path / "bench"
    toy_bench.main(["--prompts", prompts, "--out", str(out), "--steps", "3", "--lr_upt_prompt", "0",
                    "--reference_images", "20"])
    for index in ("0", "1"):
        for method in ("date_clip", "date_fast"):
            assert (out / "fixed" / "seed_0" / f"{index}.png").read_bytes() == (out / method / "seed_0" / f"{index}.png").read_bytes()


def test_a_rerun_resumes_and_other_settings_are_refused(tmp_path, capsys):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:2])
    out = tmp_path / "bench"
    argv = ["--prompts", prompts, "--out", str(out), "--steps", "3", "--skip_freq", "2", "--reference_images", "20"]
    first = toy_bench.main(argv)
    kept, lost = out / "date_clip" / "seed_0" / "0.png", out / "date_clip" / "seed_0" / "1.png"
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
        toy_bench.main(argv[:-2] + ["--reference_images", "20", "--w", "3"])
    assert "other settings (w: 8.0 -> 3.0)" in capsys.readouterr().err


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=float)


@pytest.mark.parametrize("caption, message", [("a red circle and a red circle", "caption 1"), ("a cat", "caption 1")])
def test_captions_outside_the_grammar_are_refused(tmp_path, capsys, caption, message):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, ["a red circle", caption])
    with pytest.raises(SystemExit) as exit_info:
        toy_bench.main(["--prompts", prompts, "--out", str(tmp_path / "bench")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "bench").exists()
