"""The toy models: the training script end to end (a few steps), and the bundled weights in assets/toy."""
import json
import os

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

import date
from date.io.captions import read_captions
from date.pipeline.schedulers import predicted_original_sample
from date.toy import SIZE, check, parse, render, sample_pair
from date.toy.data import hard_negative, spatial_negative
from date.toy.fid import FeatureNet, embed_images
from date.toy.train import main as train_main
from date.toy.train import bytes_on_disk

from tests.support.paths import REPO

ASSETS = os.path.join(REPO, "assets", "toy")
WEIGHT_LIMIT = 20_000_000


def test_training_smoke_run_writes_loadable_models(tmp_path):
    out = str(tmp_path / "toy")
    train_main(["--quick", "--out", out, "--threads", str(torch.get_num_threads())])

    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(out, "sd"))
    assert isinstance(pipe.vae, AutoencoderKL) and isinstance(pipe.unet, UNet2DConditionModel)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.beta_schedule == "scaled_linear" and pipe.scheduler.config.steps_offset == 1
    assert pipe.safety_checker is None and pipe.tokenizer.vocab_size == 49408
    assert pipe.vae.config.scaling_factor != 0.18215  # measured on the toy latents, not SD's constant
    assert pipe.scheduler.config.rescale_betas_zero_snr and pipe.scheduler.config.prediction_type == "v_prediction"
    images = pipe(["a red circle", "a blue square above a white circle"], num_inference_steps=2, output_type="np").images
    assert images.shape == (2, SIZE, SIZE, 3)

    scorer = date.CLIPScorer.from_pretrained(os.path.join(out, "clip"))
    scores = scorer.score(torch.rand(2, 3, SIZE, SIZE), ["a red circle", "a green triangle on the left"])
    assert scores.shape == (2,) and torch.all(scores.abs() <= 1)

    feature_net = FeatureNet.from_pretrained(os.path.join(out, "fid_net"))
    assert embed_images(feature_net, [render([])] * 3).shape == (3, feature_net.features)

    tiny = AutoencoderTiny.from_pretrained(os.path.join(out, "taesd"))
    assert tiny.decode(torch.randn(2, pipe.unet.config.in_channels, 8, 8)).sample.shape == (2, 3, SIZE, SIZE)

    with open(os.path.join(out, "training.json")) as f:
        log = json.load(f)
    assert {"vae", "generator", "clip", "fid_net", "tiny_autoencoder"} <= set(log)
    assert all(parse(c) for c in read_captions(os.path.join(out, "prompts.csv")))
    assert bytes_on_disk(out) <= WEIGHT_LIMIT


