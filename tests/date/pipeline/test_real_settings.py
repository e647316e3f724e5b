"""DATE under the options people pass with real checkpoints: several images per prompt, extra denoiser calls within a
step (FLUX's true CFG, SD3's skip-layer guidance), guidance rescale, compiled denoisers, step-end callbacks, an fp16
VAE that the pipeline upcasts, and the pipeline's own step count."""
import pytest
import torch

import date
from date import sampling
from date.io.errors import StoppedRun
from date.objective import Objective, power_of_two_scale
from date.pipeline.schedulers import predicted_original_sample
from tests.support.tiny_families import tiny_flux, tiny_sd3, tiny_sdxl
from tests.support.tiny_models import tiny_pipeline

PROMPTS = ["a red circle on the left", "a dog on the beach"]
SIZE, STEPS, ITRS, T5_LENGTH = 16, 4, [0, 2], 24


@pytest.fixture(scope="module")
def scorer(tiny_dirs):
    return date.CLIPScorer.from_pretrained(tiny_dirs["clip"])


def generators(n, first=0):
    return [torch.Generator().manual_seed(100 + first + k) for k in range(n)]


def record_steps(monkeypatch):
    """The sampling step index and timestep of every DATE step that runs, and a flag that is set while one runs (the
    pipeline's own calls are those made while it is not)."""
    seen, inside = [], [False]
    step = sampling.date_step

    def recorded(objective, embeds, call, uncond_call, step_index, **kwargs):
        seen.append((step_index, float(call["timestep"].flatten()[0])))
        inside[0] = True
        try:
            return step(objective, embeds, call, uncond_call, step_index, **kwargs)
        finally:
            inside[0] = False

    monkeypatch.setattr(sampling, "date_step", recorded)
    return seen, inside


@pytest.mark.parametrize("family", ["sd", "sdxl", "flux"])
def test_images_per_prompt_equal_the_prompts_written_out(family, tiny_dirs, scorer):
    """Each image has its own c, updated on its own: the same latents as repeating each prompt."""
    make = {"sd": lambda: tiny_pipeline(tiny_dirs["tokenizer"]), "sdxl": lambda: tiny_sdxl(tiny_dirs["tokenizer"]),
            "flux": lambda: tiny_flux(tiny_dirs["tokenizer"])}[family]
    extra = {"max_sequence_length": T5_LENGTH} if family == "flux" else {}
    common = dict(num_inference_steps=STEPS, skip_itrs=ITRS, height=SIZE, width=SIZE, output_type="latent", **extra)
    repeated = date.generate(make(), PROMPTS, scorer, num_images_per_prompt=2, generator=generators(4), **common).images
    written = date.generate(make(), [p for p in PROMPTS for _ in range(2)], scorer, generator=generators(4),
                            **common).images
    fixed = make()([p for p in PROMPTS for _ in range(2)], generator=generators(4), num_inference_steps=STEPS,
                   height=SIZE, width=SIZE, output_type="latent", **extra).images
    assert torch.allclose(repeated, written, atol=1e-5, rtol=1e-5)
    assert (repeated - fixed).flatten(1).norm(dim=1).min() > 1e-3  # every image was updated


def test_flux_true_cfg_updates_at_the_requested_steps_and_keeps_the_negative_prompt(tiny_dirs, scorer, monkeypatch):
    pipe = tiny_flux(tiny_dirs["tokenizer"])
    negative, _, _ = pipe.encode_prompt(["blurry"] * 2, None, device="cpu", max_sequence_length=T5_LENGTH)
    seen, inside = record_steps(monkeypatch)
    received = []  # what the transformer's text projection gets in the pipeline's own calls
    pipe.transformer.context_embedder.register_forward_pre_hook(
        lambda module, args: None if inside[0] else received.append(args[0].clone()))
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=STEPS, skip_itrs=ITRS, height=SIZE, width=SIZE,
                  output_type="latent", generator=generators(2), max_sequence_length=T5_LENGTH,
                  negative_prompt=["blurry"] * 2, true_cfg_scale=4.0)
    timesteps = pipe.scheduler.timesteps
    assert seen == [(i, pytest.approx(float(timesteps[i]) / 1000)) for i in ITRS]
    negative_calls = [text for text in received if torch.allclose(text, negative, atol=1e-5)]
    assert len(negative_calls) == STEPS  # every negative call, with the negative prompt as the pipeline encoded it


