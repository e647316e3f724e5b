"""Universal Guidance on the stock pipeline against a plain transcription of the official SD sampler's loop."""
import pytest
import torch
from transformers import CLIPModel, CLIPTokenizer

import date
from date.methods import universal_guidance as ug
from tests.support.reference_date import clip_h
from tests.support.tiny_models import tiny_pipeline

PROMPTS = ["a red circle on the left", "a photo of a dog on a beach"]
W, STEPS = 3.0, 4


def reference_ug(pipe, clip, tokenizer, latents, weight, recurrence, generators):
    """`DDIMSamplerWithGrad.sample`, written out: per DDIM step, k times: guided ε̂ = ε_cfg + s·√(1−ᾱ)·∇L at z_t,
    DDIM step (η = 0), and (but after the last) re-noise to t with fresh noise."""
    h = clip_h(clip, tokenizer, PROMPTS)
    scheduler, unet, vae = pipe.scheduler, pipe.unet, pipe.vae
    scheduler.set_timesteps(STEPS)
    cond, uncond = pipe.encode_prompt(PROMPTS, "cpu", 1, True)
    x = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        a = scheduler.alphas_cumprod[int(t)]
        prev = int(t) - 1000 // STEPS
        a_prev = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
        for j in range(recurrence):
            z = x.detach().requires_grad_(True)
            u, c = unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
            eps = u + W * (c - u)
            z0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
            grad = torch.autograd.grad(-h(vae.decode(z0 / vae.config.scaling_factor).sample / 2 + 0.5).sum(), z)[0]
            eps_hat = eps.detach() + weight * (1 - a).sqrt() * grad
            z0_hat = (x - (1 - a).sqrt() * eps_hat) / a.sqrt()
            x_prev = a_prev.sqrt() * z0_hat + (1 - a_prev).sqrt() * eps_hat
            if j < recurrence - 1:
                noise = torch.cat([torch.randn((1, *x.shape[1:]), generator=g) for g in generators])
                x = (a / a_prev).sqrt() * x_prev + (1 - a / a_prev).sqrt() * noise
        x = x_prev.detach()
    return x


@pytest.mark.parametrize("weight, recurrence", [(50.0, 1), (50.0, 3)])
def test_matches_the_official_loop(tiny_dirs, weight, recurrence):
    scorer = date.CLIPScorer.from_pretrained(tiny_dirs["clip"])
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def gens():
        return [torch.Generator().manual_seed(30 + k) for k in range(2)]

    ours = ug.generate(tiny_pipeline(tiny_dirs["tokenizer"]), PROMPTS, scorer, guidance_weight=weight,
                       recurrence=recurrence, num_inference_steps=STEPS, guidance_scale=W, latents=latents,
                       generator=gens(), output_type="latent").images
    reference = reference_ug(tiny_pipeline(tiny_dirs["tokenizer"]), CLIPModel.from_pretrained(tiny_dirs["clip"]),
                             CLIPTokenizer.from_pretrained(tiny_dirs["clip"]), latents, weight, recurrence, gens())
    fixed = tiny_pipeline(tiny_dirs["tokenizer"])(PROMPTS, num_inference_steps=STEPS, guidance_scale=W, latents=latents,
                                                  output_type="latent").images
    relative = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    assert relative(ours, fixed) > 1e-3, "the guidance must change the result"
    assert relative(ours, reference) <= 1e-5, relative(ours, reference)


def test_v_prediction_is_guided_in_epsilon_space(tiny_dirs):
    """The same network read as v (its ε converted by a hook) must give the same guided samples as read as ε."""
    scorer = date.CLIPScorer.from_pretrained(tiny_dirs["clip"])
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    v_pipe = tiny_pipeline(tiny_dirs["tokenizer"], prediction_type="v_prediction")
    alphas = v_pipe.scheduler.alphas_cumprod

    def as_v(module, args, kwargs, output):
        a = alphas[int(args[1] if len(args) > 1 else kwargs["timestep"])]
        z = args[0] if args else kwargs["sample"]
        return ((output[0] - (1 - a).sqrt() * z) / a.sqrt(), *output[1:])

    v_pipe.unet.register_forward_hook(as_v, with_kwargs=True)
    kwargs = dict(guidance_weight=50.0, recurrence=2, num_inference_steps=STEPS, guidance_scale=W, latents=latents,
                  output_type="latent")
    ours = ug.generate(v_pipe, PROMPTS, scorer, generator=[torch.Generator().manual_seed(k) for k in range(2)], **kwargs)
    reference = ug.generate(tiny_pipeline(tiny_dirs["tokenizer"]), PROMPTS, scorer,
                            generator=[torch.Generator().manual_seed(k) for k in range(2)], **kwargs)
    assert torch.allclose(ours.images, reference.images, atol=1e-5)


