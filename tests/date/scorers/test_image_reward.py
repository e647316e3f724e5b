"""ImageReward (date.scorers.image_reward) against the reference implementation, plus its loader, tokenizer and evaluation CLI.

The fixture holds what the reference `image-reward` package computed on the recipe checkpoint
(tools/make_image_reward_fixture.py); here the same checkpoint is rebuilt, loaded through our loader and must agree.
"""
import csv
import json
import os

import numpy as np
import pytest
import torch
from transformers import BertConfig

from date.io.errors import UserInputError
from date.scorers.image_reward import (VIT_L16_224, ImageRewardScorer, blip_tokenizer, convert_checkpoint, text_config,
                               vision_config)
from evaluation import image_reward as image_reward_cli
from tests.support import image_reward_recipe as recipe
from tests.support.paths import FIXTURES

FIXTURE = os.path.join(FIXTURES, "image_reward_reference.json")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference() -> dict:
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> str:
    return recipe.save_bert_tokenizer(str(tmp_path_factory.mktemp("bert_tokenizer")))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, reference) -> str:
    return recipe.save_checkpoint_dir(str(tmp_path_factory.mktemp("image_reward")), reference["med_config"],
                                      reference["vision_config"])


@pytest.fixture(scope="module")
def scorer(model_dir, tokenizer_dir) -> ImageRewardScorer:
    return ImageRewardScorer.from_pretrained(model_dir, tokenizer=tokenizer_dir)


def pixel_case_rewards(scorer: ImageRewardScorer) -> torch.Tensor:
    with torch.no_grad():
        return scorer.score_normalized(recipe.make_pixel_values(), [recipe.PROMPTS[p] for p in recipe.PIXEL_CASES])


def test_recipe_rebuilds_the_checkpoint_the_reference_scored(reference, model_dir):
    rebuilt = recipe.fingerprint(torch.load(os.path.join(model_dir, "ImageReward.pt"), weights_only=True))
    assert rebuilt.keys() == reference["checkpoint_fingerprint"].keys()
    for key, values in reference["checkpoint_fingerprint"].items():
        assert rebuilt[key] == pytest.approx(values, rel=1e-9, abs=1e-9), key


def test_tokens_match_the_reference_tokenizer(scorer, reference):
    assert len(scorer.tokenizer) == reference["tokenizer_size"] == 30524
    assert scorer.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [30522, 30523]
    for case in reference["tokens"]:
        ids, mask = scorer.encode_prompt(case["prompt"]).tolist()
        assert (ids, mask) == (case["input_ids"], case["attention_mask"]), case["prompt"]
        assert ids[0] == scorer.tokenizer.cls_token_id  # no [ENC] substitution


def test_rewards_match_the_reference_on_normalized_pixels(scorer, reference):
    ours = pixel_case_rewards(scorer)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, torch.tensor(reference["pixel_rewards"]), rtol=0, atol=TOLERANCE)


def test_rewards_match_the_reference_on_pil_images_and_files(scorer, reference, tmp_path):
    images = recipe.make_pil_images()
    paths = []
    for index, image in enumerate(images):
        paths.append(str(tmp_path / f"{index}.png"))
        image.save(paths[-1])
    prompts = [recipe.PROMPTS[p] for _, p in reference["pil_cases"]]
    expected = torch.tensor(reference["pil_rewards"])
    from_pil = scorer.score_pil([images[i] for i, _ in reference["pil_cases"]], prompts)
    from_files = scorer.score_pil([paths[i] for i, _ in reference["pil_cases"]], prompts)
    assert torch.allclose(from_pil, expected, rtol=0, atol=TOLERANCE)
    assert torch.allclose(from_files, expected, rtol=0, atol=TOLERANCE)


def _change_text_encoder_call(scorer, monkeypatch, change):
    forward = scorer.text.forward
    monkeypatch.setattr(scorer.text, "forward", lambda **kwargs: forward(**change(kwargs)))


def vit_with_transformers_default_eps(scorer, monkeypatch):
    for norm in scorer.vision.modules():
        if isinstance(norm, torch.nn.LayerNorm):
            monkeypatch.setattr(norm, "eps", 1e-5)


def causal_text_encoder(scorer, monkeypatch):
    _change_text_encoder_call(scorer, monkeypatch, lambda kwargs: {**kwargs, "is_decoder": True})


def padding_attended(scorer, monkeypatch):
    _change_text_encoder_call(scorer, monkeypatch, lambda kwargs: {
        **kwargs, "attention_mask": torch.ones_like(kwargs["attention_mask"])})