def capture_x0(monkeypatch):
    """At each DATE step: the conditional call, the unconditional half (or None), and DATE's x̂0 at c_org."""
    captured = []
    step = sampling.date_step

    def recorded(objective, embeds, call, uncond_call, step_index, **kwargs):
        with torch.no_grad():
            point = objective.point(call, uncond_call, step_index)
            captured.append((step_index, call, uncond_call, objective.predicted_x0(objective.cond_org, point,
                                                                                   slice(0, len(embeds)))))
        return step(objective, embeds, call, uncond_call, step_index, **kwargs)

    monkeypatch.setattr(sampling, "date_step", recorded)
    return captured


def test_flux_true_cfg_x0_is_the_pipeline_combination(tiny_dirs, scorer, monkeypatch):
    """x̂0 = x_t − σ·(ε_neg + s·(ε_pos − ε_neg)), ε_neg from the negative prompt as the pipeline encodes it."""
    pipe = tiny_flux(tiny_dirs["tokenizer"])
    captured = capture_x0(monkeypatch)
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=STEPS, skip_itrs=ITRS, height=SIZE, width=SIZE,
                  output_type="latent", generator=generators(2), max_sequence_length=T5_LENGTH,
                  negative_prompt=["blurry", "dark"], true_cfg_scale=4.0)
    negative, negative_pooled, _ = pipe.encode_prompt(["blurry", "dark"], None, device="cpu",
                                                      max_sequence_length=T5_LENGTH)
    for i, call, uncond_call, x0 in captured:
        assert uncond_call is None  # FLUX has no batched unconditional half
        with torch.no_grad():
            positive = pipe.transformer(**call)[0]
            negative_noise = pipe.transformer(**{**call, "encoder_hidden_states": negative,
                                                 "pooled_projections": negative_pooled})[0]
        expected = call["hidden_states"] - pipe.scheduler.sigmas[i] * (negative_noise + 4.0 * (positive - negative_noise))
        assert torch.allclose(x0, expected, atol=1e-5)
        assert not torch.allclose(x0, call["hidden_states"] - pipe.scheduler.sigmas[i] * positive, atol=1e-3)


def test_sd3_skip_layer_guidance_x0_is_the_pipeline_combination(tiny_dirs, scorer, monkeypatch):
    """x̂0 from ε_u + w·(ε_c − ε_u) + s·(ε_c − ε_skip) at the steps where the pipeline adds the skip-layer term."""
    pipe = tiny_sd3(tiny_dirs["tokenizer"])
    captured = capture_x0(monkeypatch)
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=STEPS, skip_itrs=[0, 1, 2], height=SIZE, width=SIZE,
                  output_type="latent", latents=torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(0)),
                  max_sequence_length=T5_LENGTH, guidance_scale=7.0, skip_guidance_layers=[0],
                  skip_layer_guidance_scale=2.0, skip_layer_guidance_start=0.2, skip_layer_guidance_stop=0.6)
    for i, call, uncond_call, x0 in captured:  # 4·0.2 < i < 4·0.6: the term is added at steps 1 and 2
        with torch.no_grad():
            uncond, cond = pipe.transformer(**uncond_call)[0], pipe.transformer(**call)[0]
            noise = uncond + 7.0 * (cond - uncond)
            if i in (1, 2):
                noise = noise + 2.0 * (cond - pipe.transformer(**call, skip_layers=[0])[0])
        assert torch.allclose(x0, call["hidden_states"] - pipe.scheduler.sigmas[i] * noise, atol=1e-5), i


def test_sd3_skip_layer_guidance_updates_at_the_requested_steps(tiny_dirs, scorer, monkeypatch):
    pipe = tiny_sd3(tiny_dirs["tokenizer"])
    seen, inside = record_steps(monkeypatch)
    skipping, skip_calls = [False], []  # the text the pipeline's skip-layer calls' blocks receive: its own, not DATE's
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: skipping.__setitem__(0, kwargs.get("skip_layers") is not None), with_kwargs=True)
    pipe.transformer.context_embedder.register_forward_pre_hook(
        lambda module, args: skip_calls.append(args[0].clone()) if skipping[0] and not inside[0] else None)
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=STEPS, skip_itrs=ITRS, height=SIZE, width=SIZE,
                  output_type="latent", latents=torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(0)),
                  max_sequence_length=T5_LENGTH, skip_guidance_layers=[0], skip_layer_guidance_start=0.0,
                  skip_layer_guidance_stop=1.0)
    assert seen == [(i, pytest.approx(float(pipe.scheduler.timesteps[i]))) for i in ITRS]
    cond, *_ = pipe.encode_prompt(PROMPTS, None, None, device="cpu", do_classifier_free_guidance=False,
                                  max_sequence_length=T5_LENGTH)
    assert len(skip_calls) == STEPS - 1 and all(torch.allclose(text, cond, atol=1e-5) for text in skip_calls)


