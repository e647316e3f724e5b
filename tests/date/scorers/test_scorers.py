"""More evaluation functions h: PickScore, the aesthetic predictor, HPS v2.1 and weighted sums, each checked against a
plain transcription of its reference's scoring code on shrunken random models; and `generate_date.py --h`."""
import os
import sys

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

import generate_date
import generate_date_clip
from date.io.errors import UserInputError
from date.scorers import Weighted, load_scorer, parse_h
from date.scorers.aesthetic import CHECKPOINT_FILE as AESTHETIC_FILE
from date.scorers.hps import CHECKPOINT_FILE as HPS_FILE
from date.scorers.preprocess import to_clip_input
from tests.support.evaluation_helpers import TINY_CLIP, tiny_clip_checkpoint
from tests.support.paths import FIXTURES

PROMPTS = ["a red circle on the left", "a photo of a dog on a beach", "two dogs playing in the snow"]


def images(seed=0, size=48):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 8 * k, 3), dtype=np.uint8)) for k in range(len(PROMPTS))]


def pixels(pil_images):
    return torch.stack([torch.from_numpy(np.asarray(im.resize((48, 48)))) for im in pil_images]).permute(0, 3, 1, 2) / 255


@pytest.fixture(scope="module")
def pickscore_dir(tiny_dirs, tmp_path_factory):
    """A tiny CLIP with a non-trivial logit scale and the processor files, as PickScore's folder + LAION's processor."""
    folder = str(tmp_path_factory.mktemp("pickscore"))
    model = CLIPModel.from_pretrained(tiny_dirs["clip"])
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    model.save_pretrained(folder)
    CLIPProcessor(CLIPImageProcessor(), CLIPTokenizer.from_pretrained(tiny_dirs["clip"])).save_pretrained(folder)
    return folder


def test_pickscore_matches_the_model_card_code(pickscore_dir):
    scorer = load_scorer("pickscore", {"pickscore": pickscore_dir, "pickscore_processor": pickscore_dir})
    processor, model = AutoProcessor.from_pretrained(pickscore_dir), CLIPModel.from_pretrained(pickscore_dir).eval()
    pil = images()
    with torch.no_grad():  # the reference, as on the PickScore model card, one prompt at a time
        image_embs = model.get_image_features(**processor(images=pil, return_tensors="pt"))
        image_embs = getattr(image_embs, "pooler_output", image_embs)
        image_embs = image_embs / image_embs.norm(dim=-1, keepdim=True)
        texts = []
        for prompt in PROMPTS:
            text = model.get_text_features(**processor(text=prompt, padding=True, truncation=True, max_length=77,
                                                       return_tensors="pt"))
            text = getattr(text, "pooler_output", text)
            texts.append((text / text.norm(dim=-1, keepdim=True))[0])
        texts = torch.stack(texts)
        reference = model.logit_scale.exp() * (texts * image_embs).sum(-1)
    assert torch.allclose(scorer.score_pil(pil, PROMPTS), reference, atol=1e-5)
    x = pixels(pil)  # DATE's differentiable path: the same model and text features on to_clip_input(x)
    with torch.no_grad():
        direct = model.get_image_features(pixel_values=to_clip_input(x))
        direct = getattr(direct, "pooler_output", direct)
        expected = model.logit_scale.exp() * (texts * direct / direct.norm(dim=-1, keepdim=True)).sum(-1)
    assert torch.allclose(scorer.score(x, PROMPTS), expected, atol=1e-5)
    assert 15 < float(model.logit_scale.exp()) < 25  # the scale is the model's (here e^3), not 1


@pytest.fixture(scope="module")
def aesthetic_dir(tiny_dirs, tmp_path_factory):
    """The predictor's checkpoint layout (layers.0/2/4/6/7 of an nn.Sequential) at the tiny CLIP's width."""
    folder = tmp_path_factory.mktemp("aesthetic")
    torch.manual_seed(0)
    width = CLIPModel.from_pretrained(tiny_dirs["clip"]).config.projection_dim
    mlp = torch.nn.Sequential(torch.nn.Linear(width, 64), torch.nn.Dropout(0.2), torch.nn.Linear(64, 16),
                              torch.nn.Dropout(0.2), torch.nn.Linear(16, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 4),
                              torch.nn.Linear(4, 1))
    torch.save({f"layers.{k}": v for k, v in mlp.state_dict().items()}, folder / AESTHETIC_FILE)
    return str(folder), mlp.eval()


