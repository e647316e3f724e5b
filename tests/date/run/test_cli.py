"""The generation command end to end, in process (fast) and under torchrun (many processes)."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import generate_date_clip
from date.io.loading import model_identity
from date.io.seeding import image_generator

from tests.support.paths import REPO as ROOT
LONG = "a very long caption " + " ".join(f"word{i}" for i in range(100))
CAPTIONS = ["a red circle", "two dogs playing in the snow", LONG, "a yellow triangle above a blue square"]


def write_csv(path, rows, column="caption"):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", column])
        writer.writerows([i, r] for i, r in enumerate(rows))
    return str(path)


@pytest.fixture
def captions_csv(tmp_path):
    return write_csv(tmp_path / "captions.csv", CAPTIONS)


def base_args(tiny_dirs, captions_csv, save_path, *extra):
    return ["--model", tiny_dirs["sd"], "--clip_model", tiny_dirs["clip"], "--text_path", captions_csv,
            "--save_path", str(save_path), "--steps", "3", "--skip_freq", "1", "--bs", "2", "--device", "cpu", *extra]


def run_cli(monkeypatch, argv):
    monkeypatch.setattr(sys, "argv", ["generate_date_clip.py", *argv])
    generate_date_clip.main()


def pixels(path):
    return np.asarray(Image.open(path))


def assert_same_image(path_a, path_b_or_pixels):
    """The same image up to float rounding: DATE's update runs the denoiser on a batch whose size follows --bs and the
    memory plan, which changes floats by ~1e-6, so a PNG value may land one level of 255 apart (a wrong seed or a
    missed update moves values by tens of levels)."""
    a = pixels(path_a).astype(int)
    b = (pixels(path_b_or_pixels) if isinstance(path_b_or_pixels, str) else path_b_or_pixels).astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01, (np.abs(a - b).max(), (a != b).mean())


def out_dir(save_path, prefix="DATE_CLIP", name="t", seed=6):
    return os.path.join(save_path, f"{prefix}_scheduler_DDIM_steps_3_w_8.0_seed_{seed}" + (f"_name_{name}" if name else ""))


def test_generates_images_config_and_captions(tiny_dirs, captions_csv, tmp_path, monkeypatch, capsys):
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path / "out", "--name", "t"))
    folder = out_dir(tmp_path / "out")
    assert sorted(os.listdir(folder)) == ["0.png", "1.png", "2.png", "3.png", "config.json", "subset.csv"]
    assert pixels(os.path.join(folder, "0.png")).shape == (16, 16, 3)
    with open(os.path.join(folder, "subset.csv"), newline="") as f:
        assert [row["caption"] for row in csv.DictReader(f)] == CAPTIONS

    config = json.load(open(os.path.join(folder, "config.json")))
    assert config["settings"]["update"]["update_steps"] == [0, 1, 2]
    assert config["args"]["lr_upt_prompt"] == 0.5 and config["device"] == "cpu" and "torch" in config["versions"]
    assert "caption 2 is longer than 77 tokens" in capsys.readouterr().err


def test_resume_skips_finished_images_and_redoes_missing_ones(tiny_dirs, captions_csv, tmp_path, monkeypatch):
    argv = base_args(tiny_dirs, captions_csv, tmp_path, "--name", "t")
    run_cli(monkeypatch, argv)
    folder = out_dir(tmp_path)
    first = {f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in ["0.png", "2.png", "3.png"]}
    original = pixels(os.path.join(folder, "1.png"))
    os.remove(os.path.join(folder, "1.png"))
    run_cli(monkeypatch, argv)
    assert {f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in first} == first
    assert_same_image(os.path.join(folder, "1.png"), original)
    # another update size in the same folder would mix two methods: refused
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, argv + ["--lr_upt_prompt", "0.2"])
    assert exit_info.value.code == 2


def test_images_do_not_depend_on_batch_size(tiny_dirs, captions_csv, tmp_path, monkeypatch):
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "a", "--bs", "1"))
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "b", "--bs", "3"))
    for k in range(4):
        assert_same_image(os.path.join(out_dir(tmp_path, name="a"), f"{k}.png"),
                          os.path.join(out_dir(tmp_path, name="b"), f"{k}.png"))


def test_baseline_is_the_stock_pipeline_and_needs_no_scorer(tiny_dirs, captions_csv, tmp_path, monkeypatch):
    argv = base_args(tiny_dirs, captions_csv, tmp_path, "--name", "t", "--baseline", "--max_cnt", "2", "--num_skip", "1")
    argv[argv.index("--clip_model") + 1] = str(tmp_path / "no_such_clip")
    run_cli(monkeypatch, argv)
    folder = out_dir(tmp_path, prefix="FIXED")
    assert sorted(f for f in os.listdir(folder) if f.endswith(".png")) == ["1.png"]
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["sd"])
    stock = pipe([CAPTIONS[1]], num_inference_steps=3, guidance_scale=8.0, generator=[image_generator(6, 1)]).images[0]
    assert np.array_equal(pixels(os.path.join(folder, "1.png")), np.asarray(stock))


def test_date_changes_images(tiny_dirs, captions_csv, tmp_path, monkeypatch):
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "t", "--max_cnt", "1"))
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "t", "--max_cnt", "1", "--baseline"))
    date_image = pixels(os.path.join(out_dir(tmp_path), "0.png")).astype(int)
    fixed_image = pixels(os.path.join(out_dir(tmp_path, prefix="FIXED"), "0.png")).astype(int)
    assert np.abs(date_image - fixed_image).max() > 0


def test_memory_flags_keep_the_images_and_the_folder(tiny_dirs, captions_csv, tmp_path, monkeypatch):
    """--update_bs, --grad_ckpt and --lean change memory, not images: same pixels, and they may resume one folder."""
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "a", "--bs", "3"))
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "b", "--bs", "3", "--lean", "--max_cnt", "2"))
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "b", "--bs", "3", "--update_bs", "2"))
    for k in range(4):
        assert_same_image(os.path.join(out_dir(tmp_path, name="a"), f"{k}.png"),
                          os.path.join(out_dir(tmp_path, name="b"), f"{k}.png"))


def test_fast_mode_has_its_own_folder_and_other_images(tiny_dirs, captions_csv, tmp_path, monkeypatch):
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "t", "--max_cnt", "1"))
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "t", "--max_cnt", "1",
                                   "--x0_decoder", tiny_dirs["taesd"]))
    fast = os.path.join(tmp_path, "DATE_CLIP_scheduler_DDIM_steps_3_w_8.0_seed_6_x0_taesd_name_t")

    assert json.load(open(os.path.join(fast, "config.json")))["settings"]["update"]["x0_decoder"] == model_identity(tiny_dirs["taesd"])
    assert not np.array_equal(pixels(os.path.join(fast, "0.png")), pixels(os.path.join(out_dir(tmp_path), "0.png")))


BAD_INPUTS = {
    "missing caption file": (["--text_path", "/nonexistent/captions.csv"], "caption file not found"),
    "unknown scheduler": (["--scheduler", "HEUN"], "invalid choice"),
    "malformed skip_itrs": (["--skip_itrs", "0-x-20"], "--skip_itrs"),
    "bad interval": (["--skip_intervals", "40-10"], "--skip_intervals"),
    "negative batch size": (["--bs", "-1"], "--bs"),
    "negative count": (["--max_cnt", "-5"], "--max_cnt"),
    "zero steps": (["--steps", "0"], "--steps"),
    "missing model dir": (["--model", "/nonexistent/sd"], "model directory not found"),
    "missing scorer dir": (["--clip_model", "./no/such/clip"], "model directory not found"),
    "model dir without a pipeline": (["--model", ROOT], "cannot load"),
    "no gpu": (["--device", "cuda"], "no CUDA GPU"),
    "zero micro-batch": (["--update_bs", "0"], "--update_bs"),
    "word micro-batch": (["--update_bs", "many"], "--update_bs"),
    "lean with a micro-batch": (["--lean", "--update_bs", "2"], "--lean"),
    "missing tiny decoder dir": (["--x0_decoder", "./no/such/taesd"], "model directory not found"),
    "tiny decoder without updates": (["--baseline", "--x0_decoder", "toy"], "makes none"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_error_line_and_writes_nothing(case, tiny_dirs, captions_csv, tmp_path, monkeypatch, capsys):
    extra, message = BAD_INPUTS[case]
    if case == "no gpu" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path / "out") + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("rows, column, message", [(CAPTIONS, "text", "no 'caption' column"), (["ok", "  "], "caption", "empty")])
def test_bad_caption_file(rows, column, message, tiny_dirs, tmp_path, monkeypatch, capsys):
    path = write_csv(tmp_path / "bad.csv", rows, column)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, base_args(tiny_dirs, path, tmp_path / "out"))
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_torchrun_shards_prompts_with_identical_images(tiny_dirs, captions_csv, tmp_path, monkeypatch):
    run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--name", "one"))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           os.path.join(ROOT, "generate_date_clip.py"), *base_args(tiny_dirs, captions_csv, tmp_path, "--name", "two")]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for k in range(4):
        assert_same_image(os.path.join(out_dir(tmp_path, name="one"), f"{k}.png"),
                          os.path.join(out_dir(tmp_path, name="two"), f"{k}.png"))


def test_date_ir_end_to_end(tiny_dirs, captions_csv, tmp_path, monkeypatch):
    """generate_date_ir.py on a small ImageReward checkpoint in the official file layout."""
    import generate_date_ir
    from tests.support.image_reward_recipe import save_bert_tokenizer, save_checkpoint_dir

    ir_dir, tokenizer_dir = save_checkpoint_dir(str(tmp_path / "ir")), save_bert_tokenizer(str(tmp_path / "bert"))
    argv = base_args(tiny_dirs, captions_csv, tmp_path / "out", "--name", "t", "--max_cnt", "2")
    argv = argv[:2] + argv[4:]  # no --clip_model for this script
    monkeypatch.setattr(sys, "argv", ["generate_date_ir.py", *argv, "--ir_model", ir_dir, "--ir_tokenizer", tokenizer_dir])
    generate_date_ir.main()
    folder = out_dir(tmp_path / "out", prefix="DATE_IR")
    assert sorted(f for f in os.listdir(folder) if f.endswith(".png")) == ["0.png", "1.png"]
    fixed = pixels(os.path.join(folder, "0.png"))
    argv_baseline = [*argv, "--baseline"]
    monkeypatch.setattr(sys, "argv", ["generate_date_ir.py", *argv_baseline])
    generate_date_ir.main()
    assert np.abs(pixels(os.path.join(out_dir(tmp_path / "out", prefix="FIXED"), "0.png")).astype(int) - fixed).max() > 0


PIPELINE_DEFAULT_W = {"sdxl": 5.0, "sd3": 7.0, "flux": 3.5, "pixart": 4.5}


@pytest.mark.parametrize("family", sorted(PIPELINE_DEFAULT_W))
def test_every_family_runs_from_a_local_folder(family, family_dirs, tiny_dirs, captions_csv, tmp_path, monkeypatch):
    argv = ["--model", family_dirs[family], "--clip_model", tiny_dirs["clip"], "--text_path", captions_csv,
            "--save_path", str(tmp_path / "out"), "--steps", "2", "--skip_freq", "1", "--bs", "2", "--max_cnt", "2",
            "--size", "16", "--device", "cpu"]
    run_cli(monkeypatch, argv + (["--update_pooled"] if family != "pixart" else []))
    tmp_path = tmp_path / "out"
    (folder,) = os.listdir(tmp_path)

    settings = json.load(open(os.path.join(tmp_path, folder, "config.json")))["settings"]
    assert folder.endswith(f"_model_{family}") and f"_w_{PIPELINE_DEFAULT_W[family]}_" in folder  # the pipeline's default
    assert settings["w"] == PIPELINE_DEFAULT_W[family] and settings["size"] == 16
    assert settings["pipeline"] == json.load(open(os.path.join(family_dirs[family], "model_index.json")))["_class_name"]
    assert settings["update"].get("update_pooled", False) == (family != "pixart")
    assert pixels(os.path.join(tmp_path, folder, "1.png")).shape == (16, 16, 3)


def test_unsupported_pipeline_and_unfit_settings_are_refused(family_dirs, tiny_dirs, captions_csv, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "model_index.json").write_text('{"_class_name": "KandinskyPipeline"}')
    cases = [(["--model", str(other)], "does not support KandinskyPipeline"),
             (["--model", family_dirs["flux"], "--scheduler", "DDIM"], "flow-matching"),
             (["--model", family_dirs["flux"], "--fp16"], "FLUX does not run in fp16"),
             (["--fp16", "--dtype", "bf16"], "disagree")]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path / "out") + extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0], err
        assert not (tmp_path / "out").exists()


def test_seeds_give_different_images_and_old_seeding_folders_are_refused(tiny_dirs, captions_csv, tmp_path, monkeypatch,
                                                                          capsys):
    for seed in ("1", "2"):
        run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--baseline", "--max_cnt", "1",
                                       "--generate_seed", seed))
    one, two = (pixels(os.path.join(out_dir(tmp_path, prefix="FIXED", name=None, seed=s), "0.png")).astype(int) for s in (1, 2))
    assert np.abs(one - two).mean() > 10  # other noise, not a rounding difference
    # a folder whose record predates the seeding rule (every seed gave the same noise) is not resumed
    config_path = os.path.join(out_dir(tmp_path, prefix="FIXED", name=None, seed=1), "config.json")
    config = json.load(open(config_path))
    del config["settings"]["seeding"]
    json.dump(config, open(config_path, "w"))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, base_args(tiny_dirs, captions_csv, tmp_path, "--baseline", "--max_cnt", "1",
                                       "--generate_seed", "1"))
    assert exit_info.value.code == 2 and "seeded by an earlier rule" in capsys.readouterr().err
