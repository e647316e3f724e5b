import pytest
import torch
from transformers import CLIPModel, CLIPTokenizer

import date
from date.pipeline.families import SD
from date.objective import Objective
from date.step import StepSettings, date_step
from date.pipeline.schedulers import ONE_CALL_PER_STEP, SCHEDULERS, make_scheduler, predicted_original_sample
from tests.support.reference_date import x0_from_scheduler, reference_date
from tests.support.tiny_models import tiny_pipeline

PROMPTS = ["a red circle on the left", "a photo of a dog on a beach"]


@pytest.fixture(scope="module")
def scorer(tiny_dirs):
    return date.CLIPScorer.from_pretrained(tiny_dirs["clip"])


def make_pipe(tiny_dirs, scheduler="DDIM", prediction_type="epsilon"):
    pipe = tiny_pipeline(tiny_dirs["tokenizer"], prediction_type=prediction_type)
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    return pipe


def noise(seed=0):
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def generators():
    return [torch.Generator().manual_seed(10 + k) for k in range(2)]


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
@pytest.mark.parametrize("no_update", [{"skip_itrs": []}, {"lr_upt_prompt": 0.0}])
def test_no_update_equals_stock_pipeline(tiny_dirs, scorer, scheduler, no_update):
    pipe = make_pipe(tiny_dirs, scheduler)
    stock = pipe(PROMPTS, num_inference_steps=4, guidance_scale=8.0, latents=noise(), generator=generators(),
                 output_type="latent").images
    ours = date.generate(pipe, PROMPTS, scorer, num_inference_steps=4, guidance_scale=8.0, latents=noise(),
                         generator=generators(), output_type="latent", **no_update).images
    assert torch.equal(ours, stock)


@pytest.mark.parametrize("scheduler", ONE_CALL_PER_STEP)
def test_x0_matches_the_scheduler_own_prediction(tiny_dirs, scheduler):
    sched = make_pipe(tiny_dirs, scheduler).scheduler
    sched.set_timesteps(5)
    x = torch.randn(2, 4, 8, 8) * sched.init_noise_sigma
    eps = torch.randn(2, 4, 8, 8)
    for i, t in enumerate(sched.timesteps):
        ours = predicted_original_sample(sched, eps, sched.scale_model_input(x, t), i, t)
        theirs = x0_from_scheduler(sched, eps, t, x)
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (i, (ours - theirs).abs().max())
        x = sched.step(eps, t, x, generator=torch.Generator().manual_seed(0)).prev_sample


@pytest.mark.parametrize(
    "scheduler, prediction_type, settings",
    [
        ("DDIM", "epsilon", dict(skip_freq=2, num_upt_prompt=1, lr_upt_prompt=0.5)),
        ("DDIM", "epsilon", dict(skip_itrs=[0, 3], num_upt_prompt=2, lr_upt_prompt=0.8, weight_prior=0.5)),
        ("DDIM", "epsilon", dict(skip_itrs=[1, 2], num_upt_prompt=2, lr_upt_prompt=0.8, init_org=True)),
        ("DDIM", "v_prediction", dict(skip_freq=2, num_upt_prompt=1, lr_upt_prompt=0.5)),
        ("ODE", "epsilon", dict(skip_freq=2, num_upt_prompt=1, lr_upt_prompt=0.5)),
        ("DPM", "epsilon", dict(skip_itrs=[0, 2], num_upt_prompt=1, lr_upt_prompt=0.5)),
        ("DDPM", "epsilon", dict(skip_itrs=[1, 3], num_upt_prompt=1, lr_upt_prompt=0.5)),
        ("SDE", "v_prediction", dict(skip_itrs=[0, 2], num_upt_prompt=1, lr_upt_prompt=0.5)),
    ],
)
def test_matches_independent_reference_loop(tiny_dirs, scorer, scheduler, prediction_type, settings):
    steps = 4
    pipe = make_pipe(tiny_dirs, scheduler, prediction_type)
    ours = date.generate(pipe, PROMPTS, scorer, num_inference_steps=steps, guidance_scale=8.0, latents=noise(),
                         generator=generators(), output_type="latent", **settings).images
    itrs = settings.get("skip_itrs") or list(range(0, steps, settings.get("skip_freq", 10)))
    clip = CLIPModel.from_pretrained(tiny_dirs["clip"])
    reference = reference_date(
        make_pipe(tiny_dirs, scheduler, prediction_type), clip, CLIPTokenizer.from_pretrained(tiny_dirs["clip"]), PROMPTS,
        noise(), steps, 8.0, itrs, settings["num_upt_prompt"], settings["lr_upt_prompt"],
        settings.get("weight_prior", 0.0), settings.get("init_org", False), generator=generators(),
    )
    fixed = pipe(PROMPTS, num_inference_steps=steps, guidance_scale=8.0, latents=noise(), generator=generators(),
                 output_type="latent").images
    assert (ours - fixed).abs().max() > 1e-3, "the update must change the result"
    assert torch.allclose(ours, reference, atol=2e-4, rtol=1e-4), (ours - reference).abs().max()