def test_no_guidance_at_zero_terminal_snr(tiny_dirs):
    """At ᾱ_t = 0 there is no score to guide: a one-step zero-SNR sampler is the stock pipeline."""
    from diffusers import DDIMScheduler

    pipe = tiny_pipeline(tiny_dirs["tokenizer"], prediction_type="v_prediction")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, rescale_betas_zero_snr=True, timestep_spacing="trailing")
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    stock = pipe(PROMPTS, num_inference_steps=1, guidance_scale=W, latents=latents, output_type="latent").images
    ours = ug.generate(pipe, PROMPTS, date.CLIPScorer.from_pretrained(tiny_dirs["clip"]), guidance_weight=50.0,
                       num_inference_steps=1, guidance_scale=W, latents=latents, output_type="latent").images
    assert torch.isfinite(ours).all() and torch.allclose(ours, stock, atol=1e-6)


def test_zero_weight_without_recurrence_is_the_stock_pipeline_and_hooks_go(tiny_dirs):
    scorer = date.CLIPScorer.from_pretrained(tiny_dirs["clip"])
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    stock = pipe(PROMPTS, num_inference_steps=STEPS, guidance_scale=W, latents=latents, output_type="latent").images
    ours = ug.generate(pipe, PROMPTS, scorer, guidance_weight=0.0, num_inference_steps=STEPS, guidance_scale=W,
                       latents=latents, output_type="latent").images
    assert torch.allclose(ours, stock, atol=1e-6)
    assert not pipe.unet._forward_hooks


def test_backward_guidance_raises_h_at_the_step(tiny_dirs):
    scorer = date.CLIPScorer.from_pretrained(tiny_dirs["clip"])
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    pipe.scheduler.set_timesteps(STEPS)
    cond, uncond = pipe.encode_prompt(PROMPTS, "cpu", 1, True)
    t = pipe.scheduler.timesteps[1]
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    a = pipe.scheduler.alphas_cumprod[int(t)]

    def h_of(eps):
        with torch.no_grad():
            return guidance.h((z - (1 - a).sqrt() * eps) / a.sqrt())

    guidance = ug.Guidance(pipe, scorer, PROMPTS, uncond, cond, W, 0.0, 0, 1e-2)
    plain = guidance(z, t)
    guidance = ug.Guidance(pipe, scorer, PROMPTS, uncond, cond, W, 0.0, 5, 1e-2)
    assert (h_of(guidance(z, t)) > h_of(plain)).all()


def test_only_sd_with_ddim(tiny_dirs):
    from date.pipeline.schedulers import make_scheduler

    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    pipe.scheduler = make_scheduler("DPM", pipe.scheduler.config)
    with pytest.raises(ValueError, match="DDIM"):
        ug.generate(pipe, PROMPTS, date.CLIPScorer.from_pretrained(tiny_dirs["clip"]), num_inference_steps=2)


def test_generate_date_method_ug(tiny_dirs, tmp_path, capsys, generate_date_cli):
    import json

    import numpy as np
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    from date.io.seeding import image_generator
    from date.pipeline.schedulers import make_scheduler
    from tests.support.evaluation_helpers import assert_one_line_error

    flags = ["--method", "ug", "--h_model", f"clip={tiny_dirs['clip']}", "--optim_forward_guidance_wt", "40",
             "--optim_num_steps", "2"]
    generate_date_cli(*flags)
    capsys.readouterr()  # the successful run's output
    folder = tmp_path / "out" / "UG_CLIP_scheduler_DDIM_steps_3_w_8.0_seed_6"
    settings = json.load(open(folder / "config.json"))["settings"]
    assert settings["method"]["name"] == "ug" and settings["method"]["optim_num_steps"] == 2 and settings["update"] is None
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["sd"], safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DDIM", pipe.scheduler.config)
    expected = ug.generate(pipe, PROMPTS, date.CLIPScorer.from_pretrained(tiny_dirs["clip"]), guidance_weight=40.0,
                           recurrence=2, num_inference_steps=3, guidance_scale=8.0,
                           generator=[image_generator(6, k) for k in range(2)]).images
    for k in range(2):
        assert np.array_equal(np.asarray(Image.open(folder / f"{k}.png")), np.asarray(expected[k]))
    for extra, message in [(["--scheduler", "DPM"], "DDIM"), (["--w", "1"], "w > 1"), (["--optim_num_steps", "0"], "expected a positive integer")]:
        with pytest.raises(SystemExit) as exit_info:
            generate_date_cli(*flags, *extra, save=tmp_path / "bad")
        assert_one_line_error(capsys, exit_info, message)
        assert not (tmp_path / "bad").exists()
