"""Output folders as a newcomer pushes on them: a record that only grows, captions counted, output paths checked before
anything loads (also by --dry_run), resume from another checkout or copy of the model, and two runs on one folder."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import generate_date
import generate_date_clip
from date.io import claims as claims_module
from date.io import outputs
from date.io.captions import read_captions, write_captions
from date.io.claims import Claims
from date.run.loading import TOY_MODELS
from tests.support.evaluation_helpers import assert_one_line_error

CAPTIONS = ["a red circle", "a blue square on the left", "a green triangle", "a white circle", "a red square",
            "a blue circle"]
FOLDER = "FIXED_scheduler_DDIM_steps_2_w_8.0_seed_6"


def argv_for(tmp_path, *extra, model="toy", captions=CAPTIONS):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "captions.csv"
    write_captions(str(path), captions)
    return ["--model", model, "--clip_model", "toy", "--device", "cpu", "--text_path", str(path),
            "--save_path", str(tmp_path / "out"), "--steps", "2", "--bs", "2", "--baseline", *extra]


def images_in(folder) -> list:
    return sorted(name for name in os.listdir(folder) if name.endswith(".png"))


def test_a_resume_with_fewer_captions_keeps_the_longer_record(tmp_path):
    folder = tmp_path / "out" / FOLDER
    generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "4"))
    generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "2"))
    assert read_captions(str(folder / "subset.csv")) == CAPTIONS[:4]
    assert images_in(folder) == ["0.png", "1.png", "2.png", "3.png"]
    generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "5"))
    assert read_captions(str(folder / "subset.csv")) == CAPTIONS[:5]


def test_the_plan_and_the_run_say_how_many_captions_of_the_file_are_used(tmp_path, capsys):
    generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "2", "--dry_run"))
    assert "(2 of 6 captions from " in capsys.readouterr().out
    generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "2"))
    assert "(2 of 6 captions from " in capsys.readouterr().err
    generate_date_clip.main(argv_for(tmp_path, "--dry_run"))
    out = capsys.readouterr().out
    assert "would generate 4 images (all 6 captions" in out and "2 already in the folder" in out
    assert out.strip().endswith(os.path.join(str(tmp_path / "out"), FOLDER))


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize("damage, message", [("file", "is a file, not a folder"), ("read-only", "is not writable"),
                                             ("corrupt config", "config.json (Expecting")])
def test_output_paths_that_cannot_work_are_one_line_before_loading(tmp_path, capsys, monkeypatch, damage, message,
                                                                   dry_run):
    argv = argv_for(tmp_path, *(["--dry_run"] if dry_run else []))
    if damage == "file":
        (tmp_path / "out").write_text("not a folder")
    elif damage == "read-only":  # os.access as a non-root user sees a read-only folder (tests may run as root)
        (tmp_path / "out").mkdir()
        real = os.access
        monkeypatch.setattr(outputs.os, "access", lambda p, mode: real(p, mode) and p != str(tmp_path / "out"))
    else:
        (tmp_path / "out" / FOLDER).mkdir(parents=True)
        (tmp_path / "out" / FOLDER / "config.json").write_text('{"settings": {')
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    monkeypatch.setattr("date.run.loop.load_pipeline", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(argv)
    assert_one_line_error(capsys, exit_info, message)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_the_dry_run_refuses_what_the_run_would(tmp_path, capsys):
    argv = argv_for(tmp_path, "--dry_run")
    argv.remove("--baseline")
    argv[argv.index("--clip_model"):argv.index("--clip_model") + 2] = []
    with pytest.raises(SystemExit) as exit_info:
        generate_date.main(argv + ["--h_model", "clip=toy", "--method", "ug", "--w", "1"])
    assert_one_line_error(capsys, exit_info, "--method ug", "w > 1")
    with pytest.raises(SystemExit) as exit_info:
        generate_date.main(argv + ["--skip_itrs=-5"])
    assert_one_line_error(capsys, exit_info, "must not contain negative steps")


def test_a_name_is_not_a_path(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(argv_for(tmp_path, "--name", "a/b", "--dry_run"))
    assert_one_line_error(capsys, exit_info, "--name 'a/b' is a suffix", "--save_path")


def test_a_caption_path_that_is_a_folder_says_so(tmp_path, capsys):
    argv = argv_for(tmp_path, "--dry_run")
    argv[argv.index("--text_path") + 1] = str(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(argv)
    assert_one_line_error(capsys, exit_info, "is a folder; expected a caption file")


def test_resume_from_another_checkout_or_a_copied_model(tmp_path, capsys):
    """The record names the model by its files, not its path: `--model toy`, the same folder copied elsewhere (another
    clone, cluster scratch) resume one folder; a model with other weights does not."""
    folder = tmp_path / "out" / FOLDER
    generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "2"))
    copy = tmp_path / "scratch" / "sd"
    shutil.copytree(TOY_MODELS["model"], copy)
    generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "4", model=str(copy)))
    assert images_in(folder) == ["0.png", "1.png", "2.png", "3.png"]
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "5", model=str(copy)))
    assert_one_line_error(capsys, exit_info, "holds images made with other settings (model: 'local:sha256:")
    recorded = json.loads((folder / "config.json").read_text())["settings"]["model"]
    assert recorded.startswith("local:sha256:") and str(tmp_path) not in recorded


def test_a_second_run_on_the_same_folder_leaves_it_the_images_it_holds(tmp_path, capsys):
    """Image 1 is claimed by another live run: this one makes the others, says so, and leaves the claim alone."""
    folder = tmp_path / "out" / FOLDER
    folder.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / "1.png.claim").write_text(f"{claims_module._HOST} {other.pid}\n")
        generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "4"))
        assert images_in(folder) == ["0.png", "2.png", "3.png"]
        assert "1 images (first: 1.png) are being made by another run" in capsys.readouterr().err
        assert (folder / "1.png.claim").exists()
    finally:
        other.kill()
        other.wait()
    generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "4"))  # its process is gone: the claim is stale
    assert images_in(folder) == ["0.png", "1.png", "2.png", "3.png"]
    assert not list(folder.glob("*.claim"))


def test_claims_split_a_queue_and_respect_other_hosts(tmp_path):
    folder = str(tmp_path)
    first, second = Claims(folder), Claims(folder)
    assert first.take([0, 1, 2, 3], 2) == ([0, 1], [2, 3])
    assert second.take([0, 1, 2, 3], 2) == ([2, 3], [])
    assert second.elsewhere == {0, 1}
    (tmp_path / "5.png.claim").write_text("another-host 1\n")
    assert second.take([5], 1) == ([], [])
    first.release_all()
    assert second.take([0, 1], 2) == ([0, 1], [])
    with Claims(folder) as third:
        assert third.take([4], 1) == ([4], [])
    assert not (tmp_path / "4.png.claim").exists()


def test_several_images_per_caption(tmp_path, capsys):
    """`--images_per_caption 2`: `<k>_<j>.png`, copy 0 the image of a one-per-caption run, copies different, the same
    files at any batch size; a folder of another count is not resumed; evaluation reads the layout."""
    one = tmp_path / "one"
    generate_date_clip.main(argv_for(one, "--max_cnt", "2"))
    generate_date_clip.main(argv_for(tmp_path, "--max_cnt", "2", "--images_per_caption", "2", "--bs", "3"))
    folder = tmp_path / "out" / FOLDER
    assert images_in(folder) == ["0_0.png", "0_1.png", "1_0.png", "1_1.png"]
    assert (folder / "1_0.png").read_bytes() == (one / "out" / FOLDER / "1.png").read_bytes()
    assert (folder / "1_0.png").read_bytes() != (folder / "1_1.png").read_bytes()
    other = tmp_path / "bs1"
    generate_date_clip.main(argv_for(other, "--max_cnt", "2", "--images_per_caption", "2", "--bs", "1"))
    for name in images_in(folder):
        assert (folder / name).read_bytes() == (other / "out" / FOLDER / name).read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        generate_date_clip.main(argv_for(one, "--max_cnt", "2", "--images_per_caption", "3"))
    assert_one_line_error(capsys, exit_info, "images_per_caption: 1 -> 3")

    from evaluation.image_folder import captioned_images
    paths, captions = captioned_images(str(folder), 2)
    assert [os.path.basename(p) for p in paths] == ["0_0.png", "0_1.png", "1_0.png", "1_1.png"]
    assert captions == [CAPTIONS[0], CAPTIONS[0], CAPTIONS[1], CAPTIONS[1]]
    (folder / "5.png").write_bytes((folder / "0_0.png").read_bytes())
    with pytest.raises(Exception, match="mixes <k>.png and <k>_<j>.png"):
        captioned_images(str(folder), 2)