def test_guidance_rescale_enters_the_predicted_x0(tiny_dirs, scorer):
    """x̂0 inside the update is the one the sampler uses: rescaled CFG, as the pipeline computes it."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    pipe.scheduler.set_timesteps(STEPS)
    cond, uncond = pipe.encode_prompt(PROMPTS, "cpu", 1, True)
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), pipe.scheduler.timesteps[1]
    objective = Objective(pipe=pipe, family=date.pipeline.families.SD, denoiser=pipe.unet, sample_name="sample",
                          scorer=scorer, prompts=PROMPTS, guidance_scale=7.5, weight_prior=0.0, decoder=pipe.vae,
                          height=SIZE * 4, width=SIZE * 4, guidance_rescale=0.7)
    call = {"sample": x, "timestep": t, "encoder_hidden_states": cond}
    objective.start(call)
    with torch.no_grad():
        point = objective.point(call, {**call, "encoder_hidden_states": uncond}, 1)
        ours = objective.predicted_x0(objective.cond_org, point, slice(0, 2))
        e_u, e_c = pipe.unet(x, t, uncond).sample, pipe.unet(x, t, cond).sample
        expected_noise = rescale_noise_cfg(e_u + 7.5 * (e_c - e_u), e_c, 0.7)
    expected = predicted_original_sample(pipe.scheduler, expected_noise, x, 1, t)
    plain = predicted_original_sample(pipe.scheduler, e_u + 7.5 * (e_c - e_u), x, 1, t)
    assert torch.allclose(ours, expected, atol=1e-5) and not torch.allclose(ours, plain, atol=1e-3)


@pytest.mark.parametrize("how", ["torch.compile(module)", "module.compile()"])
def test_a_compiled_unet_gives_the_plain_unet_images(how, tiny_dirs, scorer):
    common = dict(num_inference_steps=3, skip_itrs=[0, 1], output_type="latent",
                  latents=torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2)))
    plain = date.generate(tiny_pipeline(tiny_dirs["tokenizer"]), PROMPTS, scorer, **common).images
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    torch._dynamo.reset()
    if how == "module.compile()":
        pipe.unet.compile(backend="eager")
    else:
        pipe.unet = torch.compile(pipe.unet, backend="eager")
    compiled = date.generate(pipe, PROMPTS, scorer, **common).images
    assert torch.allclose(compiled, plain, atol=1e-5)


def test_a_callback_that_edits_the_prompt_embedding_is_refused(tiny_dirs, scorer):
    def edit(pipe, step, timestep, tensors):
        return {"prompt_embeds": tensors["prompt_embeds"] * 1.01}

    with pytest.raises(ValueError, match="text embedding changed between sampling steps .step 1.*prompt_embeds"):
        date.generate(tiny_pipeline(tiny_dirs["tokenizer"]), PROMPTS, scorer, num_inference_steps=3, skip_itrs=[0],
                      output_type="latent", callback_on_step_end=edit,
                      callback_on_step_end_tensor_inputs=["prompt_embeds"])


def test_the_pipeline_default_step_count(tiny_dirs, scorer):
    pipe = tiny_flux(tiny_dirs["tokenizer"], guidance_embeds=False)  # FLUX.1-schnell: 4 steps
    date.generate(pipe, PROMPTS[:1], scorer, skip_freq=2, height=SIZE, width=SIZE, output_type="latent",
                  max_sequence_length=T5_LENGTH)
    assert len(pipe.scheduler.timesteps) == 4


def _overflowing_fp16_sdxl(tokenizer_dir, force_upcast):
    """A tiny SDXL in fp16 whose VAE decoder overflows fp16 (its first layer sums its inputs × 2e4), fine in fp32."""
    pipe = tiny_sdxl(tokenizer_dir)
    with torch.no_grad():
        pipe.vae.decoder.conv_in.weight.fill_(2e4)
    pipe.vae.register_to_config(force_upcast=force_upcast)
    return pipe.to(torch.float16)


def test_fp16_vae_decodes_as_the_pipeline_does_and_an_overflow_stops_the_run(tiny_dirs, scorer):
    common = dict(num_inference_steps=2, skip_itrs=[0], height=SIZE, width=SIZE, output_type="latent",
                  generator=generators(2))
    upcast = _overflowing_fp16_sdxl(tiny_dirs["tokenizer"], force_upcast=True)
    with torch.no_grad():  # fp16 overflows where fp32 does not
        latents = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(0))
        assert not torch.isfinite(upcast.vae.decode(latents.half()).sample).all()
        assert torch.isfinite(upcast.vae.float().decode(latents).sample).all()
        upcast.vae.half()
    images = date.generate(upcast, PROMPTS, scorer, **common).images
    assert torch.isfinite(images).all() and upcast.vae.dtype == torch.float16  # decoded in fp32, put back after
    with pytest.raises(StoppedRun, match="step 0: h or its gradient is not finite for image 0, 1 .*--dtype fp32"):
        date.generate(_overflowing_fp16_sdxl(tiny_dirs["tokenizer"], force_upcast=False), PROMPTS, scorer, **common)


def test_loss_scale_is_an_exact_power_of_two_per_sample():
    grad = torch.tensor([[3e-6, -1e-7], [0.0, 0.0], [float("nan"), 1.0], [40.0, 2.0]])
    scale = power_of_two_scale(grad).flatten()
    peaks = (grad.abs().amax(dim=1) * scale)[[0, 3]]
    assert ((peaks >= 0.5) & (peaks < 1)).all() and scale[1] == 1 and scale[2] == 1
    assert torch.equal(torch.log2(scale), torch.log2(scale).round())


@pytest.mark.parametrize("family, dtype, per_element", [("sdxl", torch.float16, 2.0e-3), ("flux", torch.bfloat16, 3.5e-4)])
def test_half_precision_denoiser_receives_the_fp32_step(family, dtype, per_element, tiny_dirs, scorer, monkeypatch):
    """The step is ρ in fp32 and the denoiser's text layer reads it as such; ρ per element as on the real model
    (SD 1.5 / SDXL at ρ = 0.5: 2e-3; FLUX at 0.5: 3.5e-4), where fp16/bf16 would round much of it away."""
    pipe = (tiny_sdxl if family == "sdxl" else tiny_flux)(tiny_dirs["tokenizer"]).to(dtype)
    text_layer = (pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k if family == "sdxl"
                  else pipe.transformer.context_embedder)
    seen, inside = record_steps(monkeypatch)
    steps = []
    update = sampling.date_step

    def recorded(objective, embeds, call, uncond_call, step_index, **kwargs):
        updated, uncond = update(objective, embeds, call, uncond_call, step_index, **kwargs)
        steps.append((updated - objective.cond_org).view(len(updated), *objective.condition.shapes[0]))
        return updated, uncond

    monkeypatch.setattr(sampling, "date_step", recorded)
    received = []
    text_layer.register_forward_pre_hook(lambda module, args: None if inside[0] else received.append(args[0]))
    elements = (77 * 64) if family == "sdxl" else (T5_LENGTH * 32)
    rho = per_element * elements ** 0.5
    extra = {} if family == "sdxl" else {"max_sequence_length": T5_LENGTH}
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=2, skip_itrs=[0], lr_upt_prompt=rho, height=SIZE,
                  width=SIZE, output_type="latent", generator=generators(2), **extra)
    after, next_step = received[0][-2:], received[1][-2:]  # step 0's call runs after its update; [-2:]: conditional
    assert after.dtype == torch.float32
    cond_org = after - steps[0]
    moved = (after.float() - cond_org).flatten(1)
    intended = steps[0].flatten(1)
    assert torch.allclose(moved.norm(dim=1), torch.full((2,), rho), rtol=0.02)
    assert torch.nn.functional.cosine_similarity(moved, intended).min() > 0.999
    assert torch.equal(next_step, after)  # step 1 gets the same updated c
    # a c kept in the pipeline's dtype would lose part of the step to rounding (over 1% of it here); ours loses none
    rounded = ((cond_org.to(dtype) + steps[0].to(dtype)).float() - cond_org).flatten(1)
    assert ((rounded - intended).norm(dim=1) > 0.01 * rho).all()
    assert torch.allclose(moved, intended, atol=1e-6)


def test_sdxl_updated_pooled_embedding_reaches_its_layer_in_fp32(tiny_dirs, scorer, monkeypatch):
    """--update_pooled in fp16: SDXL's UNet would cast the pooled embedding to fp16 with its time-id features."""
    pipe = tiny_sdxl(tiny_dirs["tokenizer"]).to(torch.float16)
    steps, inside, update = [], [False], sampling.date_step

    def recorded(objective, embeds, call, uncond_call, step_index, **kwargs):
        inside[0] = True
        updated, uncond = update(objective, embeds, call, uncond_call, step_index, **kwargs)
        inside[0] = False
        steps.append((updated - objective.cond_org, objective.cond_org))
        return updated, uncond

    monkeypatch.setattr(sampling, "date_step", recorded)
    received = []
    pipe.unet.add_embedding.linear_1.register_forward_pre_hook(
        lambda module, args: None if inside[0] else received.append(args[0]))
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=2, skip_itrs=[0], lr_upt_prompt=0.5, height=SIZE,
                  width=SIZE, output_type="latent", generator=generators(2), update_pooled=True)
    (step, cond_org), width = steps[0], pipe.text_encoder_2.config.projection_dim
    pooled = received[0][-2:, :width]  # step 0's own call, after its update; [-2:]: the conditional rows
    assert pooled.dtype == torch.float32 and step[:, -width:].abs().min() > 0
    assert torch.allclose(pooled - cond_org[:, -width:], step[:, -width:], atol=1e-7)  # no fp16 rounding
    assert torch.equal(received[1][-2:, :width], pooled)  # step 1 gets the same updated pooled embedding


