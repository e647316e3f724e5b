"""Text-guided image editing with DATE: edit-friendly DDPM inversion of a source image, regenerated with a target
prompt whose embedding DATE updates.

The inversion is Huberman-Spiegelglas, Kulikov and Michaeli's (CVPR 2024; official code inbarhub/DDPM_inversion,
`ddm_inversion/inversion_utils.py`): for latents x0 of the source image,
1. draw x_1 … x_N independently from q(x_t | x0) = N(√ᾱ_t·x0, (1 − ᾱ_t)·I), one per sampling step (`xts`);
2. for each step t (noisiest first), the DDPM (η) step's mean μ_t(x_t) under the source prompt (guidance `cfg_src`)
   and the noise map z_t = (x_{t−1} − μ_t(x_t)) / σ_t that makes the step land exactly on x_{t−1} (`zs`);
3. regenerate from x_{N−skip} with the target prompt (guidance `cfg_tar`): the same DDPM steps, with the same z_t.
With the source prompt and `cfg_tar = cfg_src`, regeneration reproduces x0 (up to float rounding). The official code
sets the last step's noise map to zero (`zs[0] = 0`), so its last step lands σ_1·z_1 away from x0; ours keeps it
unless `zero_final_noise=True`, the official behaviour (the transcription test uses it).

Regeneration is `date.generate` on the stock pipeline with a scheduler that takes these steps (`InvertedDDPMScheduler`),
so DATE's hook, objective and memory plan update the target embedding at the update steps of the regeneration
exactly as in generation; with no scorer (or ρ = 0) it is the official regeneration.

Everything follows the official formulas written for ε-prediction, generalized to v- and x0-prediction through
(x̂0, ε̂); the schedule is `DDIMScheduler.from_config(pipe.scheduler.config)` as in the official `main_run.py`.
Stable Diffusion 1.x/2.x pipelines only.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from diffusers import DDIMScheduler
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from PIL import Image

from date.pipeline.families import family_of
from date.sampling import generate

# The official defaults (main_run.py, mode our_inv).
NUM_STEPS, SKIP, CFG_SRC, CFG_TAR, ETA = 100, 36, 3.5, 15.0, 1.0

Images = Union[Image.Image, Sequence[Image.Image], torch.Tensor]


@dataclass(frozen=True)
class Inversion:
    """What the inversion of a batch of images found, indexed as in the official code: `xts[k]` is the latent at
    level k (k = 0: the source latents x0; k = N: the noisiest), `zs[k]` the noise map of the step from level k + 1 to
    level k; `timesteps` the N sampling timesteps, noisiest first (step i goes from level N − i to N − i − 1)."""

    xts: torch.Tensor  # (N + 1) × B × C × h × w
    zs: torch.Tensor  # N × B × C × h × w
    timesteps: torch.Tensor  # N
    eta: float

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def start(self, skip: int) -> torch.Tensor:
        """The latents regeneration starts from, after skipping the first `skip` steps: x at level N − skip."""
        return self.xts[self.num_steps - skip]


def check_pipeline(pipe) -> None:
    family = family_of(pipe)
    if family.name != "sd":
        raise ValueError(f"editing supports Stable Diffusion 1.x/2.x pipelines (StableDiffusionPipeline), "
                         f"not {type(pipe).__name__}")


def inversion_schedule(pipe, num_inference_steps: int) -> DDIMScheduler:
    """The official schedule: DDIM's, from the pipeline's scheduler config, set to `num_inference_steps`."""
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(num_inference_steps)
    return scheduler


def _coefficients(scheduler: DDIMScheduler, timestep: int):
    """ᾱ_t, ᾱ_{t−1} and the DDPM posterior variance of step t (official `get_variance`; t − 1 is t − T/N)."""
    prev = timestep - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alpha_t = scheduler.alphas_cumprod[timestep]
    alpha_prev = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
    variance = ((1 - alpha_prev) / (1 - alpha_t)) * (1 - alpha_t / alpha_prev)
    return alpha_t, alpha_prev, variance


def _x0_and_noise(scheduler: DDIMScheduler, output: torch.Tensor, sample: torch.Tensor, alpha_t: torch.Tensor):
    """(x̂0, ε̂) from the guided model output at x_t (ε-prediction: the official formula)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (sample - (1 - alpha_t) ** 0.5 * output) / alpha_t**0.5, output
    if kind == "v_prediction":
        return alpha_t**0.5 * sample - (1 - alpha_t) ** 0.5 * output, alpha_t**0.5 * output + (1 - alpha_t) ** 0.5 * sample
    if kind == "sample":
        return output, (sample - alpha_t**0.5 * output) / (1 - alpha_t) ** 0.5
    raise ValueError(f"unsupported prediction_type: {kind}")