def test_aesthetic_differentiable_path_and_prompt_blindness(aesthetic_dir, tiny_dirs):
    folder, mlp = aesthetic_dir
    scorer = load_scorer("aesthetic", {"aesthetic": folder, "aesthetic_clip": tiny_dirs["clip"]})
    model = CLIPModel.from_pretrained(tiny_dirs["clip"]).eval()
    x = pixels(images(1))
    with torch.no_grad():  # DATE's path: to_clip_input, CLIP image embedding, L2 normalization, the MLP
        features = model.get_image_features(pixel_values=to_clip_input(x))
        features = getattr(features, "pooler_output", features)
        expected = mlp(features / features.norm(dim=-1, keepdim=True)).squeeze(-1)
    assert torch.allclose(scorer.score(x, PROMPTS), expected, atol=1e-6)
    assert torch.equal(scorer.score(x, PROMPTS), scorer.score(x, ["other", "prompts", "entirely"]))


def test_aesthetic_matches_the_recorded_laion_reference(tmp_path):
    """tools/make_aesthetic_fixture.py ran simple_inference.py's steps with OpenAI's `clip`; we must agree."""
    import json

    from tests.support import aesthetic_recipe as recipe
    from tests.support.hps_recipe import rgb_images

    with open(os.path.join(FIXTURES, "aesthetic_reference.json")) as f:
        fixture = json.load(f)
    openai = recipe.openai_state_dict({k: tuple(v) for k, v in fixture["clip_shapes"].items()})
    for key, values in recipe.fingerprint(openai).items():
        assert np.allclose(values, fixture["clip_fingerprint"][key], rtol=1e-9, atol=1e-9), key
    clip = recipe.to_transformers(openai)
    clip.save_pretrained(tmp_path / "clip")
    CLIPImageProcessor().save_pretrained(tmp_path / "clip")  # its defaults are OpenAI CLIP's preprocessing
    torch.save(recipe.mlp_state_dict(), tmp_path / AESTHETIC_FILE)
    scorer = load_scorer("aesthetic", {"aesthetic": str(tmp_path / AESTHETIC_FILE), "aesthetic_clip": str(tmp_path / "clip")})
    images = rgb_images()
    ours = scorer.score_pil([images[i] for i in fixture["pil_cases"]], ["ignored"] * len(fixture["pil_cases"]))
    assert np.allclose(ours.numpy(), fixture["pil_scores"], atol=1e-5, rtol=0), (ours, fixture["pil_scores"])
    with torch.no_grad():
        ours = scorer.score_pixels(recipe.pixel_values(), None)
    assert np.allclose(ours.numpy(), fixture["pixel_scores"], atol=1e-5, rtol=0), (ours, fixture["pixel_scores"])


def test_aesthetic_refuses_another_checkpoint(tmp_path, tiny_dirs):
    torch.save({"weight": torch.zeros(2)}, tmp_path / AESTHETIC_FILE)
    with pytest.raises(UserInputError, match="not an aesthetic predictor checkpoint"):
        load_scorer("aesthetic", {"aesthetic": str(tmp_path), "aesthetic_clip": tiny_dirs["clip"]})


@pytest.fixture(scope="module")
def hps_checkpoint(tmp_path_factory):
    """HPS v2.1's checkpoint layout ({"state_dict": ...}) for a tiny OpenCLIP architecture."""
    base = tiny_clip_checkpoint()  # registers the tiny architecture with open_clip
    path = tmp_path_factory.mktemp("hps") / HPS_FILE
    torch.save({"state_dict": torch.load(base, weights_only=True)}, path)
    return str(path)


