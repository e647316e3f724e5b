"""DATE on top of a stock diffusers Stable Diffusion pipeline, through its per-step hook.

The pipeline runs its own loop, guidance and scheduler steps. The update for step i needs x_t of step i: for i = 0 it is
done before the pipeline starts (the updated embedding goes in as `prompt_embeds`), for i > 0 in `callback_on_step_end`
of step i − 1, which may replace `prompt_embeds`. The updated embedding then stays in use until the next update.
"""
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Set, Union

import torch
from diffusers.utils.torch_utils import randn_tensor

from .schedulers import predicted_original_sample
from .scorer import Scorer
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
    """Everything one embedding update needs; called once per update step with the current c and x_t."""

    pipe: object
    scorer: Scorer
    prompts: List[str]
    uncond_embeds: torch.Tensor
    cond_embeds_org: torch.Tensor
    guidance_scale: float
    guided: bool
    num_upt_prompt: int
    lr_upt_prompt: float
    weight_prior: float
    init_org: bool
    batch_size: Optional[int] = None

    def objective(self, latents: torch.Tensor, step_index: int, part: slice = slice(None)) -> Callable[[torch.Tensor], torch.Tensor]:
        """The per-sample loss −h(decode(x̂0(c))) + prior(c) at x_t = latents, as a function of c, for samples `part`."""
        pipe, scheduler = self.pipe, self.pipe.scheduler
        t = scheduler.timesteps[step_index]
        model_input = scheduler.scale_model_input(latents[part], t)
        prompts, embeds_org = self.prompts[part], self.cond_embeds_org[part]
        noise_uncond = None
        if self.guided:
            with torch.no_grad():
                noise_uncond = pipe.unet(model_input, t, encoder_hidden_states=self.uncond_embeds[part], return_dict=False)[0]

        def loss(embeds: torch.Tensor) -> torch.Tensor:
            noise = pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
            if self.guided:
                noise = noise_uncond + self.guidance_scale * (noise - noise_uncond)
            x0 = predicted_original_sample(scheduler, noise, model_input, step_index, t)
            image = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor, return_dict=False)[0] / 2 + 0.5
            value = -self.scorer.score(image, prompts)
            if self.weight_prior != 0:
                value = value + self.weight_prior * ((embeds - embeds_org) ** 2).mean(dim=(1, 2))
            return value

        return loss

    def __call__(self, cond_embeds: torch.Tensor, latents: torch.Tensor, step_index: int) -> torch.Tensor:
        """Update c at x_t; samples are independent, so `batch_size` of them at a time bounds memory, not the result."""
        size = self.batch_size or len(self.prompts)
        parts = [slice(start, start + size) for start in range(0, len(self.prompts), size)]
        return torch.cat([
            update_embeddings(cond_embeds[part], self.cond_embeds_org[part], self.objective(latents, step_index, part),
                              self.num_upt_prompt, self.lr_upt_prompt, self.init_org)
            for part in parts
        ])


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
    update_batch_size: Optional[int] = None,
    gradient_checkpointing: bool = False,
):
    """Sample with DATE: like `pipe(prompts, ...)`, with the text embedding updated to raise `scorer` at the update steps.

    With no update step (`skip_itrs=[]`), ρ = 0 or no scorer, this is exactly the pipeline's fixed-embedding sampling.
    Returns the pipeline's own output object (`.images`: PIL list, numpy array or latents, per `output_type`).
    Memory: `update_batch_size` back-propagates that many samples at a time (the result does not change), and
    `gradient_checkpointing` turns on the UNet's and VAE's checkpointing (it acts only under gradient, so only in updates).
    """
    if gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
        pipe.vae.enable_gradient_checkpointing()
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

    steps = update_steps(num_inference_steps, skip_freq, skip_itrs)
    callback = None
    if steps and lr_upt_prompt != 0 and num_upt_prompt > 0 and scorer is not None:
        update = EmbeddingUpdate(pipe, scorer, prompts, uncond_embeds, cond_embeds.detach().clone(), guidance_scale, guided,
                                 num_upt_prompt, lr_upt_prompt, weight_prior, init_org, update_batch_size)
        pipe.scheduler.set_timesteps(num_inference_steps, device=device)
        if len(pipe.scheduler.timesteps) != num_inference_steps:
            raise ValueError(f"{type(pipe.scheduler).__name__} takes several model evaluations per step; DATE needs one")
        if 0 in steps:
            cond_embeds = update(cond_embeds, latents * pipe.scheduler.init_noise_sigma, 0)

        def callback(pipeline, i: int, t, tensors: dict) -> dict:
            if i + 1 not in steps:
                return {}
            embeds = tensors["prompt_embeds"]
            current = embeds[len(prompts):] if guided else embeds
            updated = update(current, tensors["latents"], i + 1)
            return {"prompt_embeds": torch.cat([uncond_embeds, updated]) if guided else updated}

    return pipe(
        prompt_embeds=cond_embeds,
        negative_prompt_embeds=uncond_embeds if guided else None,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        latents=latents,
        generator=generator,
        output_type=output_type,
        height=height,
        width=width,
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"],
    )
