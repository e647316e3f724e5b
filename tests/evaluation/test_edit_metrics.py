"""evaluation/edit_metrics.py: LPIPS (AlexNet, backbone from a local file) and CLIP score of edit folders, the toy
stand-ins, the JSON record and the LPIPS-vs-CLIP sweep plot."""
import csv
import json
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from date.toy import Shape, render
from evaluation import edit_metrics


def write_edit_folder(folder, mode, images, rho=0.5, cfg_tar=15.0):
    os.makedirs(folder, exist_ok=True)
    for k, image in enumerate(images):
        image.save(os.path.join(folder, f"{k}.png"))
    update = None if mode == "FIXED" else {"lr_upt_prompt": rho, "update_steps": [0, 10]}
    settings = {"mode": mode, "update": update, "edit": {"skip": 36, "cfg_tar": cfg_tar, "cfg_src": 3.5, "eta": 1.0,
                                                          "inversion_steps": 100}}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"settings": settings}, f)
    return str(folder)


@pytest.fixture
def toy_edits(tmp_path):
    sources = [render([Shape("red", "circle", 4, 8, 10)]), render([Shape("blue", "square", 18, 6, 9)])]
    for k, image in enumerate(sources):
        image.save(tmp_path / f"src{k}.png")
    path = tmp_path / "edits.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "source_prompt", "target_prompt"])
        writer.writerows([["src0.png", "a red circle", "a blue circle"], ["src1.png", "a blue square", "a red square"]])
    return str(path), sources


def test_alexnet_backbone_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    model = edit_metrics.load_alexnet_lpips(str(path))
    assert torch.equal(model.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(model.net.slice5.state_dict()["10.bias"], state["features.10.bias"])
    lpips = edit_metrics.AlexLPIPS(str(path))
    x = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    y = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(2))
    assert np.allclose(lpips(x, x), 0, atol=1e-6) and (lpips(x, y) > 0).all()
    assert np.allclose(lpips(x, y), model(x * 2 - 1, y * 2 - 1).flatten().numpy(), atol=1e-6)
    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(1)}, bad)
    with pytest.raises(edit_metrics.UserInputError, match="not torchvision's AlexNet"):
        edit_metrics.load_alexnet_lpips(str(bad))


def test_toy_perceptual_distance():
    distance = edit_metrics.ToyPerceptual()
    base = render([Shape("red", "circle", 4, 8, 10)])
    moved = render([Shape("red", "circle", 18, 8, 10)])
    recolored = render([Shape("blue", "circle", 4, 8, 10)])
    images = edit_metrics.to_tensor([base, base, base])
    others = edit_metrics.to_tensor([base, recolored, moved])
    d = distance(images, others)
    assert abs(d[0]) < 1e-9 and d[1] > 0 and d[2] > 0
    assert np.allclose(distance(others, images), d, atol=1e-6)


def test_folder_metrics_and_sweep(tmp_path, toy_edits, capsys):
    edits, sources = toy_edits
    blue = [render([Shape("blue", "circle", 4, 8, 10)]), render([Shape("red", "square", 18, 6, 9)])]
    parent = tmp_path / "runs"
    fixed = write_edit_folder(parent / "EDIT_FIXED", "FIXED", sources)  # no edit at all
    write_edit_folder(parent / "EDIT_DATE", "DATE_CLIP", blue)  # the edits done exactly
    write_edit_folder(parent / "EDIT_DATE_rho1", "DATE_CLIP", blue[:1], rho=1.0)  # only the first image yet
    flags = ["--edits", edits, "--clip_model", "toy", "--lpips_model", "toy", "--device", "cpu", "--resamples", "200"]
    result = edit_metrics.main([fixed, *flags])
    record = json.load(open(os.path.join(fixed, edit_metrics.METRICS_FILE)))
    assert record["lpips"]["per_image"] == pytest.approx([0, 0], abs=1e-9) and record["images"] == [0, 1]
    assert set(record) >= {"lpips", "clip", "models"} and {**record, "folder": "EDIT_FIXED"} == json.loads(json.dumps(result))
    assert {"per_image", "mean", "low", "high"} <= set(record["clip"])
    out = edit_metrics.main(["--sweep", str(parent), *flags])
    rows = {row["folder"]: row for row in out["rows"]}
    assert rows["EDIT_DATE"]["clip"]["mean"] > rows["EDIT_FIXED"]["clip"]["mean"]  # the toy CLIP sees the edit
    assert rows["EDIT_DATE"]["lpips"]["mean"] > rows["EDIT_FIXED"]["lpips"]["mean"] == pytest.approx(0, abs=1e-9)
    assert rows["EDIT_DATE_rho1"]["settings"]["rho"] == 1.0 and rows["EDIT_FIXED"]["settings"]["method"] == "baseline"
    assert os.path.getsize(parent / edit_metrics.SWEEP_PLOT) > 1000
    assert json.load(open(parent / edit_metrics.SWEEP_TABLE)) == json.loads(json.dumps(out["rows"]))
    assert edit_metrics.point_label(rows["EDIT_DATE_rho1"]["settings"], ["method", "rho"]) == "ρ 1"