def test_hps_scores_the_cosine_and_is_differentiable_in_the_image(hps_checkpoint):
    from date.scorers.hps import HPSScorer

    scorer = HPSScorer.from_pretrained(hps_checkpoint, architecture=TINY_CLIP)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    model.load_state_dict(torch.load(hps_checkpoint, weights_only=True)["state_dict"])
    model.eval()
    tokenizer = open_clip.get_tokenizer(TINY_CLIP)
    x = pixels(images(2)).requires_grad_(True)
    with torch.no_grad():  # DATE's path: to_clip_input at the model's size, then hpsv2's formula
        image = model.encode_image(to_clip_input(x.detach(), scorer.input_size), normalize=True)
        text = model.encode_text(tokenizer(PROMPTS), normalize=True)
    assert torch.allclose(scorer.score(x, PROMPTS), torch.diagonal(image @ text.T), atol=1e-5)
    scorer.score(x, PROMPTS).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_hps_matches_the_recorded_hpsv2_reference(tmp_path):
    """tools/make_hps_fixture.py ran the `hpsv2` package's own `score` on the recipe checkpoint; we must agree."""
    import json

    from date.scorers.hps import HPSScorer
    from tests.support import hps_recipe as recipe

    with open(os.path.join(FIXTURES, "hps_reference.json")) as f:
        fixture = json.load(f)
    recipe.register(open_clip)
    shapes = {k: tuple(v.shape) for k, v in open_clip.create_model(recipe.ARCHITECTURE).state_dict().items()}
    checkpoint = recipe.make_checkpoint(shapes)
    recorded = fixture["checkpoint_fingerprint"]
    assert sorted(recorded) == sorted(checkpoint["state_dict"])  # the same keys as the reference's model
    for key, values in recipe.fingerprint(checkpoint["state_dict"]).items():
        assert np.allclose(values, recorded[key], rtol=1e-9, atol=1e-9), key
    torch.save(checkpoint, tmp_path / HPS_FILE)
    scorer = HPSScorer.from_pretrained(str(tmp_path / HPS_FILE), architecture=recipe.ARCHITECTURE)
    images = recipe.rgb_images()
    ours = [float(scorer.score_pil([images[i]], [recipe.PROMPTS[p]])[0]) for i, p in fixture["pil_cases"]]
    assert np.allclose(ours, fixture["pil_scores"], atol=1e-5, rtol=0), (ours, fixture["pil_scores"])
    pixels = recipe.pixel_values()
    with torch.no_grad():
        ours = [float(scorer.score_pixels(pixels[k : k + 1], scorer._encoded_prompts([recipe.PROMPTS[p]]))[0])
                for k, p in enumerate(fixture["pixel_cases"])]
    assert np.allclose(ours, fixture["pixel_scores"], atol=1e-5, rtol=0), (ours, fixture["pixel_scores"])


def test_weighted_sum_and_its_checks(tiny_dirs):
    clip = load_scorer("clip", {"clip": tiny_dirs["clip"]})
    other = load_scorer("clip", {"clip": tiny_dirs["clip"]})
    x = pixels(images(3))
    mix = Weighted({"a": 2.0, "b": -0.5}, {"a": clip, "b": other})
    assert torch.allclose(mix.score(x, PROMPTS), 2.0 * clip.score(x, PROMPTS) - 0.5 * other.score(x, PROMPTS), atol=1e-6)
    with pytest.raises(ValueError, match="weights for"):
        Weighted({"a": 1.0}, {"b": clip})


@pytest.mark.parametrize("spec, expected", [("clip", {"clip": 1.0}), ("clip:1,ir:0.5", {"clip": 1.0, "ir": 0.5}),
                                            (" hps:2 , aesthetic:-1", {"hps": 2.0, "aesthetic": -1.0})])
def test_parse_h(spec, expected):
    assert parse_h(spec) == expected


@pytest.mark.parametrize("spec, message", [("dino", "unknown"), ("clip:x", "must be a number"), ("clip:nan", "finite"),
                                           ("clip:0", "not zero"), ("clip,clip:2", "twice"), ("clip:inf", "finite")])
def test_parse_h_refuses(spec, message):
    with pytest.raises(UserInputError, match=message):
        parse_h(spec)


