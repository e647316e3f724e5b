"""An independent, deliberately plain transcription of the paper's DATE sampling loop, used only to check date.generate.

It follows the official pipeline's structure (explicit loop, e_u computed once at an update step and reused, CLIP
features straight from the transformers model, x̂0 taken from a copy of the scheduler's own `step`), with stock schedulers.
"""
import copy

import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def _features(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def clip_h(clip_model, clip_tokenizer, prompts):
    """h(image) = cosine of CLIP features of the image (bilinear 224, CLIP normalization) and of its prompt."""
    tokens = clip_tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        text = _features(clip_model.get_text_features(**tokens))
        text = text / text.norm(dim=-1, keepdim=True)

    def h(image):
        image = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False)
        feats = _features(clip_model.get_image_features(pixel_values=(image - MEAN) / STD))
        return (feats / feats.norm(dim=-1, keepdim=True) * text).sum(dim=-1)

    return h


def x0_from_scheduler(scheduler, noise, t, x):
    twin = copy.deepcopy(scheduler)
    if hasattr(twin, "convert_model_output"):  # DPM-Solver: its step returns no x̂0
        if twin.step_index is None:
            twin._init_step_index(t)
        return twin.convert_model_output(noise, sample=x)
    return twin.step(noise, t, x).pred_original_sample


def reference_date(pipe, clip_model, clip_tokenizer, prompts, latents, steps, w, update_itrs, num_upt, lr,
                   weight_prior=0.0, init_org=False, generator=None, x0_decoder=None):
    """DATE's final latents; `x0_decoder` (fast mode) replaces the VAE for decoding x̂0 inside updates only."""
    scheduler, unet = pipe.scheduler, pipe.unet
    vae = x0_decoder if x0_decoder is not None else pipe.vae
    scheduler.set_timesteps(steps)
    cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True)
    cond_org = cond.clone()
    h = clip_h(clip_model, clip_tokenizer, prompts)
    n = len(prompts)
    x = latents * scheduler.init_noise_sigma
    extra = {"generator": generator} if generator is not None else {}
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            model_input = scheduler.scale_model_input(torch.cat([x, x]), t)
            if i in update_itrs:
                noise_uncond = unet(model_input[:n], t, encoder_hidden_states=uncond).sample
                for _ in range(num_upt):
                    with torch.enable_grad():
                        c = cond.clone().requires_grad_(True)
                        noise_text = unet(model_input[n:], t, encoder_hidden_states=c).sample
                        noise = noise_uncond + w * (noise_text - noise_uncond)
                        x0 = x0_from_scheduler(scheduler, noise, t, x)
                        loss = -h(vae.decode(x0 / vae.config.scaling_factor).sample / 2 + 0.5)
                        if weight_prior != 0:
                            loss = loss + weight_prior * ((cond_org - c) ** 2).mean(dim=(1, 2))
                        grad = torch.autograd.grad(loss.sum(), c)[0]
                    start = cond_org if init_org else cond
                    cond = start - lr * grad / grad.norm(dim=(1, 2))[:, None, None]
                noise_text = unet(model_input[n:], t, encoder_hidden_states=cond).sample
            else:
                noise_uncond, noise_text = unet(model_input, t, encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
            noise = noise_uncond + w * (noise_text - noise_uncond)
            x = scheduler.step(noise, t, x, **extra).prev_sample
    return x
