"""evaluation/toy_judge.py and report.py --metrics toy on folders of rendered world images (the ground truth, which
the checker must accept), of wrong images, and of the toy generator's own output."""
import json
import os
import shutil

import numpy as np
import pytest

import generate_date_clip
from date.io.captions import write_captions
from date.toy import parse, render
from date.toy.world import sample_scene
from evaluation import report
from evaluation.toy import judge
from evaluation.toy.measures import ExactChecker
from tests.support.evaluation_helpers import CAPTIONS, assert_one_line_error, make_folder

# every template, two captions of each two-object template (so that they get intervals), no two naming the same objects
TRUE_CAPTIONS = ["a red circle", "a blue square on the left", "a green triangle at the bottom",
                 "a white square and a yellow circle", "a purple triangle and a red square",
                 "a blue circle to the left of a green square", "a yellow triangle to the left of a white circle",
                 "a red triangle above a blue triangle", "a green circle above a purple square"]
FAST = ["--reference_images", "20", "--device", "cpu"]


def rendered_folder(folder, captions, seed=0, record=True):
    """`<folder>/<k>.png`: a scene drawn for caption k (true by construction), and the `subset.csv` record."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index, caption in enumerate(captions):
        render(sample_scene(rng, parse(caption))).save(os.path.join(folder, f"{index}.png"))
    if record:
        write_captions(os.path.join(folder, "subset.csv"), captions)
    return str(folder)


def test_true_images_are_all_right_and_a_wrong_caption_file_lowers_accuracy(tmp_path, capsys):
    truth = rendered_folder(tmp_path / "truth", TRUE_CAPTIONS)
    unrecorded = str(tmp_path / "unrecorded")  # the same images, captions only from --text_path
    shutil.copytree(truth, unrecorded, ignore=shutil.ignore_patterns("subset.csv"))
    shifted = str(tmp_path / "shifted.csv")  # each image paired with the next image's caption
    write_captions(shifted, TRUE_CAPTIONS[1:] + TRUE_CAPTIONS[:1])

    right = judge.main([truth, *FAST])[truth]
    wrong = judge.main([unrecorded, "--text_path", shifted, *FAST])[unrecorded]

    assert right["n"] == wrong["n"] == len(TRUE_CAPTIONS)
    assert right["exact_accuracy"] == 1.0 and right["ci95"] == [1.0, 1.0]
    assert set(right["templates"]) == {"single", "left", "bottom", "and", "left_of", "above"}
    assert all(value == 1.0 for value in right["templates"].values())
    assert all(part in (1.0, None) for part in right["parts"].values())
    assert right["templates_ci95"]["and"] == [1.0, 1.0] and right["templates_ci95"]["single"] == [None, None]
    assert wrong["exact_accuracy"] < 0.2  # no caption names the objects of the image it is paired with
    assert wrong["ci95"][0] <= wrong["exact_accuracy"] <= wrong["ci95"][1]
    assert right["clip_score"] > wrong["clip_score"] + 0.2  # the toy CLIP tells true captions from others
    assert right["toy_fid"] == pytest.approx(wrong["toy_fid"], rel=1e-6) and right["toy_fid"] > 0  # same images
    with open(os.path.join(truth, "toy_judge.json")) as f:
        assert json.load(f) == json.loads(json.dumps(right))
    assert right["settings"]["num_eval"] == len(TRUE_CAPTIONS)

    capsys.readouterr()
    both = judge.main([truth, unrecorded, "--text_path", os.path.join(truth, "subset.csv"), "--num_eval", "4", *FAST])
    assert [(r["n"], r["exact_accuracy"]) for r in both.values()] == [(4, 1.0), (4, 1.0)]
    out = capsys.readouterr().out
    assert "| metric | truth | unrecorded |" in out
    assert "| exact accuracy ↑ | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |" in out


def test_judges_a_folder_of_the_toy_generator(tmp_path):
    captions = str(tmp_path / "captions.csv")
    write_captions(captions, TRUE_CAPTIONS[:4])
    generate_date_clip.main(["--model", "toy", "--clip_model", "toy", "--device", "cpu", "--text_path", captions,
                             "--save_path", str(tmp_path / "gen"), "--steps", "2", "--bs", "4"])
    (folder,) = [str(p) for p in (tmp_path / "gen").iterdir()]
    result = judge.main([folder, *FAST])[folder]
    assert result["n"] == 4 and 0 <= result["exact_accuracy"] <= 1 and -1 <= result["clip_score"] <= 1
    assert os.path.isfile(os.path.join(folder, "toy_judge.json"))


def test_judges_every_copy_of_a_folder_with_several_images_per_caption(tmp_path):
    truth = rendered_folder(tmp_path / "truth", TRUE_CAPTIONS[:3])
    copies = str(tmp_path / "copies")  # <k>_<j>.png: copy 0 the true image, copy 1 the next caption's image
    os.makedirs(copies)
    shutil.copy(os.path.join(truth, "subset.csv"), copies)
    for k in range(3):
        shutil.copy(os.path.join(truth, f"{k}.png"), os.path.join(copies, f"{k}_0.png"))
        shutil.copy(os.path.join(truth, f"{(k + 1) % 3}.png"), os.path.join(copies, f"{k}_1.png"))
    result = judge.main([copies, *FAST])[copies]
    assert result["n"] == 6 and result["exact_accuracy"] == pytest.approx(0.5)


@pytest.mark.parametrize("case, fragments", [
    ("not toy captions", ["caption 0", "not a caption of the toy world", "toy world's captions"]),
    ("two equal objects", ["caption 1", "must differ"]),
    ("not toy images", ["64×64", "32×32"]),
    ("one image", ["1 image(s)", "at least 2"]),
])
def test_what_the_judge_refuses(tmp_path, capsys, case, fragments):
    folder = str(tmp_path / "folder")
    argv = [folder, *FAST]
    if case == "not toy captions":
        make_folder(folder, 3, seed=0)
    elif case == "two equal objects":
        make_folder(folder, 3, seed=0, captions=["a red circle", "a red circle and a red circle", "a blue square"])
    elif case == "not toy images":
        make_folder(folder, 3, seed=0, size=64, captions=TRUE_CAPTIONS)
    else:
        rendered_folder(folder, TRUE_CAPTIONS[:1])
    with pytest.raises(SystemExit) as exit_info:
        judge.main(argv)
    assert_one_line_error(capsys, exit_info, *fragments)
    assert not os.path.exists(os.path.join(folder, "toy_judge.json"))


def test_report_metrics_toy_table_and_paired_comparison(tmp_path, capsys, monkeypatch):
    truth = rendered_folder(tmp_path / "truth", TRUE_CAPTIONS)
    worse = rendered_folder(tmp_path / "worse", TRUE_CAPTIONS, seed=1)
    for index in (0, 3):  # two images replaced by their neighbour's: same captions, two wrong images
        shutil.copyfile(os.path.join(worse, f"{index + 1}.png"), os.path.join(worse, f"{index}.png"))
    argv = [worse, "--baseline", truth, "--metrics", "toy", "--num_eval", str(len(TRUE_CAPTIONS)), "--resamples",
            "500", "--num_workers", "0", "--out", str(tmp_path / "table.md")]
    rows = report.main(argv)
    by_name = {row["method"]: row for row in rows}
    assert by_name["truth"]["toy_exact"] == 1.0 and by_name["truth"]["is_baseline"]
    assert by_name["worse"]["toy_exact"] == pytest.approx(7 / 9)
    assert by_name["worse"]["toy_exact_diff"] == pytest.approx(-2 / 9)
    assert by_name["worse"]["toy_exact_win_rate"] == pytest.approx((7 * 0.5) / 9)
    assert by_name["worse"]["toy_exact_diff_low"] <= -2 / 9 <= by_name["worse"]["toy_exact_diff_high"]
    printed = capsys.readouterr().out
    assert "| Toy exact accuracy↑ |" in printed and "| worse | Toy exact accuracy | -0.222 [" in printed
    with np.load(os.path.join(worse, "toy_exact_scores.npz")) as saved:
        assert saved["scores"].tolist() == [0, 1, 1, 0, 1, 1, 1, 1, 1]

    def no_checker(*args, **kwargs):
        raise AssertionError("judged again instead of reusing the saved verdicts")

    monkeypatch.setattr(ExactChecker, "score_batch", no_checker)
    assert report.main(argv) == rows


def test_report_metrics_toy_refuses_other_captions(tmp_path, capsys):
    folder = str(tmp_path / "photos")
    make_folder(folder, 3, seed=0, captions=CAPTIONS)
    with pytest.raises(SystemExit) as exit_info:
        report.main([folder, "--metrics", "toy", "--num_eval", "3", "--out", str(tmp_path / "t.md")])
    assert_one_line_error(capsys, exit_info, folder, "caption 0", "not a caption of the toy world")
    assert not os.path.exists(os.path.join(folder, "toy_exact_scores.npz"))