def cli(monkeypatch, module, argv):
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    module.main()


def base(tiny_dirs, captions_csv, save_path):
    return ["--model", tiny_dirs["sd"], "--text_path", captions_csv, "--save_path", str(save_path), "--steps", "3",
            "--skip_freq", "1", "--bs", "3", "--device", "cpu"]


@pytest.fixture
def captions_csv(tmp_path):
    from date.io.captions import write_captions

    path = str(tmp_path / "captions.csv")
    write_captions(path, PROMPTS)
    return path


def png(folder, k):
    return np.asarray(Image.open(os.path.join(folder, f"{k}.png"))).astype(int)


def test_generate_date_h_clip_is_the_clip_command_and_weights_only_mix(tiny_dirs, captions_csv, tmp_path, monkeypatch):
    cli(monkeypatch, generate_date_clip, base(tiny_dirs, captions_csv, tmp_path / "a") + ["--clip_model", tiny_dirs["clip"]])
    cli(monkeypatch, generate_date, base(tiny_dirs, captions_csv, tmp_path / "b") + ["--h_model", f"clip={tiny_dirs['clip']}"])
    cli(monkeypatch, generate_date, base(tiny_dirs, captions_csv, tmp_path / "c") + ["--h", "clip:3", "--h_model",
                                                                                    f"clip={tiny_dirs['clip']}"])
    folder = "DATE_CLIP_scheduler_DDIM_steps_3_w_8.0_seed_6"
    assert os.listdir(tmp_path / "c") == ["DATE_CLIP3_scheduler_DDIM_steps_3_w_8.0_seed_6"]
    for k in range(3):
        assert np.array_equal(png(tmp_path / "a" / folder, k), png(tmp_path / "b" / folder, k))
        # the step is normalized: 3·h moves c exactly as h does, up to float rounding of the scaled gradient
        assert np.abs(png(tmp_path / "c" / f"DATE_CLIP3{folder[9:]}", k) - png(tmp_path / "b" / folder, k)).max() <= 1


@pytest.mark.parametrize("extra, message", [(["--h", "dino"], "unknown evaluation function"),
                                            (["--h", "clip:nan"], "finite"),
                                            (["--h", "hps", "--h_model", "hps=/no/such/HPS.pt"], "model directory not found"),
                                            (["--h_model", "vision=x"], "--h_model takes NAME=PATH_OR_ID")])
