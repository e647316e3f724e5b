"""EBCA as attention processors on the stock UNet, against a plain transcription of the official context update."""
import math

import pytest
import torch

from date.methods import ebca
from tests.support.tiny_models import tiny_pipeline

PROMPTS = ["a red circle on the left", "a photo of a dog on a beach"]


def reference_update(x, context, w_q, w_k, heads, gamma_attn, gamma_norm):
    """The official `bayesian_context_update`, written out per sample and head: A = softmax over pixels of
    (Q K^T / sqrt(d))^T, U = γ_attn·A·Q − γ_norm·softmax(‖k‖²)·k, ΔC = U·W_k."""
    delta = torch.zeros_like(context)
    for b in range(len(x)):
        q, k = x[b] @ w_q.T, context[b] @ w_k.T  # P×inner, L×inner
        d = q.shape[1] // heads
        attended = torch.cat([
            torch.softmax((q[:, h * d:(h + 1) * d] @ k[:, h * d:(h + 1) * d].T / math.sqrt(d)).T, dim=1)
            @ q[:, h * d:(h + 1) * d] for h in range(heads)], dim=1)
        weights = torch.softmax((k * k).sum(dim=1), dim=0)[:, None]
        delta[b] = (gamma_attn * attended - gamma_norm * weights * k) @ w_k
    return delta


def generators():
    return [torch.Generator().manual_seed(20 + k) for k in range(len(PROMPTS))]


def test_zero_gammas_are_the_stock_pipeline_and_the_unet_is_restored(tiny_dirs):
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    before = {name: type(p) for name, p in pipe.unet.attn_processors.items()}
    stock = pipe(PROMPTS, num_inference_steps=3, guidance_scale=8.0, generator=generators(), output_type="latent").images
    zero = ebca.generate(pipe, PROMPTS, gamma_attn=0.0, gamma_norm=0.0, num_inference_steps=3, guidance_scale=8.0,
                         generator=generators(), output_type="latent").images
    assert torch.equal(zero, stock)
    moved = ebca.generate(pipe, PROMPTS, gamma_attn=0.5, gamma_norm=0.5, num_inference_steps=3, guidance_scale=8.0,
                          generator=generators(), output_type="latent").images
    assert torch.isfinite(moved).all() and (moved - stock).abs().max() > 1e-3
    assert {name: type(p) for name, p in pipe.unet.attn_processors.items()} == before
    assert not pipe.unet._forward_pre_hooks


def test_context_cascades_through_every_cross_attention_layer_as_the_official_update(tiny_dirs):
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    calls = []
    with ebca.energy_cross_attention(pipe.unet, gamma_attn=0.3, gamma_norm=0.2):
        for processor in pipe.unet.attn_processors.values():
            if isinstance(processor, ebca.EnergyCrossAttention):
                inner = processor.inner

                def recording(attn, hidden_states, context, *args, _inner=inner, **kwargs):
                    calls.append((attn, hidden_states, context))
                    return _inner(attn, hidden_states, context, *args, **kwargs)

                processor.inner = recording
        cond, _ = pipe.encode_prompt(PROMPTS, "cpu", 1, False)
        for _ in range(2):  # two UNet calls: the context starts from the prompt embeddings each time
            calls.clear()
            with torch.no_grad():
                pipe.unet(torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), 500,
                          encoder_hidden_states=cond)
            layers = [n for n in pipe.unet.attn_processors if n.endswith("attn2.processor")]
            assert len(calls) == len(layers) >= 2
            assert torch.equal(calls[0][2], cond)
            for (attn, x, context), (_, _, following) in zip(calls, calls[1:]):
                expected = context + reference_update(x, context, attn.to_q.weight, attn.to_k.weight, attn.heads, 0.3, 0.2)
                assert torch.allclose(following, expected, atol=1e-5, rtol=1e-5)
                assert (following - context).abs().max() > 1e-4


@pytest.mark.parametrize("gammas", [(0.01, 0.02), (1.0, 0.0), (0.0, 1.0)])
def test_context_update_matches_the_transcription(tiny_dirs, gammas):
    attn = next(m for name, m in tiny_pipeline(tiny_dirs["tokenizer"]).unet.named_modules() if name.endswith("attn2"))
    x, context = torch.randn(2, 64, attn.to_q.in_features), torch.randn(2, 77, attn.to_k.in_features)
    with torch.no_grad():
        ours = ebca.context_update(attn, x, context, *gammas)
    assert torch.allclose(ours, reference_update(x, context, attn.to_q.weight.detach(), attn.to_k.weight.detach(),
                                                 attn.heads, *gammas), atol=1e-5, rtol=1e-5)


def test_generate_date_method_ebca(tiny_dirs, family_dirs, tmp_path, capsys, generate_date_cli):
    import json

    import numpy as np
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    from date.io.seeding import image_generator
    from date.pipeline.schedulers import make_scheduler
    from tests.support.evaluation_helpers import assert_one_line_error

    flags = ["--method", "ebca", "--gamma_attn", "0.3", "--gamma_norm", "0.1"]
    generate_date_cli(*flags)
    capsys.readouterr()  # the successful run's output
    folder = tmp_path / "out" / "EBCA_scheduler_DDIM_steps_3_w_8.0_seed_6"
    settings = json.load(open(folder / "config.json"))["settings"]
    assert settings["method"] == {"name": "ebca", "gamma_attn": 0.3, "gamma_norm": 0.1} and settings["update"] is None
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["sd"], safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DDIM", pipe.scheduler.config)
    expected = ebca.generate(pipe, PROMPTS, gamma_attn=0.3, gamma_norm=0.1, num_inference_steps=3,
                             generator=[image_generator(6, k) for k in range(2)]).images
    for k in range(2):
        assert np.array_equal(np.asarray(Image.open(folder / f"{k}.png")), np.asarray(expected[k]))
    for extra, message in [(["--h", "clip"], "uses no evaluation function"), (["--gamma_attn", "nan"], "finite"),
                           (["--model", family_dirs["flux"]], "needs a UNet pipeline")]:
        with pytest.raises(SystemExit) as exit_info:
            generate_date_cli(*flags, *extra, save=tmp_path / "bad")
        assert_one_line_error(capsys, exit_info, message)
        assert not (tmp_path / "bad").exists()


def test_ebca_official_sampler_and_date_refusing_it(tiny_dirs, tmp_path, capsys, generate_date_cli):
    """EBCA's official text-to-image setting: SD's own PNDM sampler, w = 7.5 (plus --fp16 on a GPU); DATE, which needs one
    denoiser call per step, refuses PNDM in one line before loading anything."""
    import numpy as np
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    from date.io.seeding import image_generator
    from date.pipeline.schedulers import make_scheduler
    from tests.support.evaluation_helpers import assert_one_line_error

    generate_date_cli("--method", "ebca", "--scheduler", "PNDM", "--w", "7.5")
    folder = tmp_path / "out" / "EBCA_scheduler_PNDM_steps_3_w_7.5_seed_6"
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["sd"], safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("PNDM", pipe.scheduler.config)
    expected = ebca.generate(pipe, PROMPTS, gamma_attn=0.01, gamma_norm=0.02, num_inference_steps=3, guidance_scale=7.5,
                             generator=[image_generator(6, k) for k in range(2)]).images
    for k in range(2):
        assert np.array_equal(np.asarray(Image.open(folder / f"{k}.png")), np.asarray(expected[k]))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        generate_date_cli("--scheduler", "PNDM", save=tmp_path / "bad")
    assert_one_line_error(capsys, exit_info, "--scheduler PNDM calls the denoiser more than once per step")
    assert not (tmp_path / "bad").exists()
