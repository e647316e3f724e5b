"""evaluation/toy_bench.py on a handful of prompts, with the bundled toy weights."""
import json
import os

import pytest

from date.prompts import write_captions
from evaluation import toy_bench

PROMPTS = ["a red circle", "a blue square on the left", "a green triangle above a white circle",
           "a yellow square to the left of a purple triangle"]


def test_small_benchmark_run_reports_both_methods(tmp_path):
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS)
    out = tmp_path / "bench"
    results = toy_bench.main(["--prompts", prompts, "--seeds", "2", "--out", str(out), "--steps", "6", "--skip_freq", "2",
                              "--reference_images", "40", "--batch_size", "4"])
    with open(out / "results.json") as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(results))
    for method in ("fixed", "date_clip"):
        entry = saved[method]
        assert entry["n"] == 8 and entry["prompts"] == 4
        assert 0 <= entry["exact_accuracy"] <= 1 and entry["ci95"][0] <= entry["exact_accuracy"] <= entry["ci95"][1]
        assert set(entry["parts"]) == set(toy_bench.PARTS) and set(entry["templates"]) == {"single", "left", "above", "left_of"}
        assert entry["toy_fid"] > 0 and -1 <= entry["clip_score"] <= 1
        assert sorted(os.listdir(out / method / "seed_1")) == ["0.png", "1.png", "2.png", "3.png"]
    paired = saved["paired"]
    assert paired["gained"] + paired["lost"] <= 8 and 0 <= paired["mcnemar_p"] <= 1
    assert "| exact accuracy ↑ |" in (out / "results.md").read_text()


def test_same_noise_same_images_without_updates(tmp_path):
    """With ρ = 0, DATE must reproduce the fixed-embedding images exactly: the comparison is paired."""
    prompts = str(tmp_path / "prompts.csv")
    write_captions(prompts, PROMPTS[:2])
    out = tmp_path / "bench"
    toy_bench.main(["--prompts", prompts, "--out", str(out), "--steps", "3", "--lr_upt_prompt", "0",
                    "--reference_images", "20"])
    for index in ("0", "1"):
        assert (out / "fixed" / "seed_0" / f"{index}.png").read_bytes() == (out / "date_clip" / "seed_0" / f"{index}.png").read_bytes()


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
