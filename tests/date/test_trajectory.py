"""Trajectories: x̂0 and h before and after every update, returned by `date.generate(trajectory=True)` and saved as
strips by `--save_trajectory`, without changing a single image."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import date
from date.io.sheets import trajectory_strip
from tests.support.tiny_models import tiny_pipeline

PROMPTS = ["a red circle on the left", "un carré bleu à droite → 日本語, with a caption long enough to need wrapping"]


def test_trajectory_records_each_update_and_leaves_the_images_alone(tiny_dirs):
    scorer = date.CLIPScorer.from_pretrained(tiny_dirs["clip"])
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kwargs = dict(num_inference_steps=6, skip_freq=2, lr_upt_prompt=2.0, latents=latents, output_type="latent")
    plain = date.generate(tiny_pipeline(tiny_dirs["tokenizer"]), PROMPTS, scorer, **kwargs)
    traced = date.generate(tiny_pipeline(tiny_dirs["tokenizer"]), PROMPTS, scorer, trajectory=True, **kwargs)
    assert torch.equal(plain.images, traced.images)
    steps = traced.trajectory
    assert [s.step_index for s in steps] == [0, 2, 4]
    for step in steps:
        assert step.before.shape == step.after.shape == (2, 3, 16, 16) and step.h_before.shape == (2,)
        assert not torch.equal(step.before, step.after)  # the update changed x̂0
        with torch.no_grad():  # h is the scorer's on those very images
            assert torch.allclose(scorer.score(step.after, PROMPTS), step.h_after, atol=1e-5)
            assert torch.allclose(scorer.score(step.before, PROMPTS), step.h_before, atol=1e-5)
    strip = trajectory_strip(steps, 1, cell=64)
    assert strip.width == 3 * 64 + 4 * 6 and 2 * 64 < strip.height < 2 * 64 + 150  # 3 updates, before and after rows
    titled = trajectory_strip(steps, 1, cell=64, title="1.png ('a red circle')")  # which image and caption, written on it
    assert titled.width == strip.width and titled.height >= strip.height and titled.tobytes() != strip.tobytes()


def test_no_update_means_an_empty_trajectory(tiny_dirs):
    out = date.generate(tiny_pipeline(tiny_dirs["tokenizer"]), PROMPTS, None, num_inference_steps=2, trajectory=True,
                        output_type="latent")
    assert out.trajectory == []


def test_save_trajectory_on_the_command_line(tiny_dirs, tmp_path, capsys, generate_date_cli):
    from tests.support.evaluation_helpers import assert_one_line_error

    h = ["--h_model", f"clip={tiny_dirs['clip']}", "--skip_freq", "1"]
    generate_date_cli(*h, save=tmp_path / "plain")
    generate_date_cli(*h, "--save_trajectory", save=tmp_path / "traced")
    (plain,), (traced,) = os.listdir(tmp_path / "plain"), os.listdir(tmp_path / "traced")
    assert plain == traced  # same folder name: trajectories do not change the images
    files = sorted(os.listdir(tmp_path / "traced" / traced))
    assert files == ["0.png", "0_trajectory.png", "1.png", "1_trajectory.png", "config.json", "subset.csv"]
    for k in range(2):
        assert (tmp_path / "plain" / plain / f"{k}.png").read_bytes() == (tmp_path / "traced" / traced / f"{k}.png").read_bytes()
    with Image.open(tmp_path / "traced" / traced / "0_trajectory.png") as strip:
        assert strip.width == 3 * 160 + 4 * 6  # 3 steps, each updated
        assert np.asarray(strip.convert("L")).std() > 10  # drawn, not blank
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        generate_date_cli("--baseline", "--save_trajectory", save=tmp_path / "bad")
    assert_one_line_error(capsys, exit_info, "--save_trajectory")
    assert not (tmp_path / "bad").exists()