@pytest.mark.parametrize("make_mistake", [vit_with_transformers_default_eps, causal_text_encoder, padding_attended])
def test_fixture_catches_plausible_mistakes(scorer, reference, monkeypatch, make_mistake):
    """The exactness tests above can fail: each easy slip moves the rewards far beyond the tolerance."""
    make_mistake(scorer, monkeypatch)
    error = (pixel_case_rewards(scorer) - torch.tensor(reference["pixel_rewards"])).abs().max()
    assert error > 20 * TOLERANCE


def test_score_is_differentiable_for_any_image_size(scorer):
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0)).requires_grad_()
    prompts = [recipe.PROMPTS[0], recipe.PROMPTS[2]]
    rewards = scorer.score(images, prompts)
    assert rewards.shape == (2,) and rewards.dtype == torch.float32
    rewards.sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    with torch.no_grad():  # batching (and padding of the shorter prompt) changes nothing
        alone = scorer.score(images[1:].detach(), prompts[1:])
    assert torch.allclose(alone, rewards[1:].detach(), rtol=0, atol=TOLERANCE)


def test_half_precision_scorer_stays_close(model_dir, tokenizer_dir, reference):
    half = ImageRewardScorer.from_pretrained(model_dir, tokenizer=tokenizer_dir, torch_dtype=torch.float16)
    assert half.dtype == torch.float16
    ours = pixel_case_rewards(half)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, torch.tensor(reference["pixel_rewards"]), rtol=0, atol=2e-2)


# --- loading: the key mapping and its errors, on a shrunken config ---

TINY_MED = dict(recipe.SMALL_MED_CONFIG, num_hidden_layers=1, intermediate_size=64)
TINY_VISION = dict(recipe.SMALL_VISION_CONFIG, num_hidden_layers=1, hidden_size=32, intermediate_size=64)


@pytest.fixture(scope="module")
def tiny_scorer(tokenizer_dir) -> ImageRewardScorer:
    vision = vision_config(TINY_VISION)
    text = text_config(BertConfig(**TINY_MED), vision.hidden_size)
    return ImageRewardScorer(vision, text, blip_tokenizer(tokenizer_dir))


def test_every_official_key_maps_onto_exactly_our_parameters(tiny_scorer):
    official = recipe.make_checkpoint(TINY_MED, TINY_VISION)
    converted = convert_checkpoint(official)
    assert converted.keys() == tiny_scorer.state_dict().keys()
    renamed = {
        "blip.visual_encoder.cls_token": "vision.embeddings.class_embedding",
        "blip.visual_encoder.pos_embed": "vision.embeddings.position_embedding",
        "blip.visual_encoder.patch_embed.proj.weight": "vision.embeddings.patch_embedding.weight",
        "blip.visual_encoder.blocks.0.norm2.bias": "vision.encoder.layers.0.layer_norm2.bias",
        "blip.visual_encoder.blocks.0.attn.qkv.weight": "vision.encoder.layers.0.self_attn.qkv.weight",
        "blip.visual_encoder.blocks.0.attn.proj.bias": "vision.encoder.layers.0.self_attn.projection.bias",
        "blip.visual_encoder.blocks.0.mlp.fc2.weight": "vision.encoder.layers.0.mlp.fc2.weight",
        "blip.visual_encoder.norm.weight": "vision.post_layernorm.weight",
        "blip.text_encoder.encoder.layer.0.crossattention.self.key.weight":
            "text.encoder.layer.0.crossattention.self.key.weight",
        "mlp.layers.7.bias": "head.7.bias",
    }
    for official_key, ours in renamed.items():
        assert converted[ours] is official[official_key]
    kept = {id(value) for value in converted.values()}
    assert {key for key, value in official.items() if id(value) not in kept} == {
        "blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight", "blip.text_proj.bias",
        "blip.text_encoder.embeddings.position_ids"}
    tiny_scorer.load_official_state_dict(official)
    assert torch.equal(tiny_scorer.head[7].bias, official["mlp.layers.7.bias"])


