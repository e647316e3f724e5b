"""Universal Guidance (Bansal et al., 2023) with the same evaluation functions h as DATE, on the stock SD pipeline.

What the official Stable Diffusion sampler does (`stable-diffusion-guided/ldm/models/diffusion/ddim_with_grad.py`,
`DDIMSamplerWithGrad.sample`), per DDIM step t:
- forward guidance: ε̂ = ε_cfg + s·√(1−ᾱ_t)·∇_{z_t} L(decode(ẑ0(z_t))), L = −h, ẑ0 from the guided ε_cfg, the gradient
  through h, the VAE decoder and the UNet (both guidance branches); s = `--optim_forward_guidance_wt`;
- self-recurrence k = `--optim_num_steps`: after the (deterministic DDIM) step to z_prev, z_t is re-noised,
  z_t ← √(ᾱ_t/ᾱ_prev)·z_prev + √(1−ᾱ_t/ᾱ_prev)·n, and the guided step repeated; the k-th step's z_prev goes on.
- backward guidance (`--optim_backward_guidance`, m = `--optim_max_iters` Adam steps at `--optim_lr` on Δ added to ẑ0,
  then ε̃ = ε̂ − √(ᾱ_t/(1−ᾱ_t))·Δ) exists in the official code only for pixel-space ImageNet models; here it acts on
  the latent ẑ0 as the paper describes, off by default as in the official SD scripts.
Hooks on the UNet give each of the pipeline's own UNet calls the guided prediction (added to the conditional half,
divided by w, so that the pipeline's guidance combination yields ε̂); `callback_on_step_end` runs the recurrence.
A v-prediction model (the toy world's) gets the same guidance in ε-space, converted: v̂ = v + (ε̂ − ε)/√ᾱ_t. At ᾱ_t = 0
(zero terminal SNR) ε = z_t whatever the model says, so there is no score to guide and that step is left as it is.
"""
import functools
from typing import List, Optional, Sequence

import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from date.pipeline.families import family_of
from date.memory import frozen
from date.objective import pipeline_modules
from date.scorers.base import Scorer

DEFAULT_WEIGHT = 5.0  # --optim_forward_guidance_wt
DEFAULT_RECURRENCE = 1  # --optim_num_steps


