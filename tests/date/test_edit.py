"""Text-guided editing (`date.edit`, `edit_date.py`): the edit-friendly DDPM inversion against the official code's
recorded outputs, exact reconstruction, DATE during regeneration, and the command end to end on the tiny pipeline."""
import copy
import csv
import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

import date
import edit_date
from date import editing
from date.scorers.clip import CLIPScorer
from tests.support.paths import FIXTURES, REPO
from tests.support.tiny_models import tiny_pipeline

_spec = importlib.util.spec_from_file_location("ddpm_fixture_tool", os.path.join(REPO, "tools", "make_ddpm_inversion_fixture.py"))
fixture_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture_tool)


def relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """‖ours − reference‖ / ‖reference‖."""
    return float((ours.double() - reference.double()).norm() / reference.double().norm())


@pytest.fixture(scope="module")
def pipe(tiny_dirs):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["sd"], safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def scorer(tiny_dirs):
    return CLIPScorer.from_pretrained(tiny_dirs["clip"])


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-9), (torch.float32, 5e-5)])
def test_matches_the_official_code(pipe, dtype, tolerance):
    """Ours with `zero_final_noise=True` (the official behaviour) against inbarhub/DDPM_inversion run unmodified
    (tools/make_ddpm_inversion_fixture.py): noise maps, x_t and regenerated latents. In fp64 the two agree to far
    below 1e-5 (so any difference would be the method's); in fp32 to float rounding, which guidance 15 amplifies to
    about 1e-5 (the official code run with this project's diffusers differs from its own record by as much)."""
    with open(os.path.join(FIXTURES, "ddpm_inversion_reference.json")) as f:
        fixture = json.load(f)
    assert fixture_tool.fingerprint(pipe.unet.state_dict()) == fixture["unet_fingerprint"]
    assert fixture_tool.fingerprint(pipe.text_encoder.state_dict()) == fixture["text_encoder_fingerprint"]
    assert torch.allclose(torch.tensor(fixture["source_latents"]).reshape(fixture["latent_shape"]),
                          fixture_tool.source_latents(), atol=1e-7)
    w0 = fixture_tool.source_latents().to(dtype)
    pipe = copy.deepcopy(pipe).to(dtype=dtype)
    name = str(dtype).removeprefix("torch.")
    for case in fixture["cases"]:
        inversion = editing.invert(pipe, w0, case["source_prompt"], case["steps"], case["cfg_src"], case["eta"],
                                   torch.Generator().manual_seed(case["seed"]), zero_final_noise=True)
        if dtype == torch.float64:
            assert [int(t) for t in inversion.timesteps] == case[name]["timesteps"]
            assert relative(inversion.zs, torch.tensor(case[name]["zs"], dtype=torch.float64).reshape(inversion.zs.shape)) < tolerance
        for target in case[name]["regenerated"]:
            start = inversion.start(target["skip"])
            assert relative(start, torch.tensor(target["start"], dtype=torch.float64).reshape(start.shape)) < tolerance
            out = editing.regenerate(pipe, inversion, target["target_prompt"], None, target["skip"], target["cfg_tar"],
                                     output_type="latent").images
            assert out.dtype == dtype
            reference = torch.tensor(target["latents"], dtype=torch.float64).reshape(out.shape)
            assert relative(out, reference) < tolerance, (case["source_prompt"], target["target_prompt"])
        # Our default keeps the last step's noise map, which the official code zeroes; the others are the same.
        kept = editing.invert(pipe, w0, case["source_prompt"], case["steps"], case["cfg_src"], case["eta"],
                              torch.Generator().manual_seed(case["seed"]))
        assert torch.equal(kept.zs[1:], inversion.zs[1:]) and kept.zs[0].abs().max() > 0


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_reconstruction_is_exact(tiny_dirs, prediction_type):
    """Target = source prompt and cfg_tar = cfg_src, no DATE: regeneration lands on the source latents."""
    pipe = tiny_pipeline(tiny_dirs["tokenizer"], prediction_type=prediction_type)
    x0 = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(3))
    prompts = ["a red circle", "a photo of a dog"]
    generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    inversion = editing.invert(pipe, x0, prompts, 20, 3.5, 1.0, generators)
    for skip in (0, 7):
        out = editing.regenerate(pipe, inversion, prompts, None, skip, 3.5, output_type="latent").images
        assert relative(out, x0) < 1e-4
    # The official zeroed last noise map leaves the last step σ_1·z_1 away.
    zeroed = editing.invert(pipe, x0, prompts, 20, 3.5, 1.0, [torch.Generator().manual_seed(1),
                                                               torch.Generator().manual_seed(2)], zero_final_noise=True)
    out = editing.regenerate(pipe, zeroed, prompts, None, 7, 3.5, output_type="latent").images
    assert relative(out, x0) > 1e-3


