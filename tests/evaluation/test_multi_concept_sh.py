"""evaluation/multi_concept.sh end to end on the tiny pipeline: six generation runs (fixed, A&E, CONFORM, DATE with
two h, A&E + DATE), the metrics of each folder and one report."""
import json
import os
import subprocess

from date.io.captions import read_captions
from tests.support.image_reward_recipe import save_bert_tokenizer, save_checkpoint_dir
from tests.support.paths import REPO

ROWS = ("fixed", "ae", "conform", "date_clip", "date_ir", "ae_date")


def test_script_makes_six_folders_their_metrics_and_the_report(tiny_dirs, tmp_path):
    captions = tmp_path / "prompts.csv"
    captions.write_text("caption,category\na cat and a frog,animals\na red car with a glasses,animals_objects\n")
    ir, tokenizer = save_checkpoint_dir(str(tmp_path / "ir")), save_bert_tokenizer(str(tmp_path / "bert"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TEXT_PATH": str(captions), "IMAGES_PER_CAPTION": "2",
           "H_MODELS": f"--h_model clip={tiny_dirs['clip']} --h_model ir={ir} --h_model ir_tokenizer={tokenizer}",
           "CLIP_MODEL": "toy", "CAPTION_MODEL": "none", "METRIC_FLAGS": "--num_workers 0 --resamples 50 --device cpu",
           "REPORT_FLAGS": "--grid 2"}
    result = subprocess.run(["bash", os.path.join(REPO, "evaluation", "multi_concept.sh"), "out", "--model",
                             tiny_dirs["sd"], "--steps", "3", "--bs", "2", "--device", "cpu"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    folders = {row: out / next(n for n in os.listdir(out) if n.endswith(f"_name_{row}")) for row in ROWS}
    for row, folder in folders.items():
        assert os.path.isfile(folder / "1_1.png"), row  # two seeds per prompt
        assert read_captions(str(folder / "subset.csv")) == ["a cat and a frog", "a red car with a glasses"]
        with open(folder / "multi_concept.json") as f:
            summary = json.load(f)["summary"]
        assert set(summary) == {"all", "animals", "animals_objects"} and summary["all"]["full_prompt"]["n"] == 4
    with open(out / "multi_concept.json") as f:
        report = json.load(f)
    assert len(report["rows"]) == 6 and all(row["n"] == 4 for row in report["rows"])
    assert all("ae_min_object_diff" in row for row in report["rows"][1:])
    assert os.path.isfile(out / "multi_concept.grid.png")
    assert "--method ae " in result.stderr and "evaluation/multi_concept.py" in result.stderr
    assert "A&E min object" in (out / "multi_concept.md").read_text()


def test_script_needs_an_output_folder():
    result = subprocess.run(["bash", os.path.join(REPO, "evaluation", "multi_concept.sh")], capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: usage")
