"""clip_score.py through open_clip's real factory, with a tiny registered architecture and random weights."""
import os
import re

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from evaluation import clip_score
from evaluation.image_folder import load_rgb
from tests.support.evaluation_helpers import (
    CAPTIONS,
    TINY_CLIP,
    assert_one_line_error,
    make_folder,
    tiny_clip_checkpoint,
    tiny_clip_dir,
)


def _expected_scores(checkpoint: str, paths, captions) -> np.ndarray:
    """Cosine similarities computed directly with open_clip, image i against caption i."""
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP, pretrained=checkpoint)
    tokenizer = open_clip.get_tokenizer(TINY_CLIP)
    with torch.no_grad():
        images = model.encode_image(torch.stack([preprocess(load_rgb(p)) for p in paths]))
        texts = model.encode_text(tokenizer(list(captions)))
    return F.cosine_similarity(images, texts, dim=-1).numpy()


def test_scores_pair_each_image_with_its_caption(tmp_path, capsys):
    folder = str(tmp_path / "gen")
    paths = make_folder(folder, 6, seed=0)
    checkpoint = tiny_clip_checkpoint()
    returned = clip_score.main(["--img_path", folder, "--num_eval", "5", "--bs", "2", "--model", TINY_CLIP,
                                "--pretrained", checkpoint, "--num_workers", "0"])
    expected = _expected_scores(checkpoint, paths[:5], CAPTIONS[:5])
    np.testing.assert_allclose(returned, expected, atol=1e-5)
    assert not np.allclose(expected, _expected_scores(checkpoint, paths[:5], CAPTIONS[1:6]), atol=1e-3)
    with np.load(os.path.join(folder, "clip_scores.npz")) as saved:
        np.testing.assert_array_equal(saved["scores"], returned)
        assert saved["scores"].dtype == np.float32
    printed = re.search(r"Average CLIP score: (-?[0-9.]+)", capsys.readouterr().out)
    assert printed and float(printed.group(1)) == pytest.approx(expected.mean(), abs=1e-5)


def test_local_model_directory_and_explicit_caption_file(tmp_path, capsys):
    """`--model DIR` (config + weights, nothing registered) gives the same scores; `--text_path` captions a folder
    that has no subset.csv of its own (official DATE folders), and the run says which file it used."""
    folder = str(tmp_path / "gen")
    paths = make_folder(folder, 3, seed=1)
    os.remove(os.path.join(folder, "subset.csv"))
    captions_path = tmp_path / "other.csv"
    captions_path.write_text("caption\nzebra\ngiraffe\nelephant\n")
    returned = clip_score.main(["--img_path", folder, "--num_eval", "3", "--text_path", str(captions_path),
                                "--model", tiny_clip_dir(str(tmp_path)), "--num_workers", "0"])
    expected = _expected_scores(tiny_clip_checkpoint(), paths, ["zebra", "giraffe", "elephant"])
    np.testing.assert_allclose(returned, expected, atol=1e-5)
    assert f"captions of {folder}: {captions_path}" in capsys.readouterr().err


def test_captions_come_from_the_folders_record_never_from_elsewhere(tmp_path, capsys, monkeypatch):
    """No ./subset.csv picked up by chance for a folder without a record, and a --text_path that disagrees with the
    folder's record is refused: images are never scored against another folder's captions."""
    folder = str(tmp_path / "gen")
    make_folder(folder, 3, seed=1)
    other = tmp_path / "other.csv"
    other.write_text("caption\nzebra\ngiraffe\nelephant\n")
    args = ["--img_path", folder, "--num_eval", "3", "--model", TINY_CLIP, "--pretrained", tiny_clip_checkpoint()]
    with pytest.raises(SystemExit) as exit_info:
        clip_score.main(args + ["--text_path", str(other)])
    assert_one_line_error(capsys, exit_info, "disagrees with", "first at index 0")
    os.remove(os.path.join(folder, "subset.csv"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "subset.csv").write_text("caption\nzebra\ngiraffe\nelephant\n")
    with pytest.raises(SystemExit) as exit_info:
        clip_score.main(args)
    assert_one_line_error(capsys, exit_info, "has no subset.csv", "give --text_path")


@pytest.mark.parametrize("case, fragments", [
    ("missing folder", ["image folder not found"]),
    ("too few images", ["fewer than --num_eval 7"]),
    ("fewer captions", ["has 6 captions but --num_eval is 7"]),
    ("images beyond captions", ["captions/images count mismatch", "images of caption 7"]),
    ("unreadable image", ["cannot read image", "1.png"]),
    ("unknown model", ["unknown OpenCLIP model"]),
    ("missing checkpoint", ["neither a pretrained tag"]),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, case, fragments):
    folder = str(tmp_path / "gen")
    make_folder(folder, 8 if case in ("fewer captions", "images beyond captions") else 6, seed=0)
    args = {"--img_path": folder, "--num_eval": "6", "--model": TINY_CLIP, "--pretrained": tiny_clip_checkpoint()}
    if case == "missing folder":
        args["--img_path"] = str(tmp_path / "nowhere")
    elif case in ("too few images", "fewer captions"):
        args["--num_eval"] = "7"
    elif case == "unreadable image":
        (tmp_path / "gen" / "1.png").write_bytes(b"garbage")
    elif case == "unknown model":
        args["--model"] = "ViT-Nope"
    elif case == "missing checkpoint":
        args["--pretrained"] = str(tmp_path / "missing.pt")
    with pytest.raises(SystemExit) as excinfo:
        clip_score.main([x for pair in args.items() for x in pair] + ["--num_workers", "0"])
    assert_one_line_error(capsys, excinfo, *fragments)
    assert not os.path.exists(os.path.join(folder, "clip_scores.npz"))