def test_image_b_does_not_depend_on_the_batch(pipe):
    x0 = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(4))
    both = editing.invert(pipe, x0, ["a cat", "a dog"], 10, 3.5, 1.0,
                          [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
    alone = editing.invert(pipe, x0[1:], ["a dog"], 10, 3.5, 1.0, [torch.Generator().manual_seed(2)])
    assert torch.allclose(both.zs[:, 1:], alone.zs, atol=1e-4) and torch.allclose(both.xts[:, 1:], alone.xts, atol=1e-5)


def test_date_updates_the_target_embedding_during_regeneration(pipe, scorer):
    image = torch.rand((1, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    common = dict(num_inference_steps=12, skip=4, cfg_src=3.5, cfg_tar=7.5, output_type="latent")
    plain = date.edit(pipe, image, "a red circle", "a blue circle", None,
                      generator=torch.Generator().manual_seed(5), **common)
    zero = date.edit(pipe, image, "a red circle", "a blue circle", scorer, lr_upt_prompt=0.0,
                     generator=torch.Generator().manual_seed(5), **common)
    assert torch.equal(plain.images, zero.images)
    dated = date.edit(pipe, image, "a red circle", "a blue circle", scorer, skip_freq=3, lr_upt_prompt=0.5,
                      trajectory=True, generator=torch.Generator().manual_seed(5), **common)
    assert [step.step_index for step in dated.trajectory] == [0, 3, 6]  # the 8 regeneration steps, every 3rd
    assert (dated.images - plain.images).abs().max() > 1e-3
    assert torch.equal(dated.inversion.zs, plain.inversion.zs)  # DATE changes the regeneration only


def test_refuses_what_it_cannot_edit(pipe):
    x0 = torch.zeros((1, 4, 8, 8))
    with pytest.raises(ValueError, match="eta"):
        editing.invert(pipe, x0, "a cat", 10, eta=0.0)
    inversion = editing.invert(pipe, x0, "a cat", 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="skip"):
        editing.regenerate(pipe, inversion, "a dog", None, skip=10)
    with pytest.raises(ValueError, match="cfg_tar"):
        editing.regenerate(pipe, inversion, "a dog", None, skip=2, guidance_scale=0.5)


# --- the command ---------------------------------------------------------------------------------------------------

def write_edits(folder, rows, sizes=(16, 16)):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, size in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(os.path.join(folder, f"src{k}.png"))
    path = os.path.join(folder, "edits.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "source_prompt", "target_prompt"])
        writer.writerows(rows)
    return path


def run_edit(monkeypatch, tiny_dirs, edits, save, *flags):
    monkeypatch.setattr(sys, "argv", ["edit_date.py", "--model", tiny_dirs["sd"], "--edits", edits, "--steps", "10",
                                      "--skip", "3", "--device", "cpu", "--save_path", str(save), *flags])
    edit_date.main()


def test_command_reconstructs_the_source(monkeypatch, tiny_dirs, tmp_path, pipe, capsys):
    """--baseline, target = source prompt, cfg_tar = cfg_src: the saved image is the VAE round trip of the source."""
    edits = write_edits(tmp_path / "in", [["src0.png", "a red circle", "a red circle"],
                                          ["src1.png", "a photo of a dog", "a photo of a dog"]], sizes=(16, 24))
    run_edit(monkeypatch, tiny_dirs, edits, tmp_path / "out", "--baseline", "--cfg_tar", "3.5", "--bs", "2")
    assert "resized to the model's 16×16" in capsys.readouterr().err  # src1 is 24×24
    folder = tmp_path / "out" / "EDIT_N_10_skip_3_FIXED_scheduler_DDIM_steps_7_w_3.5_seed_6"
    assert sorted(os.listdir(folder)) == ["0.png", "1.png", "config.json", "edits.csv", "subset.csv"]
    config = json.load(open(folder / "config.json"))
    assert config["settings"]["edit"] == {"method": "edit-friendly DDPM inversion", "inversion_steps": 10, "skip": 3,
                                          "cfg_src": 3.5, "cfg_tar": 3.5, "eta": 1.0, "zero_final_noise": False}
    for k in range(2):
        source = Image.open(tmp_path / "in" / f"src{k}.png")
        with torch.no_grad():
            latents = editing.encode_image(pipe, source)
            round_trip = pipe.image_processor.postprocess(pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample,
                                                          output_type="np")[0]
        saved = np.asarray(Image.open(folder / f"{k}.png")).astype(int)
        assert np.abs(saved - np.round(round_trip * 255).astype(int)).max() <= 1


def test_command_with_date_resumes_and_refuses_other_edits(monkeypatch, tiny_dirs, tmp_path):
    edits = write_edits(tmp_path / "in", [["src0.png", "a red circle", "a blue circle"],
                                          ["src1.png", "", "a photo of a dog"]])
    flags = ("--h_model", f"clip={tiny_dirs['clip']}", "--skip_freq", "2", "--name", "t")
    run_edit(monkeypatch, tiny_dirs, edits, tmp_path / "out", *flags)
    folder = tmp_path / "out" / "EDIT_N_10_skip_3_DATE_CLIP_scheduler_DDIM_steps_7_w_15.0_seed_6_name_t"
    assert json.load(open(folder / "config.json"))["settings"]["update"]["update_steps"] == [0, 2, 4, 6]
    first = np.asarray(Image.open(folder / "0.png"))
    os.remove(folder / "1.png")
    run_edit(monkeypatch, tiny_dirs, edits, tmp_path / "out", *flags)  # resumes: only 1.png is made again
    assert np.array_equal(np.asarray(Image.open(folder / "0.png")), first) and (folder / "1.png").exists()
    other = write_edits(tmp_path / "other", [["src0.png", "a red square", "a blue circle"]])
    with pytest.raises(SystemExit) as stop:
        run_edit(monkeypatch, tiny_dirs, other, tmp_path / "out", *flags)
    assert stop.value.code == 2


@pytest.mark.parametrize("rows, flags, message", [
    ([["missing.png", "a cat", "a dog"]], (), "image not found"),
    ([["bad.png", "a cat", "a dog"]], (), "cannot read image"),
    ([["src0.png", "a cat", " "]], (), "empty target_prompt"),
    ([["src0.png", "a cat", "a dog"]], ("--skip", "10"), "leaves none"),
    ([["src0.png", "a cat", "a dog"]], ("--w", "3"), "--cfg_tar"),
    ([["src0.png", "a cat", "a dog"]], ("--cfg_tar", "0.5"), "≥ 1"),
])
def test_command_errors_are_one_line(monkeypatch, tiny_dirs, tmp_path, capsys, rows, flags, message):
    edits = write_edits(tmp_path, rows)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit) as stop:
        run_edit(monkeypatch, tiny_dirs, edits, tmp_path / "out", *flags)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_missing_column_and_dry_run(monkeypatch, tiny_dirs, tmp_path, capsys):
    path = tmp_path / "edits.csv"
    path.write_text("image,prompt\na.png,a cat\n")
    with pytest.raises(SystemExit):
        run_edit(monkeypatch, tiny_dirs, str(path), tmp_path / "out")
    assert "no 'source_prompt', 'target_prompt' column" in capsys.readouterr().err
    edits = write_edits(tmp_path / "in", [["src0.png", "a cat", "a dog"]])
    run_edit(monkeypatch, tiny_dirs, edits, tmp_path / "out", "--dry_run", "--h_model", f"clip={tiny_dirs['clip']}")
    out = capsys.readouterr().out
    assert "would edit 1 of 1 images" in out and "updates at regeneration steps [0]" in out
    assert not (tmp_path / "out").exists()


def test_ti2i_yaml_to_edits_csv(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import ti2i_to_csv

    (tmp_path / "data" / "imgs").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "imgs" / "horse.png")
    (tmp_path / "data" / "bench.yaml").write_text(
        "- init_img: /imgs/horse.png\n  source_prompt: a photo of a horse\n  target_prompts:\n"
        "  - a photo of a zebra\n  - a sketch of a horse\n- init_img: imgs/horse.png\n  target_prompts: [a cat]\n")
    out = tmp_path / "out" / "edits.csv"
    ti2i_to_csv.main([str(tmp_path / "data" / "bench.yaml"), "--out", str(out), "--check"])
    edits = edit_date.read_edits(str(out))
    assert [(e.source_prompt, e.target_prompt) for e in edits] == [
        ("a photo of a horse", "a photo of a zebra"), ("a photo of a horse", "a sketch of a horse"), ("", "a cat")]
    assert all(os.path.samefile(e.image, tmp_path / "data" / "imgs" / "horse.png") for e in edits)
    (tmp_path / "bad.yaml").write_text("init_img: x\n")
    with pytest.raises(SystemExit) as stop:
        ti2i_to_csv.main([str(tmp_path / "bad.yaml"), "--out", str(out)])
    assert stop.value.code == 2


def test_images_are_prepared_as_the_official_load_512():
    """The central square, resized (bicubic), in [0, 1]."""
    rng = np.random.default_rng(1)
    wide = Image.fromarray(rng.integers(0, 256, (20, 32, 3), dtype=np.uint8))
    prepared = editing.square(wide, 16)
    expected = wide.crop((6, 0, 26, 20)).resize((16, 16), Image.BICUBIC)
    assert np.array_equal(np.asarray(prepared), np.asarray(expected))
    pixels = editing.image_tensor([wide, wide.transpose(Image.Transpose.TRANSPOSE)], 16)
    assert pixels.shape == (2, 3, 16, 16) and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