def test_training_refuses_a_file_as_output(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--quick", "--out", str(target)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_quick_run_never_writes_over_the_bundled_models(tmp_path, capsys, monkeypatch):
    """The smoke test goes to a new temporary folder by default, and is refused in the bundled assets/toy."""
    from date.toy import train

    bundled = os.path.join(train.BUNDLED, "sd", "unet", "config.json")
    before = os.stat(bundled).st_mtime_ns
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--quick", "--out", os.path.join(train.BUNDLED, ".")])
    assert exit_info.value.code == 2 and "never replace the bundled models" in capsys.readouterr().err
    written = []
    monkeypatch.setattr(train.tempfile, "tempdir", str(tmp_path))  # the temporary folder goes under tmp_path
    monkeypatch.setattr(train, "train_all", lambda out, budget, stages: written.append((out, budget)) or
                        {"last_run_seconds": 0.0, "weight_bytes": 0})
    train_main(["--quick"])
    train_main([])
    assert os.path.dirname(written[0][0]) == str(tmp_path) and written[0][1] is train.QUICK
    assert os.path.basename(written[0][0]).startswith("date-toy-quick-")
    assert written[1][0] == train.BUNDLED and written[1][1] is not train.QUICK
    assert os.stat(bundled).st_mtime_ns == before


def test_new_clip_starts_with_position_embeddings_as_large_as_patch_embeddings():
    """The tiny ViT only learns where things are if positions are not drowned by content at the start."""
    from date.toy.models import CLIP_PATCH, grid_position_embedding, new_clip

    side = 224 // CLIP_PATCH
    grid = grid_position_embedding(side, 64, scale=2.0)
    assert grid.shape == (side * side, 64) and torch.cdist(grid, grid).fill_diagonal_(1).min() > 0.1
    embeddings = new_clip().vision_model.embeddings
    with torch.no_grad():
        patches = embeddings.patch_embedding(torch.full((1, 3, 224, 224), -1.8)).flatten(2).norm(dim=1).mean()
    positions = embeddings.position_embedding.weight[1:].norm(dim=1).mean()
    assert 0.3 < positions / patches < 3


@pytest.fixture(scope="module")
def bundled_pipe():
    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(ASSETS, "sd"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_bundled_weights_fit_the_budget():
    assert 0 < bytes_on_disk(ASSETS) <= WEIGHT_LIMIT


@torch.no_grad()
def test_bundled_tiny_decoder_stands_in_for_the_vae(bundled_pipe):
    """Fast mode's decoder gives nearly the VAE's image, on world images' latents and on guided x̂0 at t = 600."""
    tiny = AutoencoderTiny.from_pretrained(os.path.join(ASSETS, "taesd"))
    vae, scale = bundled_pipe.vae, bundled_pipe.vae.config.scaling_factor
    rng = np.random.default_rng(0)
    pairs = [sample_pair(rng) for _ in range(16)]
    images = torch.stack([torch.from_numpy(np.array(render(shapes))) for _, shapes in pairs])
    latents = vae.encode(images.permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mean * scale
    t = torch.tensor(600)
    a = bundled_pipe.scheduler.alphas_cumprod[t]
    noisy = a.sqrt() * latents + (1 - a).sqrt() * torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    cond, uncond = bundled_pipe.encode_prompt([caption.text for caption, _ in pairs], "cpu", 1, True)
    v_uncond, v_text = bundled_pipe.unet(torch.cat([noisy, noisy]), t, torch.cat([uncond, cond])).sample.chunk(2)
    x0 = predicted_original_sample(bundled_pipe.scheduler, v_uncond + 8 * (v_text - v_uncond), noisy, 0, t)
    for z, bound in ((latents, 0.03), (x0, 0.1)):  # mean absolute error, pixels in [-1, 1]; measured 0.017 and 0.075
        assert (tiny.decode(z).sample - vae.decode(z / scale).sample).abs().mean() < bound  # untrained: 0.29 on x̂0


def test_bundled_generator_follows_one_object_captions(bundled_pipe):
    """Color, shape, count and position: the bar is 85% exact accuracy on one-object captions with fixed embeddings."""
    prompts = ["a red circle", "a green square", "a blue triangle", "a yellow circle on the left",
               "a purple square at the top", "a white triangle at the bottom", "a red square on the right", "a green circle"]
    generator = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    images = date.generate(bundled_pipe, prompts, None, num_inference_steps=25, guidance_scale=8.0, skip_itrs=[],
                           generator=generator).images
    assert all(image.size == (SIZE, SIZE) for image in images)
    verdicts = [check(image, prompt) for image, prompt in zip(images, prompts)]
    assert sum(v.ok for v in verdicts) >= 7


def test_sampling_starts_where_no_signal_is_left_and_x0_is_finite_there(bundled_pipe):
    """Zero terminal SNR: the first step sees pure noise (the reason the generator learns positions from the caption),
    and DATE's x̂0 there is minus the model's v, not a division by sqrt(ᾱ) = 0."""
    scheduler = bundled_pipe.scheduler
    scheduler.set_timesteps(50)
    first = scheduler.timesteps[0]
    assert int(first) == 999 and scheduler.alphas_cumprod[999] == 0
    velocity, noisy = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8)
    assert torch.equal(predicted_original_sample(scheduler, velocity, noisy, 0, first), -velocity)


def test_bundled_clip_prefers_the_true_caption_to_a_near_miss():
    scorer = date.CLIPScorer.from_pretrained(os.path.join(ASSETS, "clip"))
    rng = np.random.default_rng(5)
    pairs = [sample_pair(rng) for _ in range(200)]
    images = torch.stack([torch.from_numpy(np.array(render(shapes))).permute(2, 0, 1) for _, shapes in pairs]).float() / 255
    true = [caption.text for caption, _ in pairs]
    false = [hard_negative(caption, [s.placed() for s in shapes], rng).text for caption, shapes in pairs]
    with torch.no_grad():
        preferred = (scorer.score(images, true) > scorer.score(images, false)).float().mean()
    assert preferred > 0.9


def test_bundled_clip_knows_where_things_are():
    """h must tell "on the left" from "on the right" (and a swapped relation) for DATE to have a signal about position."""
    scorer = date.CLIPScorer.from_pretrained(os.path.join(ASSETS, "clip"))
    rng = np.random.default_rng(6)
    pairs = [sample_pair(rng) for _ in range(300)]
    pairs = [(c, s) for c, s in pairs if c.position or c.relation in ("left_of", "above")]
    images = torch.stack([torch.from_numpy(np.array(render(shapes))).permute(2, 0, 1) for _, shapes in pairs]).float() / 255
    true = [caption.text for caption, _ in pairs]
    moved = [spatial_negative(caption, [s.placed() for s in shapes], rng).text for caption, shapes in pairs]
    with torch.no_grad():
        preferred = (scorer.score(images, true) > scorer.score(images, moved)).float().mean()
    assert len(pairs) > 150 and preferred > 0.8
