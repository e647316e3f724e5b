"""Attend-and-Excite (`date.methods.attend_excite`) against its official pipeline, recorded on the tiny pipeline
(tools/make_attend_excite_fixture.py), and `generate_date.py --method ae|ae+date` end to end."""
import functools
import json
import os

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline

from date.methods import attend_excite
from date.io.errors import UserInputError
from date.methods.attention_maps import concept_token, tokens_of
from tests.support.attention_fixture import (ATTENTION_RES, fingerprint, latents_match, plain_latents, replay,
                                             trace_matches)

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "attend_excite_reference.json")


@pytest.fixture(scope="module")
def reference() -> dict:
    with open(FIXTURE) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def pipe(tiny_dirs):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["sd"], safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _settings(reference: dict) -> attend_excite.Settings:
    recorded = reference["settings"]
    return attend_excite.Settings(**{**recorded, "thresholds": {int(k): v for k, v in recorded["thresholds"].items()},
                                     "scale_range": tuple(recorded["scale_range"]), "attention_res": 16})


def _ours(pipe, reference: dict, cases: list):
    return replay(pipe, functools.partial(attend_excite.AttendExcite, _settings(reference)), cases)


def test_same_model_as_the_fixture(pipe, reference):
    assert fingerprint(pipe.unet) == pytest.approx(reference["unet_fingerprint"], rel=1e-9)
    assert ATTENTION_RES == reference["attention_res"]


def test_concept_tokens_are_the_official_indices(pipe, reference):
    for case in reference["cases"]:
        assert [concept_token(pipe.tokenizer, case["prompt"], w) for w in case["concepts"]] == case["tokens"]


def test_a_word_named_twice_is_its_two_appearances(pipe):
    caption = "a blue circle and a white circle"  # <start> a blue circle and a white circle <end>
    assert tokens_of(pipe.tokenizer, [caption], [("circle", "circle")], "cpu").tolist() == [[3, 7]]
    with pytest.raises(UserInputError, match="no token for its appearance 2"):
        concept_token(pipe.tokenizer, "a blue circle", "circle", occurrence=1)


def test_matches_the_official_pipeline(pipe, reference):
    """One image: every gradient step's loss and step size (refinement included), the latents after every step."""
    case = reference["cases"][0]
    latents, trace = _ours(pipe, reference, [case])
    assert trace_matches(trace, case["trace"])
    assert latents_match(latents[0], case["latents"])


def test_a_batch_is_each_image_on_its_own(pipe, reference):
    """Two captions in one batch (each with its own refinement count) end where the official code ends each alone,
    and where plain sampling does not."""
    latents, _ = _ours(pipe, reference, reference["cases"])
    for k, case in enumerate(reference["cases"]):
        assert latents_match(latents[k], case["latents"])
    assert (plain_latents(pipe, reference["cases"]) - latents[:, -1]).abs().max() > 1e-2


CAPTIONS = ["a cat and a frog", "a red car and a blue bow"]
SMALL = ["--thresholds", "0:0.5", "--refinement_steps", "2"]  # a short refinement: the tests stay fast


@pytest.fixture
def ae_cli(generate_date_cli, tmp_path):
    """generate_date.py on two Attend-and-Excite captions (3 steps, batch 2)."""
    from date.io.captions import write_captions

    captions = str(tmp_path / "ae_captions.csv")
    write_captions(captions, CAPTIONS)
    return lambda *flags, save=tmp_path / "out": generate_date_cli("--text_path", captions, *flags, save=save)


def _images(folder) -> list:
    import numpy as np
    from PIL import Image

    return [np.asarray(Image.open(folder / f"{k}.png")).astype(int) for k in range(len(CAPTIONS))]


def test_generate_date_method_ae(pipe, ae_cli, tiny_dirs, tmp_path, capsys):
    """`--method ae` writes the images of `attend_excite.generate` with the same settings and seeds, at the official
    w = 7.5, and records its settings; `ae+date` differs from both A&E alone and DATE alone."""
    from date.io.seeding import image_generator

    ae_cli("--method", "ae", *SMALL)
    folder = tmp_path / "out" / "AE_scheduler_DDIM_steps_3_w_7.5_seed_6"
    settings = json.load(open(folder / "config.json"))["settings"]
    assert settings["method"]["name"] == "ae" and settings["method"]["thresholds"] == {"0": 0.5}
    assert settings["method"]["max_refinement_steps"] == 2 and settings["update"] is None
    expected = attend_excite.generate(pipe, CAPTIONS, None, concepts=[("cat", "frog"), ("car", "bow")],
                                      settings=attend_excite.Settings(thresholds={0: 0.5}, max_refinement_steps=2),
                                      num_inference_steps=3, guidance_scale=7.5,
                                      generator=[image_generator(6, k) for k in range(2)]).images
    for ours, theirs in zip(_images(folder), expected):
        assert (ours == np.asarray(theirs)).all()

    clip = ["--h_model", f"clip={tiny_dirs['clip']}", "--skip_itrs", "0-1"]
    ae_cli("--method", "ae+date", *SMALL, *clip)
    ae_cli("--method", "date", "--w", "7.5", *clip)
    both = _images(tmp_path / "out" / "AE_DATE_CLIP_scheduler_DDIM_steps_3_w_7.5_seed_6")
    date_only = _images(tmp_path / "out" / "DATE_CLIP_scheduler_DDIM_steps_3_w_7.5_seed_6")
    for k in range(len(CAPTIONS)):
        assert (both[k] != _images(folder)[k]).any() and (both[k] != date_only[k]).any()
    capsys.readouterr()


def test_ae_refuses_what_it_cannot_run(ae_cli, generate_date_cli, family_dirs, tmp_path, capsys):
    """One `error:` line and exit 2, nothing written: captions without readable concepts, a non-SD pipeline, an h
    without DATE."""
    from tests.support.evaluation_helpers import assert_one_line_error

    cases = [(lambda: generate_date_cli("--method", "ae", "--dry_run", save=tmp_path / "bad"),
              "cannot read two concepts from the caption 'a red circle on the left'"),
             (lambda: ae_cli("--method", "ae", "--model", family_dirs["sdxl"], save=tmp_path / "bad"),
              "needs an SD 1.x/2.x pipeline"),
             (lambda: ae_cli("--method", "ae", "--h", "clip", save=tmp_path / "bad"), "uses no evaluation function"),
             (lambda: ae_cli("--method", "ae", "--thresholds", "0:2", save=tmp_path / "bad"), "thresholds in [0, 1]")]
    for run, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            run()
        assert_one_line_error(capsys, exit_info, message)
        assert not (tmp_path / "bad").exists()
