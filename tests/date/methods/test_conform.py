"""CONFORM (`date.methods.conform`) against its official pipeline, recorded on the tiny pipeline
(tools/make_conform_fixture.py), and `generate_date.py --method conform|conform+date` end to end."""
import functools
import json
import os

import pytest
import torch
from diffusers import StableDiffusionPipeline

from date.methods import conform
from tests.support.attention_fixture import fingerprint, latents_match, plain_latents, replay, trace_matches

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "conform_reference.json")


@pytest.fixture(scope="module")
def reference() -> dict:
    with open(FIXTURE) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def pipe(tiny_dirs):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["sd"], safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ours(pipe, settings: dict, cases: list):
    ours = conform.Settings(**{key: (tuple(value) if isinstance(value, list) else value) for key, value in settings.items()
                               if key in conform.Settings.__dataclass_fields__})
    return replay(pipe, functools.partial(conform.Conform, ours), cases)


def test_same_model_as_the_fixture(pipe, reference):
    assert fingerprint(pipe.unet) == pytest.approx(reference["unet_fingerprint"], rel=1e-9)


def test_unsupported_official_options_are_off_in_the_fixture(reference):
    """What ours leaves out is what the recorded runs (and the official notebook) leave off."""
    for run in reference["runs"]:
        settings = run["settings"]
        assert settings["loss_fn"] == "ntxent" and settings["add_previous_attention_maps"]
        assert not settings["softmax_normalize_attention_maps"] and settings["previous_attention_map_anchor_step"] is None


@pytest.mark.parametrize("run", [0, 1], ids=["notebook", "softmax_normalize"])
def test_matches_the_official_pipeline(pipe, reference, run):
    """One image: every gradient step's loss and step size (refinement included), the latents after every step."""
    settings, case = reference["runs"][run]["settings"], reference["runs"][run]["cases"][0]
    latents, trace = _ours(pipe, settings, [case])
    assert trace_matches(trace, case["trace"])
    assert latents_match(latents[0], case["latents"])


def test_a_batch_is_each_image_on_its_own(pipe, reference):
    """Two captions in one batch, each contrasted with its own previous maps, end where the official code ends each
    alone, and where plain sampling does not."""
    run = reference["runs"][0]
    latents, _ = _ours(pipe, run["settings"], run["cases"])
    for k, case in enumerate(run["cases"]):
        assert latents_match(latents[k], case["latents"])
    assert (plain_latents(pipe, run["cases"]) - latents[:, -1]).abs().max() > 1e-2


def test_ntxent_is_pytorch_metric_learnings():
    """The loss on hand-made embeddings, against values of `NTXentLoss(temperature=0.5)(embeddings, labels)`
    (pytorch-metric-learning 2.5.0): two classes of two, and no positive pair (zero, no gradient)."""
    embeddings = torch.tensor([[[1.0, 0.0, 0.5], [0.9, 0.1, 0.4], [0.0, 1.0, 0.2], [0.2, 0.8, 0.0]]])
    loss = conform.ntxent(embeddings, torch.tensor([0, 0, 1, 1]), 0.5)
    assert loss.shape == (1,) and float(loss) == pytest.approx(0.3591596484184265, abs=1e-6)
    assert not conform.ntxent(embeddings[:, ::2], torch.tensor([0, 1]), 0.5).requires_grad



def test_generate_date_method_conform(pipe, generate_date_cli, tiny_dirs, tmp_path, capsys):
    """`--method conform` on a caption file with a `concepts` column (a caption outside the A&E grammar) writes the
    images of `conform.generate` with the same settings and seeds and records them; `conform+date` differs from it."""
    import csv

    import numpy as np
    from PIL import Image

    from date.io.seeding import image_generator

    captions = tmp_path / "concepts.csv"
    with open(captions, "w", newline="") as f:
        csv.writer(f).writerows([["caption", "concepts"], ["the cat sits next to the frog", "cat;frog"],
                                 ["a red car and a blue bow", ""]])  # an empty field: read off the caption
    small = ["--iterative_refinement_steps", "1", "--refinement_steps", "2"]
    generate_date_cli("--method", "conform", "--text_path", str(captions), *small)
    folder = tmp_path / "out" / "CONFORM_scheduler_DDIM_steps_3_w_7.5_seed_6"
    settings = json.load(open(folder / "config.json"))["settings"]["method"]
    assert settings["name"] == "conform" and settings["iterative_refinement_steps"] == [1]
    assert settings["max_iter_to_alter"] == 30 and settings["temperature"] == 0.5 and not settings["softmax_normalize"]
    prompts = ["the cat sits next to the frog", "a red car and a blue bow"]
    expected = conform.generate(pipe, prompts, None, concepts=[("cat", "frog"), ("car", "bow")],
                                settings=conform.Settings(iterative_refinement_steps=(1,), refinement_steps=2),
                                num_inference_steps=3, guidance_scale=7.5,
                                generator=[image_generator(6, k) for k in range(2)]).images
    images = [np.asarray(Image.open(folder / f"{k}.png")).astype(int) for k in range(2)]
    for ours, theirs in zip(images, expected):
        assert (ours == np.asarray(theirs)).all()

    generate_date_cli("--method", "conform+date", "--text_path", str(captions), *small,
                      "--h_model", f"clip={tiny_dirs['clip']}", "--skip_itrs", "0-1")
    both = tmp_path / "out" / "CONFORM_DATE_CLIP_scheduler_DDIM_steps_3_w_7.5_seed_6"
    assert json.load(open(both / "config.json"))["settings"]["update"]["update_steps"] == [0, 1]
    for k in range(2):
        assert (np.asarray(Image.open(both / f"{k}.png")).astype(int) != images[k]).any()
    capsys.readouterr()