def _update_at(tiny_dirs, scorer, lr, weight_prior=0.0, step_index=5):
    """An update at step 5 of 10, on the tiny pipeline's own kind of denoiser call."""
    pipe = make_pipe(tiny_dirs)
    pipe.scheduler.set_timesteps(10)
    cond, uncond = pipe.encode_prompt(PROMPTS, "cpu", 1, True)
    objective = Objective(pipe, SD, pipe.unet, "sample", scorer, PROMPTS, 8.0, weight_prior, pipe.vae, 16, 16)
    call = {"sample": noise(3), "timestep": pipe.scheduler.timesteps[step_index], "encoder_hidden_states": cond,
            "return_dict": False}
    uncond_call = {**call, "encoder_hidden_states": uncond}
    embeds = objective.start(call)
    settings = StepSettings(num_upt_prompt=1, lr_upt_prompt=lr)
    point = objective.point(call, uncond_call, step_index)
    return ((lambda c: date_step(objective, c, call, uncond_call, step_index, settings)[0]),
            (lambda c: objective.gradient(c, point)[:2]), embeds)


def test_update_raises_h_to_first_order(tiny_dirs, scorer):
    rho = 1e-2
    update, gradient_and_h, cond = _update_at(tiny_dirs, scorer, rho)
    grad, before = gradient_and_h(cond)
    _, after = gradient_and_h(update(cond))
    gain = after - before
    assert (gain > 0).all()
    predicted = rho * grad.flatten(1).norm(dim=1)  # first-order gain of a step of length rho along -g
    assert torch.allclose(gain, predicted, rtol=0.1), (gain, predicted)


def test_update_moves_each_sample_by_rho(tiny_dirs, scorer):
    update, _, cond = _update_at(tiny_dirs, scorer, 0.7)
    moved = (update(cond) - cond).flatten(1).norm(dim=1)
    assert torch.allclose(moved, torch.full((2,), 0.7), atol=1e-4)


def test_weight_prior_pulls_back_towards_original(tiny_dirs, scorer):
    update, _, cond = _update_at(tiny_dirs, scorer, 0.5, weight_prior=1e9)
    drifted = cond + 0.3 * torch.randn_like(cond)
    updated = update(drifted)
    # the prior dominates: the step points from the drifted embedding straight back to the original
    cos = torch.nn.functional.cosine_similarity((updated - drifted).flatten(1), (cond - drifted).flatten(1))
    assert (cos > 0.999).all()


def test_output_types(tiny_dirs, scorer):
    pipe = make_pipe(tiny_dirs)
    kwargs = dict(num_inference_steps=2, skip_freq=1, generator=generators())
    pil = date.generate(pipe, PROMPTS, scorer, **kwargs).images
    assert len(pil) == 2 and pil[0].size == (16, 16)
    kwargs["generator"] = generators()
    array = date.generate(pipe, PROMPTS, scorer, output_type="np", **kwargs).images
    assert array.shape == (2, 16, 16, 3) and array.min() >= 0 and array.max() <= 1
    kwargs["generator"] = generators()
    assert date.generate(pipe, PROMPTS, scorer, output_type="latent", **kwargs).images.shape == (2, 4, 8, 8)


def test_update_steps():
    assert date.update_steps(50, skip_freq=10) == {0, 10, 20, 30, 40}
    assert date.update_steps(50, skip_itrs=[0, 10, 99]) == {0, 10}
    assert date.update_steps(50, skip_itrs=[]) == set()