# stabilityai/stable-diffusion-xl-base-1.0's scheduler/scheduler_config.json
SDXL_EULER = dict(beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, clip_sample=False,
                  interpolation_type="linear", num_train_timesteps=1000, prediction_type="epsilon", sample_max_value=1.0,
                  set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, timestep_spacing="leading",
                  trained_betas=None, use_karras_sigmas=False)


def test_sdxl_with_its_real_euler_scheduler_x0_is_the_scheduler_own(tiny_dirs, scorer, monkeypatch):
    """With SDXL's shipped Euler configuration, DATE's x̂0 after each update is the scheduler's own x̂0 of that step."""
    from diffusers import EulerDiscreteScheduler

    pipe = tiny_sdxl(tiny_dirs["tokenizer"])
    pipe.scheduler = EulerDiscreteScheduler.from_config(SDXL_EULER)
    ours = {}
    update = sampling.date_step

    def recorded(objective, embeds, call, uncond_call, step_index, **kwargs):
        updated, uncond = update(objective, embeds, call, uncond_call, step_index, **kwargs)
        with torch.no_grad():
            point = objective.point(call, uncond_call, step_index)
            ours[step_index] = objective.predicted_x0(updated, point, slice(0, len(updated)))
        return updated, uncond

    monkeypatch.setattr(sampling, "date_step", recorded)
    theirs, scheduler_step = {}, pipe.scheduler.step

    def recorded_scheduler_step(*args, **kwargs):
        index = pipe.scheduler.step_index or 0
        output = scheduler_step(*args, **kwargs)
        theirs[index] = output[1] if isinstance(output, tuple) else output.pred_original_sample
        return output

    monkeypatch.setattr(pipe.scheduler, "step", recorded_scheduler_step)
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=STEPS, skip_itrs=ITRS, height=SIZE, width=SIZE,
                  output_type="latent", generator=generators(2))
    assert sorted(ours) == ITRS
    for i in ITRS:
        assert torch.allclose(ours[i], theirs[i], atol=1e-4, rtol=1e-4), (i, (ours[i] - theirs[i]).abs().max())


class _Constant(date.Scorer):
    """h that ignores the image: its gradient is exactly zero."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def score(self, images, prompts):
        return self.weight + 0 * images.sum(dim=(1, 2, 3))


def test_a_zero_gradient_is_a_zero_step_and_is_logged(tiny_dirs, caplog):
    common = dict(num_inference_steps=3, output_type="latent",
                  latents=torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3)))
    with caplog.at_level("WARNING", logger="date"):
        updated = date.generate(tiny_pipeline(tiny_dirs["tokenizer"]), PROMPTS, _Constant(), skip_itrs=[1],
                                **common).images
    fixed = date.generate(tiny_pipeline(tiny_dirs["tokenizer"]), PROMPTS, None, **common).images
    assert torch.allclose(updated, fixed, atol=1e-5, rtol=1e-5)
    assert "DATE step 1: zero gradient for image 0, 1 of the batch" in caplog.text