class Guidance:
    """ε̂ at one step from x_t, for a guided UNet (CFG batch [uncond; cond]) and h."""

    def __init__(self, pipe, scorer: Scorer, prompts: List[str], uncond: torch.Tensor, cond: torch.Tensor, w: float,
                 weight: float, backward_steps: int, backward_lr: float) -> None:
        self.pipe, self.scorer, self.prompts = pipe, scorer, prompts
        self.context = torch.cat([uncond, cond])
        self.w, self.weight, self.backward_steps, self.backward_lr = w, weight, backward_steps, backward_lr
        self.busy = False  # its own UNet calls must not be guided again by the hook

    def h(self, z0: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        return self.scorer.score(vae.decode(z0 / vae.config.scaling_factor, return_dict=False)[0] / 2 + 0.5, self.prompts)

    def prediction(self, z: torch.Tensor, t) -> torch.Tensor:
        """The model's guided output (ε or v, as the scheduler expects)."""
        uncond, cond = self.pipe.unet(torch.cat([z, z]), t, encoder_hidden_states=self.context, return_dict=False)[0].chunk(2)
        return uncond + self.w * (cond - uncond)

    def __call__(self, z_t: torch.Tensor, t) -> torch.Tensor:
        self.busy = True
        try:
            return self._guided(z_t, t)
        finally:
            self.busy = False

    def _guided(self, z_t: torch.Tensor, t) -> torch.Tensor:
        a = self.pipe.scheduler.alphas_cumprod[int(t)].to(z_t.device)
        v_prediction = self.pipe.scheduler.config.prediction_type == "v_prediction"
        if a == 0:
            return self.prediction(z_t, t)
        with torch.enable_grad():
            z = z_t.detach().requires_grad_(True)
            output = self.prediction(z, t)
            eps = (1 - a).sqrt() * z + a.sqrt() * output if v_prediction else output
            z0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
            (grad,) = torch.autograd.grad(-self.h(z0).sum(), z)
        eps_hat = eps.detach() + self.weight * (1 - a).sqrt() * grad
        if self.backward_steps > 0:
            z0_hat = (z_t - (1 - a).sqrt() * eps_hat) / a.sqrt()
            delta = torch.zeros_like(z0_hat, requires_grad=True)
            optimizer = torch.optim.Adam([delta], lr=self.backward_lr)
            for _ in range(self.backward_steps):
                with torch.enable_grad():
                    loss = -self.h(z0_hat + delta).sum()
                    optimizer.zero_grad()
                    loss.backward()
                optimizer.step()
            eps_hat = eps_hat - (a / (1 - a)).sqrt() * delta.detach()
        return output.detach() + (eps_hat - eps.detach()) / a.sqrt() if v_prediction else eps_hat


def check_settings(family: str, ddim: bool, guidance_scale: float) -> None:
    """What this implementation needs: SD 1.x/2.x, DDIM, guided (w > 1). A run plan checks it before loading."""
    if family != "sd" or not ddim:
        raise ValueError("Universal Guidance is implemented for SD 1.x/2.x with DDIM and ε- or v-prediction")
    if guidance_scale <= 1:
        raise ValueError("Universal Guidance here follows the official recipes: classifier-free guidance (w > 1)")


def check(pipe, guidance_scale: float) -> None:
    """`check_settings` on a loaded pipeline, and its prediction type: ε (as the official code) or v."""
    check_settings(family_of(pipe).name, isinstance(pipe.scheduler, DDIMScheduler), guidance_scale)
    if pipe.scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError("Universal Guidance is implemented for SD 1.x/2.x with DDIM and ε- or v-prediction")


def generate(pipe, prompts: Sequence[str], scorer: Scorer, guidance_weight: float = DEFAULT_WEIGHT,
             recurrence: int = DEFAULT_RECURRENCE, backward_steps: int = 0, backward_lr: float = 1e-2,
             num_inference_steps: int = 50, guidance_scale: Optional[float] = None, latents=None, generator=None,
             output_type: str = "pil", height: Optional[int] = None, width: Optional[int] = None, **pipeline_kwargs):
    """Sample `pipe` (SD 1.x/2.x, DDIM, classifier-free guidance) with Universal Guidance by h = `scorer`."""
    family = family_of(pipe)
    prompts = list(prompts)
    defaults = family.defaults(pipe)
    guidance_scale = defaults.guidance_scale if guidance_scale is None else guidance_scale
    check(pipe, guidance_scale)
    height, width = height or defaults.size, width or defaults.size
    device = pipe._execution_device
    cond, uncond = pipe.encode_prompt(prompts, device, 1, True)
    guidance = Guidance(pipe, scorer, prompts, uncond, cond, guidance_scale, guidance_weight, backward_steps, backward_lr)
    generators = generator if isinstance(generator, list) else [generator] * len(prompts)

    def guided_output(module, args, kwargs, output):
        """The pipeline's UNet call at x_t: conditional half + (ε̂ − ε_cfg)/w (in the model's ε or v), so that its own
        combination gives the guided prediction."""
        if guidance.busy:
            return None
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        uncond_out, cond_out = output[0].chunk(2)
        combined = uncond_out + guidance_scale * (cond_out - uncond_out)
        guided = guidance(sample.chunk(2)[0], timestep)
        return (torch.cat([uncond_out, cond_out + (guided - combined) / guidance_scale]), *output[1:])

    def recur(pipeline, i: int, t, tensors: dict) -> dict:
        """k − 1 more times: re-noise z_prev to t, guided DDIM step again (the official self-recurrence)."""
        if recurrence <= 1:
            return {}
        z_prev, scheduler = tensors["latents"], pipeline.scheduler
        a_t = scheduler.alphas_cumprod[int(t)]
        previous = int(t) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        a_prev = scheduler.alphas_cumprod[previous] if previous >= 0 else scheduler.final_alpha_cumprod
        for _ in range(recurrence - 1):
            noise = torch.cat([randn_tensor((1, *z_prev.shape[1:]), generator=g, device=z_prev.device, dtype=z_prev.dtype)
                               for g in generators])
            z_t = (a_t / a_prev).sqrt() * z_prev + (1 - a_t / a_prev).sqrt() * noise
            z_prev = scheduler.step(guidance(z_t, t), t, z_t, return_dict=False)[0]  # DDIM, η = 0: deterministic
        return {"latents": z_prev}

    sample = functools.partial(pipe, prompt_embeds=cond, negative_prompt_embeds=uncond,
                               num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, latents=latents,
                               generator=generator, output_type=output_type, height=height, width=width,
                               callback_on_step_end=recur, callback_on_step_end_tensor_inputs=["latents"],
                               **pipeline_kwargs)
    with frozen(*pipeline_modules(pipe), scorer):
        handle = pipe.unet.register_forward_hook(guided_output, with_kwargs=True)
        try:
            return sample()
        finally:
            handle.remove()