@pytest.mark.parametrize("argv, message", [
    ([], "give an edit folder, or --sweep"),
    (["missing_folder"], "not a folder"),
    (["FOLDER", "--lpips_weights", "nowhere.pth"], "file not found"),
])
def test_errors_are_one_line(tmp_path, toy_edits, capsys, argv, message):
    edits, sources = toy_edits
    folder = write_edit_folder(tmp_path / "run", "FIXED", sources)
    argv = [folder if a == "FOLDER" else str(tmp_path / a) if a == "missing_folder" else a for a in argv]
    with pytest.raises(SystemExit) as stop:
        edit_metrics.main([*argv, "--edits", edits, "--clip_model", "toy", "--device", "cpu"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


# --- the toy edit benchmark ----------------------------------------------------------------------------------------

def test_toy_edit_judge():
    from evaluation.toy_edit_bench import judge_edit

    source = render([Shape("red", "circle", 4, 8, 10)])
    caption, target = "a red circle on the left", "a blue circle on the left"
    exact = judge_edit(source, render([Shape("blue", "circle", 4, 8, 10)]), caption, target)
    assert exact["edit_success"] == 1 and exact["faithfulness"] == 1
    moved = judge_edit(source, render([Shape("blue", "circle", 9, 8, 10)]), caption, target)  # 5 px right
    assert moved["edit_success"] == 1 and moved["faithfulness"] == 0 and moved["position_kept"] == 0
    unchanged = judge_edit(source, source, caption, target)
    assert unchanged["edit_success"] == 0 and unchanged["faithfulness"] == 1
    two = render([Shape("red", "circle", 2, 10, 9), Shape("green", "square", 20, 10, 9)])
    pair, pair_target = "a red circle to the left of a green square", "a blue circle to the left of a green square"
    lost = judge_edit(two, render([Shape("blue", "circle", 2, 10, 9), Shape("green", "square", 12, 20, 9)]), pair,
                      pair_target)
    assert lost["other_kept"] == 0 and lost["faithfulness"] == 0
    kept = judge_edit(two, render([Shape("blue", "circle", 2, 10, 9), Shape("green", "square", 20, 10, 9)]), pair,
                      pair_target)
    assert kept["edit_success"] == 1 and kept["faithfulness"] == 1


def test_toy_edit_bench_runs(tmp_path):
    from evaluation import toy_edit_bench

    rows = toy_edit_bench.main(["--out", str(tmp_path), "--max_cnt", "2", "--steps", "12", "--skip", "4",
                                "--methods", "date_rho0.5,baseline", "--device", "cpu", "--resamples", "100"])
    assert [r["method"] for r in rows] == ["baseline", "date_rho0.5"]
    record = json.load(open(tmp_path / "results.json"))
    assert record["count"] == 2 and {"edit_success", "faithfulness", "seconds"} <= set(record["rows"][0])
    assert "edit_success_vs_baseline" in record["rows"][1] and "edit_success_vs_baseline" not in record["rows"][0]
    assert sorted(os.listdir(tmp_path / "baseline")) == ["0.png", "1.png"]
    assert (tmp_path / "results.md").read_text().startswith("| method |")


def test_bundled_toy_edits_show_their_source_captions():
    from date.io.edits import read_edits
    from date.toy import check
    from evaluation.toy_edit_bench import EDITS

    edits = read_edits(EDITS)
    assert len(edits) >= 24
    for edit in edits:
        assert check(Image.open(edit.image), edit.source_prompt).ok, edit