@pytest.mark.parametrize("corrupt, message", [
    (lambda sd: sd.update({"blip.visual_encoder.head.weight": torch.zeros(1)}), "not ImageReward's"),
    (lambda sd: sd.pop("blip.text_encoder.encoder.layer.0.crossattention.self.value.bias"), "1 weights missing"),
    (lambda sd: sd.update({"blip.text_encoder.pooler.dense.bias": torch.zeros(768)}), "1 unexpected"),
    (lambda sd: sd.update({"mlp.layers.0.weight": torch.zeros(1024, 700)}), "does not fit"),
])
def test_checkpoint_mismatches_fail_loudly(tiny_scorer, corrupt, message):
    official = recipe.make_checkpoint(TINY_MED, TINY_VISION)
    corrupt(official)
    with pytest.raises(UserInputError, match=message):
        tiny_scorer.load_official_state_dict(official)


def test_vision_tower_defaults_to_the_official_vit_l16():
    config = vision_config({})
    assert {k: getattr(config, k) for k in VIT_L16_224} == {"hidden_size": 1024, "num_hidden_layers": 24,
                                                            "num_attention_heads": 16, "intermediate_size": 4096,
                                                            "image_size": 224, "patch_size": 16}
    assert config.layer_norm_eps == 1e-6
    with pytest.raises(UserInputError, match="unknown fields"):
        vision_config({"hidden_sise": 8})


def test_from_pretrained_reports_bad_folders_in_one_line(tmp_path, model_dir, tokenizer_dir):
    def fails(path, match, tokenizer=tokenizer_dir):
        with pytest.raises(UserInputError, match=match):
            ImageRewardScorer.from_pretrained(str(path), tokenizer=tokenizer)

    fails(tmp_path / "absent", "not found")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "has no ImageReward.pt")
    partial = tmp_path / "partial"
    partial.mkdir()
    os.link(os.path.join(model_dir, "ImageReward.pt"), partial / "ImageReward.pt")
    fails(partial, "has no med_config.json")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ImageReward.pt").write_bytes(b"not a checkpoint")
    (broken / "med_config.json").write_text(json.dumps(recipe.SMALL_MED_CONFIG))
    fails(broken, "cannot read checkpoint")
    cased = tmp_path / "cased_tokenizer"
    cased.mkdir()
    with open(os.path.join(tokenizer_dir, "vocab.txt"), encoding="utf-8") as f:
        (cased / "vocab.txt").write_text("".join(f.readlines()[:1000]), encoding="utf-8")
    fails(model_dir, "the tokenizer has 1002 tokens", tokenizer=str(cased))


# --- evaluation/image_reward.py ---

def _generated_folder(root, count: int, captions):
    folder = root / "gen"
    folder.mkdir()
    for index, image in enumerate(recipe.make_pil_images()[:count]):
        image.convert("RGB").save(folder / f"{index}.png")
    with open(folder / "subset.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["caption"]] + [[c] for c in captions])
    return folder


def _run_cli(folder, model_dir, tokenizer_dir, *extra):
    return image_reward_cli.main(["--img_path", str(folder), "--ir_model", model_dir, "--ir_tokenizer", tokenizer_dir,
                                  "--device", "cpu", "--num_workers", "0", "--bs", "2", *extra])


def test_evaluation_cli_saves_and_averages_the_rewards(tmp_path, capsys, scorer, model_dir, tokenizer_dir):
    captions = recipe.PROMPTS[:3]
    folder = _generated_folder(tmp_path, 3, captions)
    _run_cli(folder, model_dir, tokenizer_dir, "--num_eval", "3")
    with np.load(folder / "image_reward_scores.npz") as saved:
        scores = saved["scores"]
    expected = scorer.score_pil([str(folder / f"{i}.png") for i in range(3)], captions).numpy()
    assert scores.dtype == np.float32 and np.allclose(scores, expected, rtol=0, atol=TOLERANCE)
    assert f"Average ImageReward: {scores.mean():.6f}" in capsys.readouterr().out


@pytest.mark.parametrize("problem, message", [
    ("missing_image", "fewer than --num_eval"),
    ("unreadable_image", "cannot read image"),
    ("too_few_captions", "has 2 captions but --num_eval is 3"),
])
def test_evaluation_cli_rejects_bad_folders(tmp_path, capsys, model_dir, tokenizer_dir, problem, message):
    folder = _generated_folder(tmp_path, 2 if problem == "missing_image" else 3,
                               recipe.PROMPTS[:2 if problem == "too_few_captions" else 3])
    if problem == "unreadable_image":
        (folder / "1.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(SystemExit) as exit_info:
        _run_cli(folder, model_dir, tokenizer_dir, "--num_eval", "3")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last_line = err.rstrip().split("\n")[-1]  # after any progress bar
    assert last_line.startswith("error: ") and message in last_line and "Traceback" not in err
    assert not (folder / "image_reward_scores.npz").exists()
