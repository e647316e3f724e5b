"""DATE on top of a stock diffusers Stable Diffusion pipeline, through its per-step hook.

The pipeline runs its own loop, guidance and scheduler steps. The update for step i needs x_t of step i: for i = 0 it is
done before the pipeline starts (the updated embedding goes in as `prompt_embeds`), for i > 0 in `callback_on_step_end`
of step i − 1, which may replace `prompt_embeds`. The updated embedding then stays in use until the next update.
The update's unconditional prediction at x_t is handed to the pipeline's step at the same x_t (`SharedUnconditional`),
so an update costs only what the gradient itself needs.
"""
import functools
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Set, Union

import torch
from diffusers.utils.torch_utils import randn_tensor

from .memory import MicroBatch, UpdatePlan, checkpointing, frozen
from .objective import Objective
from .scorer import Scorer
from .shared_unconditional import SharedUnconditional
from .update import update_embeddings


def update_steps(num_inference_steps: int, skip_freq: int = 10, skip_itrs: Optional[Iterable[int]] = None) -> Set[int]:
    """Indices of the sampling steps whose embedding is updated: every `skip_freq`-th step, or exactly `skip_itrs`."""
    if skip_itrs is not None:
        return {i for i in skip_itrs if 0 <= i < num_inference_steps}
    if skip_freq <= 0:
        raise ValueError("skip_freq must be positive")
    return set(range(0, num_inference_steps, skip_freq))


@dataclass
class EmbeddingUpdate:
    """One embedding update at x_t: `num_upt_prompt` normalized steps along −∂(−h + prior)/∂c."""

    objective: Objective
    num_upt_prompt: int
    lr_upt_prompt: float
    init_org: bool
    shared: Optional[SharedUnconditional] = None

    def __call__(self, cond_embeds: torch.Tensor, latents: torch.Tensor, step_index: int) -> torch.Tensor:
        scheduler = self.objective.pipe.scheduler
        t = scheduler.timesteps[step_index]
        model_input = scheduler.scale_model_input(latents, t)
        noise_uncond = self.objective.unconditional(model_input, t)

        def gradient(embeds: torch.Tensor) -> torch.Tensor:
            return self.objective.gradient(embeds, model_input, t, step_index, noise_uncond)[0]

        updated = update_embeddings(cond_embeds, self.objective.cond_embeds_org, gradient, self.num_upt_prompt,
                                    self.lr_upt_prompt, self.init_org)
        if self.shared is not None and noise_uncond is not None:
            self.shared.offer(model_input, t, self.objective.uncond_embeds, noise_uncond)
        return updated


def generate(
    pipe,
    prompts: Union[str, Sequence[str]],
    scorer: Optional[Scorer],
    num_inference_steps: int = 50,
    guidance_scale: float = 8.0,
    skip_freq: int = 10,
    skip_itrs: Optional[Iterable[int]] = None,
    num_upt_prompt: int = 1,
    lr_upt_prompt: float = 0.5,
    weight_prior: float = 0.0,
    init_org: bool = False,
    latents: Optional[torch.Tensor] = None,
    generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
    output_type: str = "pil",
    height: Optional[int] = None,
    width: Optional[int] = None,
    update_batch_size: MicroBatch = "auto",
    gradient_checkpointing: bool = False,
    x0_decoder=None,
):
    """Sample with DATE: like `pipe(prompts, ...)`, with the text embedding updated to raise `scorer` at the update steps.

    With no update step (`skip_itrs=[]`), ρ = 0 or no scorer, this is exactly the pipeline's fixed-embedding sampling.
    Returns the pipeline's own output object (`.images`: PIL list, numpy array or latents, per `output_type`).
    Memory (none of these changes the images beyond float rounding): `update_batch_size` images go through decoder +
    scorer backward at a time ("auto": as many, and as many through the UNet at a time, as keep the peak within 2.5×
    fixed sampling's and within free memory); `gradient_checkpointing` recomputes UNet and decoder activations in
    backward instead of storing them.
    Speed: `x0_decoder` (e.g. an `AutoencoderTiny`) decodes x̂0 inside updates instead of the pipeline's VAE; the final
    image is still the VAE's. Model weights are frozen during the call and their `requires_grad` restored after.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    device = pipe._execution_device
    guided = guidance_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
    cond_embeds, uncond_embeds = pipe.encode_prompt(prompts, device, 1, guided)
    height = height or pipe.unet.config.sample_size * pipe.vae_scale_factor
    width = width or pipe.unet.config.sample_size * pipe.vae_scale_factor
    if latents is None:
        shape = (len(prompts), pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=cond_embeds.dtype)
    latents = latents.to(device=device, dtype=cond_embeds.dtype)
    sample = functools.partial(
        pipe, negative_prompt_embeds=uncond_embeds if guided else None, num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale, latents=latents, generator=generator, output_type=output_type, height=height,
        width=width,
    )

    steps = update_steps(num_inference_steps, skip_freq, skip_itrs)
    if not steps or lr_upt_prompt == 0 or num_upt_prompt <= 0 or scorer is None:
        return sample(prompt_embeds=cond_embeds)

    decoder = x0_decoder if x0_decoder is not None else pipe.vae
    objective = Objective(pipe, scorer, prompts, uncond_embeds if guided else None, cond_embeds.detach().clone(),
                          guidance_scale, weight_prior, decoder, UpdatePlan(update_batch_size))
    shared = SharedUnconditional(pipe.unet)
    update = EmbeddingUpdate(objective, num_upt_prompt, lr_upt_prompt, init_org, shared)

    def callback(pipeline, i: int, t, tensors: dict) -> dict:
        if i + 1 not in steps:
            return {}
        embeds = tensors["prompt_embeds"]
        current = embeds[len(prompts):] if guided else embeds
        updated = update(current, tensors["latents"], i + 1)
        return {"prompt_embeds": torch.cat([uncond_embeds, updated]) if guided else updated}

    with frozen(pipe.unet, pipe.vae, pipe.text_encoder, scorer, x0_decoder), \
            checkpointing(gradient_checkpointing, pipe.unet, decoder):
        shared.attach()
        try:
            pipe.scheduler.set_timesteps(num_inference_steps, device=device)
            if len(pipe.scheduler.timesteps) != num_inference_steps:
                raise ValueError(f"{type(pipe.scheduler).__name__} takes several model evaluations per step; DATE needs one")
            if 0 in steps:
                cond_embeds = update(cond_embeds, latents * pipe.scheduler.init_noise_sigma, 0)
            return sample(prompt_embeds=cond_embeds, callback_on_step_end=callback,
                          callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
        finally:
            shared.detach()
