"""evaluation/table1.sh end to end on the tiny pipeline: six generation runs and one report, as on a GPU."""
import json
import os
import subprocess

from date.io.captions import write_captions
from tests.support.evaluation_helpers import make_folder
from tests.support.image_reward_recipe import save_bert_tokenizer, save_checkpoint_dir

from tests.support.paths import REPO
ROWS = ("fixed", "fixed70", "ebca", "ug_clip", "date_clip", "date_ir")


def test_table1_script_makes_six_rows_and_the_report(tiny_dirs, tmp_path):
    captions = str(tmp_path / "captions.csv")
    write_captions(captions, ["a red circle on the left", "a photo of a dog on a beach"])
    ir, tokenizer = save_checkpoint_dir(str(tmp_path / "ir")), save_bert_tokenizer(str(tmp_path / "bert"))
    make_folder(str(tmp_path / "reference"), 4, seed=0)
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "H_MODELS": f"--h_model clip={tiny_dirs['clip']} --h_model ir={ir} --h_model ir_tokenizer={tokenizer}",
           "REPORT_FLAGS": f"--metrics fid ir --reference {tmp_path / 'reference'} --inception_weights random "
                           f"--ir_model {ir} --ir_tokenizer {tokenizer} --num_eval 2 --resamples 50 --num_workers 0"}
    out = tmp_path / "table"  # relative paths are the caller's: run from elsewhere than the repository
    result = subprocess.run(["bash", os.path.join(REPO, "evaluation", "table1.sh"), "table", "--model", tiny_dirs["sd"],
                             "--text_path", captions, "--steps", "3", "--bs", "2", "--device", "cpu"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    folders = {row: next(name for name in os.listdir(out) if name.endswith(f"_name_{row}")) for row in ROWS}
    assert folders["fixed"].startswith("FIXED_") and "_steps_3_" in folders["fixed"]
    assert folders["fixed70"].startswith("FIXED_") and "_steps_70_" in folders["fixed70"]
    for row, prefix in [("ebca", "EBCA_"), ("ug_clip", "UG_CLIP_"), ("date_clip", "DATE_CLIP_"), ("date_ir", "DATE_IR_")]:
        assert folders[row].startswith(prefix) and os.path.isfile(out / folders[row] / "1.png")
    with open(out / "table1.json") as f:
        report = json.load(f)
    assert len(report["rows"]) == 6 and all(row["n"] == 2 for row in report["rows"])
    assert "python generate_date.py" in result.stderr and "evaluation/report.py" in result.stderr


def test_table1_script_needs_an_output_folder():
    result = subprocess.run(["bash", os.path.join(REPO, "evaluation", "table1.sh")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: usage")
