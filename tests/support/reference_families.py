"""Independent, deliberately plain DATE sampling loops for the families beyond SD 1.x/2.x, one function each, in the
style of `reference_date.py`: explicit loop, the pipeline's own encoders and scheduler, one backward through denoiser,
VAE and CLIP together, used only to check `date.generate`. Each returns the final latents (in the pipeline's layout).
"""
import torch
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

from tests.support.reference_date import clip_h, x0_from_scheduler


def _step(c, loss, rho, mask=None):
    grad = torch.autograd.grad(loss.sum(), c)[0]
    if mask is not None:  # padding stays where it is
        grad = grad * mask
    return (c - rho * grad / grad.flatten(1).norm(dim=1)[:, None, None]).detach()


def reference_sdxl(pipe, clip, tokenizer, prompts, latents, steps, w, itrs, rho, size):
    h, n = clip_h(clip, tokenizer, prompts), len(prompts)
    cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=True)
    time_ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), cond.dtype,
                                      pipe.text_encoder_2.config.projection_dim).repeat(n, 1)
    extra_u = {"text_embeds": uncond_pooled, "time_ids": time_ids}
    extra_c = {"text_embeds": pooled, "time_ids": time_ids}
    scheduler, unet, vae = pipe.scheduler, pipe.unet, pipe.vae
    scheduler.set_timesteps(steps)
    x = latents * scheduler.init_noise_sigma
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            mi = scheduler.scale_model_input(x, t)
            e_u = unet(mi, t, encoder_hidden_states=uncond, added_cond_kwargs=extra_u).sample
            if i in itrs:
                with torch.enable_grad():
                    c = cond.clone().requires_grad_(True)
                    e = e_u + w * (unet(mi, t, encoder_hidden_states=c, added_cond_kwargs=extra_c).sample - e_u)
                    x0 = x0_from_scheduler(scheduler, e, t, x)
                    cond = _step(c, -h(vae.decode(x0 / vae.config.scaling_factor).sample / 2 + 0.5), rho)
            e = e_u + w * (unet(mi, t, encoder_hidden_states=cond, added_cond_kwargs=extra_c).sample - e_u)
            x = scheduler.step(e, t, x).prev_sample
    return x


def _flow_decode(vae, x0):
    return vae.decode(x0 / vae.config.scaling_factor + vae.config.shift_factor).sample / 2 + 0.5


def reference_sd3(pipe, clip, tokenizer, prompts, latents, steps, w, itrs, rho, max_sequence_length):
    h = clip_h(clip, tokenizer, prompts)
    cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(prompts, None, None, device="cpu",
                                                             do_classifier_free_guidance=True,
                                                             max_sequence_length=max_sequence_length)
    scheduler, net = pipe.scheduler, pipe.transformer
    scheduler.set_timesteps(steps)
    x = latents
    # the 77 CLIP tokens are 2 × 32 wide (the tiny CLIP-L and G side by side), zero-padded to T5's width: they stay
    padding = torch.ones_like(cond[:1])
    padding[:, :77, 64:] = 0
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            ts, sigma = t.expand(len(x)), scheduler.sigmas[i]
            v_u = net(hidden_states=x, timestep=ts, encoder_hidden_states=uncond, pooled_projections=uncond_pooled).sample
            if i in itrs:
                with torch.enable_grad():
                    c = cond.clone().requires_grad_(True)
                    v = v_u + w * (net(hidden_states=x, timestep=ts, encoder_hidden_states=c, pooled_projections=pooled).sample - v_u)
                    cond = _step(c, -h(_flow_decode(pipe.vae, x - sigma * v)), rho, padding)  # x̂0 = x_t − σ·v
            v = v_u + w * (net(hidden_states=x, timestep=ts, encoder_hidden_states=cond, pooled_projections=pooled).sample - v_u)
            x = scheduler.step(v, t, x).prev_sample
    return x


def reference_flux(pipe, clip, tokenizer, prompts, generator, steps, w, itrs, rho, size, max_sequence_length):
    """FLUX.1-dev: one conditional prediction per step, the guidance scale as an input; no unconditional branch."""
    h, n = clip_h(clip, tokenizer, prompts), len(prompts)
    cond, pooled, text_ids = pipe.encode_prompt(prompts, None, device="cpu", max_sequence_length=max_sequence_length)
    x, image_ids = pipe.prepare_latents(n, pipe.transformer.config.in_channels // 4, size, size, cond.dtype, "cpu",
                                        generator)
    scheduler, net = pipe.scheduler, pipe.transformer
    mu = calculate_shift(x.shape[1], scheduler.config.base_image_seq_len, scheduler.config.max_image_seq_len,
                         scheduler.config.base_shift, scheduler.config.max_shift)
    sigmas = [1.0 - k * (1.0 - 1.0 / steps) / (steps - 1) for k in range(steps)]
    retrieve_timesteps(scheduler, steps, "cpu", sigmas=sigmas, mu=mu)
    guidance = torch.full([n], w) if net.config.guidance_embeds else None

    def velocity(c, t):
        return net(hidden_states=x, timestep=t.expand(n) / 1000, guidance=guidance, pooled_projections=pooled,
                   encoder_hidden_states=c, txt_ids=text_ids, img_ids=image_ids).sample

    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            if i in itrs:
                with torch.enable_grad():
                    c = cond.clone().requires_grad_(True)
                    x0 = pipe._unpack_latents(x - scheduler.sigmas[i] * velocity(c, t), size, size, pipe.vae_scale_factor)
                    cond = _step(c, -h(_flow_decode(pipe.vae, x0)), rho)
            x = scheduler.step(velocity(cond, t), t, x).prev_sample
    return x


def reference_pixart(pipe, clip, tokenizer, prompts, latents, steps, w, itrs, rho, max_sequence_length):
    h = clip_h(clip, tokenizer, prompts)
    cond, mask, uncond, uncond_mask = pipe.encode_prompt(prompts, True, device="cpu", clean_caption=False,
                                                         max_sequence_length=max_sequence_length)
    scheduler, net, vae = pipe.scheduler, pipe.transformer, pipe.vae
    scheduler.set_timesteps(steps)
    x = latents * scheduler.init_noise_sigma
    extra = {"resolution": None, "aspect_ratio": None}

    def predict(mi, t, c, m):
        out = net(mi, encoder_hidden_states=c, encoder_attention_mask=m, timestep=t.expand(len(mi)),
                  added_cond_kwargs=extra).sample
        return out.chunk(2, dim=1)[0]  # the transformer also predicts a variance

    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            mi = scheduler.scale_model_input(x, t)
            e_u = predict(mi, t, uncond, uncond_mask)
            if i in itrs:
                with torch.enable_grad():
                    c = cond.clone().requires_grad_(True)
                    x0 = x0_from_scheduler(scheduler, e_u + w * (predict(mi, t, c, mask) - e_u), t, x)
                    cond = _step(c, -h(vae.decode(x0 / vae.config.scaling_factor).sample / 2 + 0.5), rho,
                                 mask[:, :, None])
            x = scheduler.step(e_u + w * (predict(mi, t, cond, mask) - e_u), t, x).prev_sample
    return x
