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
from date.errors import UserInputError
from date.scorers import Weighted, load_scorer, parse_h
from date.scorers.aesthetic import CHECKPOINT_FILE as AESTHETIC_FILE
from date.scorers.hps import CHECKPOINT_FILE as HPS_FILE
from date.scorers.preprocess import to_clip_input
from tests.evaluation_helpers import TINY_CLIP, tiny_clip_checkpoint

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


def test_aesthetic_matches_simple_inference(aesthetic_dir, tiny_dirs):
    folder, mlp = aesthetic_dir
    scorer = load_scorer("aesthetic", {"aesthetic": folder, "aesthetic_clip": tiny_dirs["clip"]})
    model, processor = CLIPModel.from_pretrained(tiny_dirs["clip"]).eval(), AutoProcessor.from_pretrained(tiny_dirs["clip"])
    pil = images(1)
    with torch.no_grad():  # simple_inference.py: CLIP image embedding, L2-normalized in numpy, through the MLP
        features = model.get_image_features(**processor(images=pil, return_tensors="pt"))
        features = getattr(features, "pooler_output", features).numpy()
        normalized = features / np.linalg.norm(features, 2, axis=-1, keepdims=True)
        reference = mlp(torch.from_numpy(normalized).float()).squeeze(-1)
    assert torch.allclose(scorer.score_pil(pil, PROMPTS), reference, atol=1e-5)
    assert torch.equal(scorer.score(pixels(pil), PROMPTS), scorer.score(pixels(pil), ["other", "prompts", "entirely"]))


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


def test_hps_matches_the_hpsv2_scoring(hps_checkpoint):
    from date.scorers.hps import HPSScorer

    scorer = HPSScorer.from_pretrained(hps_checkpoint, architecture=TINY_CLIP)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP, pretrained=None)
    model.load_state_dict(torch.load(hps_checkpoint, weights_only=True)["state_dict"])
    model.eval()
    tokenizer = open_clip.get_tokenizer(TINY_CLIP)
    pil = images(2)
    with torch.no_grad():  # hpsv2's score(): normalized features, diagonal of image @ text.T, one image at a time
        reference = torch.stack([
            torch.diagonal(model.encode_image(preprocess(im)[None], normalize=True)
                           @ model.encode_text(tokenizer([p]), normalize=True).T)[0]
            for im, p in zip(pil, PROMPTS)])
    assert torch.allclose(scorer.score_pil(pil, PROMPTS), reference, atol=1e-5)
    x = pixels(pil).requires_grad_(True)
    scorer.score(x, PROMPTS).sum().backward()  # differentiable in the image
    assert x.grad is not None and x.grad.abs().sum() > 0


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
    from date.prompts import write_captions

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
    from tests.evaluation_helpers import CAPTIONS, make_folder

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