def step_mean(scheduler: DDIMScheduler, output: torch.Tensor, sample: torch.Tensor, timestep: int, eta: float):
    """(μ_t(x_t), σ_t, x̂0): the DDPM(η) step's mean and noise scale as in the official `reverse_step`."""
    alpha_t, alpha_prev, variance = _coefficients(scheduler, timestep)
    x0, noise = _x0_and_noise(scheduler, output, sample, alpha_t)
    mean = alpha_prev**0.5 * x0 + (1 - alpha_prev - eta * variance) ** 0.5 * noise
    return mean, eta * variance**0.5, x0


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32, or fp64 for fp64 latents (half-precision models still step in fp32)."""
    return torch.promote_types(dtype, torch.float32)


def _generators(generator, batch: int) -> List[Optional[torch.Generator]]:
    if isinstance(generator, (list, tuple)):
        if len(generator) != batch:
            raise ValueError(f"{len(generator)} generators for {batch} images")
        return list(generator)
    return [generator] * batch


def _prompts(prompts: Union[str, Sequence[str]], batch: int) -> List[str]:
    prompts = [prompts] * batch if isinstance(prompts, str) else list(prompts)
    if len(prompts) != batch:
        raise ValueError(f"{len(prompts)} prompts for {batch} images")
    return prompts


@torch.no_grad()
def invert(pipe, latents: torch.Tensor, source_prompt: Union[str, Sequence[str]],
           num_inference_steps: int = NUM_STEPS, guidance_scale: float = CFG_SRC, eta: float = ETA,
           generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
           zero_final_noise: bool = False) -> Inversion:
    """Edit-friendly DDPM inversion of `latents` (B × C × h × w, already scaled by the VAE's scaling factor) under
    `source_prompt` (one, or one per image) with guidance `guidance_scale` (the official cfg_src). Image b's x_t are
    drawn from `generator[b]` (or the one generator), in the official order (least noisy first), on the CPU. The
    inversion runs in fp32 (fp64 for fp64 latents), whatever the pipeline's precision."""
    check_pipeline(pipe)
    if eta <= 0:
        raise ValueError("eta must be > 0 (η = 0 is DDIM inversion, which leaves no noise maps to edit with)")
    scheduler = inversion_schedule(pipe, num_inference_steps)
    device, batch = latents.device, len(latents)
    work = _working_dtype(latents.dtype)
    x0 = latents.to(work)
    timesteps = scheduler.timesteps
    n = len(timesteps)

    # 1. x_1 … x_N drawn independently from q(x_t | x0) (official `sample_xts_from_x0`).
    alpha_bar = scheduler.alphas_cumprod
    xts = torch.zeros((n + 1, *x0.shape), device=device, dtype=work)
    xts[0] = x0
    generators = _generators(generator, batch)
    noise = torch.zeros((n, *x0.shape), dtype=work)
    for level in range(1, n + 1):
        for b in range(batch):
            noise[level - 1, b] = torch.randn((1, *x0.shape[1:]), generator=generators[b], dtype=work)[0]
    for level in range(1, n + 1):
        t = int(timesteps[n - level])
        xts[level] = x0 * alpha_bar[t] ** 0.5 + noise[level - 1].to(device) * (1 - alpha_bar[t]) ** 0.5

    # 2. The noise maps, noisiest step first (official `inversion_forward_process`).
    prompt_embeds, uncond_embeds = pipe.encode_prompt(_prompts(source_prompt, batch), device, 1, True)
    context = torch.cat([uncond_embeds, prompt_embeds])
    unet_dtype = pipe.unet.dtype
    zs = torch.zeros((n, *x0.shape), device=device, dtype=work)
    for i, t in enumerate(timesteps):
        level = n - i - 1
        xt = xts[level + 1]
        out = pipe.unet(torch.cat([xt, xt]).to(unet_dtype), t, encoder_hidden_states=context).sample.to(work)
        uncond, cond = out.chunk(2)
        guided = uncond + guidance_scale * (cond - uncond)
        mean, std, _ = step_mean(scheduler, guided, xt, int(t), eta)
        zs[level] = (xts[level] - mean) / std
        xts[level] = mean + std * zs[level]  # the official correction: the step lands here exactly
    if zero_final_noise:
        zs[0] = 0
    return Inversion(xts=xts, zs=zs, timesteps=timesteps.clone(), eta=eta)


class InvertedDDPMScheduler(DDIMScheduler):
    """DDPM(η) steps with given noise maps (the official `inversion_reverse_process`), as a diffusers scheduler, so
    that the stock pipeline (and `date.generate`) regenerates with it: `set_timesteps(N − skip)` gives the last
    N − skip timesteps of the inversion's schedule, and `step` at timestep t adds σ_t·z_t of the inversion."""

    @classmethod
    def for_inversion(cls, pipe, inversion: Inversion, skip: int) -> "InvertedDDPMScheduler":
        scheduler = cls.from_config(pipe.scheduler.config)
        scheduler.inversion, scheduler.skip = inversion, skip
        return scheduler

    def set_timesteps(self, num_inference_steps: int, device=None, **kwargs) -> None:
        total = self.inversion.num_steps
        if num_inference_steps != total - self.skip:
            raise ValueError(f"regeneration takes the last {total - self.skip} of {total} steps, "
                             f"not {num_inference_steps}")
        super().set_timesteps(total, device=device)
        self.timesteps = self.timesteps[self.skip:]

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, eta: float = 0.0,
             use_clipped_model_output: bool = False, generator=None, variance_noise=None, return_dict: bool = True):
        t = int(timestep)
        position = int((self.inversion.timesteps == t).nonzero()[0, 0])
        level = self.inversion.num_steps - position - 1
        work = _working_dtype(sample.dtype)
        mean, std, x0 = step_mean(self, model_output.to(work), sample.to(work), t, self.inversion.eta)
        prev = mean + std * self.inversion.zs[level].to(sample.device)
        prev, x0 = prev.to(sample.dtype), x0.to(sample.dtype)
        if not return_dict:
            return prev, x0
        return DDIMSchedulerOutput(prev_sample=prev, pred_original_sample=x0)