def test_generate_date_refuses_bad_h(extra, message, tiny_dirs, captions_csv, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(monkeypatch, generate_date, base(tiny_dirs, captions_csv, tmp_path / "out") + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_metric_scripts_save_and_average_each_reference_score(pickscore_dir, aesthetic_dir, hps_checkpoint, tiny_dirs,
                                                              tmp_path, capsys):
    from evaluation import h_metric
    from tests.support.evaluation_helpers import CAPTIONS, make_folder

    paths = make_folder(str(tmp_path / "images"), 4, seed=5)
    pil = [Image.open(p).convert("RGB") for p in paths]
    cases = {
        "pickscore": ([f"pickscore={pickscore_dir}", f"pickscore_processor={pickscore_dir}"],
                      load_scorer("pickscore", {"pickscore": pickscore_dir, "pickscore_processor": pickscore_dir})),
        "aesthetic": ([f"aesthetic={aesthetic_dir[0]}", f"aesthetic_clip={tiny_dirs['clip']}"],
                      load_scorer("aesthetic", {"aesthetic": aesthetic_dir[0], "aesthetic_clip": tiny_dirs["clip"]})),
    }
    for name, (sources, scorer) in cases.items():
        argv = ["--img_path", str(tmp_path / "images"), "--num_eval", "4", "--bs", "3", "--device", "cpu"]
        scores = h_metric.main(name, name, argv + [a for s in sources for a in ("--h_model", s)])
        assert np.allclose(scores, scorer.score_pil(pil, CAPTIONS[:4]).numpy(), atol=1e-5)
        saved = np.load(tmp_path / "images" / f"{name}_scores.npz")
        assert np.array_equal(saved["scores"], scores)
        assert f"Average {name}: {scores.mean():.6f}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        h_metric.main("hps", "HPS", ["--img_path", str(tmp_path / "images"), "--h_model", "hps=/no/such/file.pt"])
    assert exit_info.value.code == 2 and "model directory not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # the checkpoint of another architecture: one line, not a traceback
        h_metric.main("hps", "HPS", ["--img_path", str(tmp_path / "images"), "--h_model", f"hps={hps_checkpoint}",
                                     "--h_model", "hps_arch=RN50", "--num_eval", "4", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("error:") and "does not fit open_clip RN50" in err[-1]


def test_report_adds_pickscore_aesthetic_and_hps_columns(pickscore_dir, aesthetic_dir, hps_checkpoint, tiny_dirs,
                                                         tmp_path, capsys):
    from evaluation import report
    from evaluation.stats import paired_comparison
    from tests.support.evaluation_helpers import CAPTIONS, make_folder

    base, ours = str(tmp_path / "baseline"), str(tmp_path / "date")
    make_folder(base, 4, seed=0)
    make_folder(ours, 4, seed=1, brightness=60)
    sources = [f"pickscore={pickscore_dir}", f"pickscore_processor={pickscore_dir}", f"aesthetic={aesthetic_dir[0]}",
               f"aesthetic_clip={tiny_dirs['clip']}", f"hps={hps_checkpoint}", f"hps_arch={TINY_CLIP}"]
    argv = [ours, "--baseline", base, "--metrics", "pick", "aesthetic", "hps", "--num_eval", "4", "--num_workers", "0",
            "--resamples", "200", "--out", str(tmp_path / "table.md"), *[a for s in sources for a in ("--h_model", s)]]
    rows = report.main(argv)
    table = capsys.readouterr().out
    assert "| PickScore↑ | Aesthetic↑ | HPS v2.1↑ |" in table and "| date | PickScore |" in table
    pick = load_scorer("pickscore", {"pickscore": pickscore_dir, "pickscore_processor": pickscore_dir})
    for row, folder in zip(rows, (base, ours)):
        pil = [Image.open(os.path.join(folder, f"{k}.png")).convert("RGB") for k in range(4)]
        assert row["pick_score"] == pytest.approx(float(pick.score_pil(pil, CAPTIONS[:4]).mean()), abs=1e-5)
        assert row["aesthetic"] is not None and row["hps"] is not None
    saved = {name: np.load(os.path.join(folder, f"{name}_scores.npz"))["scores"]
             for name, folder in (("pickscore", base), ("hps", ours))}
    assert saved["pickscore"].shape == (4,) and saved["hps"].shape == (4,)
    diff = paired_comparison(saved["hps"], np.load(os.path.join(base, "hps_scores.npz"))["scores"], 200, 0)
    assert rows[1]["hps_diff"] == pytest.approx(diff.mean_diff, abs=1e-6)


def test_toy_clip_weighted_with_itself_gives_the_toy_clip_images():
    """The toy world's check: h_toy and 1·h_toy + 0.5·h_toy lead DATE to the same images (its step is normalized)."""
    import date
    from diffusers import StableDiffusionPipeline

    from date.run.loading import TOY_MODELS

    pipe = StableDiffusionPipeline.from_pretrained(TOY_MODELS["model"])
    pipe.set_progress_bar_config(disable=True)
    toy = load_scorer("clip", {"clip": TOY_MODELS["clip"]})
    prompts = ["a red circle", "a blue square on the left", "a green triangle above a white circle", "a yellow square"]
    latents = torch.randn(4, 8, 8, 8, generator=torch.Generator().manual_seed(0))

    def sample(scorer):
        return date.generate(pipe, prompts, scorer, num_inference_steps=10, skip_freq=5, latents=latents,
                             output_type="np").images

    alone, mixed = sample(toy), sample(Weighted({"a": 1.0, "b": 0.5}, {"a": toy, "b": toy}))
    assert np.abs(alone - sample(None)).max() > 10 / 255  # DATE changed the images
    assert np.abs(alone - mixed).max() < 1e-4