def regenerate(pipe, inversion: Inversion, target_prompt: Union[str, Sequence[str]], scorer=None,
               skip: int = SKIP, guidance_scale: float = CFG_TAR, output_type: str = "pil", **date_kwargs):
    """Regenerate from the inversion's x_{N−skip} with `target_prompt` (guidance `guidance_scale`, the official
    cfg_tar) and the inversion's noise maps, DATE updating the target embedding to raise `scorer` at the update steps
    of the N − skip regeneration steps (`date.generate`'s keywords: skip_freq, lr_upt_prompt, ...). No scorer, or
    ρ = 0: the official regeneration. Returns the pipeline's output."""
    check_pipeline(pipe)
    steps = inversion.num_steps
    if not 0 <= skip < steps:
        raise ValueError(f"skip must be in [0, {steps}), got {skip}")
    if guidance_scale < 1:
        raise ValueError(f"guidance scale (cfg_tar) must be ≥ 1, got {guidance_scale}")
    start = inversion.start(skip)
    prompts = _prompts(target_prompt, len(start))
    size = start.shape[-1] * pipe.vae_scale_factor
    original = pipe.scheduler
    pipe.scheduler = InvertedDDPMScheduler.for_inversion(pipe, inversion, skip)
    try:
        return generate(pipe, prompts, scorer, num_inference_steps=steps - skip, guidance_scale=guidance_scale,
                        latents=start.to(pipe.unet.dtype), output_type=output_type, height=size, width=size,
                        **date_kwargs)
    finally:
        pipe.scheduler = original


def square(image: Image.Image, size: int) -> Image.Image:
    """The image as the official code prepares it (`load_512`): RGB, the central square, resized (bicubic)."""
    image = image.convert("RGB")
    w, h = image.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image.resize((size, size), Image.BICUBIC)


def image_tensor(images: Images, size: int) -> torch.Tensor:
    """B × 3 × size × size in [0, 1] from PIL images (`square`) or a tensor (as it is)."""
    if isinstance(images, torch.Tensor):
        return images if images.dim() == 4 else images[None]
    images = [images] if isinstance(images, Image.Image) else list(images)
    arrays = [np.asarray(square(im, size), dtype=np.float32) / 255 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


@torch.no_grad()
def encode_image(pipe, images: Images) -> torch.Tensor:
    """The VAE's latents of the images (the mode of its posterior, times the scaling factor, as the official code)."""
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    pixels = image_tensor(images, size).to(pipe.vae.device, pipe.vae.dtype) * 2 - 1
    return pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor


def edit(pipe, image: Images, source_prompt: Union[str, Sequence[str]], target_prompt: Union[str, Sequence[str]],
         scorer=None, num_inference_steps: int = NUM_STEPS, skip: int = SKIP, cfg_src: float = CFG_SRC,
         cfg_tar: float = CFG_TAR, eta: float = ETA,
         generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None, zero_final_noise: bool = False,
         output_type: str = "pil", **date_kwargs):
    """Edit `image` (PIL image(s), center-cropped to a square and resized to the model's size as the official code does;
    or B × 3 × H × W in [0, 1]) from `source_prompt` to `target_prompt`: encode, invert
    (edit-friendly DDPM, `cfg_src`, η = `eta`, `num_inference_steps`), regenerate the last N − `skip` steps with the
    target prompt (`cfg_tar`), DATE updating its embedding with `scorer` (None: no update, the plain edit). Other
    keywords go to `date.generate` (skip_freq, lr_upt_prompt, num_upt_prompt, ...). Defaults are the official
    `main_run.py`'s. Returns the pipeline's output, with the inversion as `.inversion`."""
    latents = encode_image(pipe, image)
    inversion = invert(pipe, latents, source_prompt, num_inference_steps, cfg_src, eta, generator, zero_final_noise)
    output = regenerate(pipe, inversion, target_prompt, scorer, skip, cfg_tar, output_type, **date_kwargs)
    output.inversion = inversion
    return output
