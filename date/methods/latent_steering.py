"""A latent update before every sampling step, on the stock pipeline or inside `date.generate`.

Attend-and-Excite and CONFORM change x_t at the start of step i (before that step's guided denoiser call) by gradient
steps of an attention loss. On a stock pipeline this is: step 0's update on the initial noise before the call (handed
to the pipeline as `latents`), step i+1's at the end of step i (`callback_on_step_end`, which may replace the latents).
The pipeline's loop, guidance, scheduler and decoding stay its own, so the same keyword arguments go to `pipe(...)`
or to `date.generate` (DATE then updates the text embedding at its steps, on the already updated x_t: the two act on
different variables and do not see each other's gradient).
"""
import contextlib
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch

from date.memory import frozen
from date.methods.attention_maps import CrossAttentionMaps, tokens_of
from date.objective import pipeline_modules
from date.sampling import generate as date_generate

# (latents at step i, i, t_i) -> latents to sample step i from
Update = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]
# (maps, conditional embedding, (batch, n) token indices, number of timesteps) -> the update of one batch
MakeUpdate = Callable[[CrossAttentionMaps, torch.Tensor, torch.Tensor, int], Update]


def step_sizes(scale_factor: float, steps: int, scale_range=(1.0, 0.5)) -> np.ndarray:
    """The official step size of each step: scale_factor · √(linear from scale_range[0] to scale_range[1])."""
    return scale_factor * np.sqrt(np.linspace(scale_range[0], scale_range[1], steps))


def descend(latents: torch.Tensor, loss: torch.Tensor, step_size: float, trace: List) -> torch.Tensor:
    """latents − step_size · ∇ Σ loss (the images' losses are independent, so each image moves by its own gradient).
    A loss that does not depend on the latents moves nothing (the official `if loss != 0`). `trace` gets each step's
    (loss, step size)."""
    if not loss.requires_grad:
        return latents
    trace.append((loss.detach().clone(), float(step_size)))
    (grad,) = torch.autograd.grad(loss.sum(), latents)
    return latents - step_size * grad


@contextlib.contextmanager
def steered(pipe, prompts: Sequence[str], concepts: Sequence[Sequence[str]], make_update: MakeUpdate,
            attention_res: int, num_inference_steps: int, generator=None, height: Optional[int] = None,
            width: Optional[int] = None, latents: Optional[torch.Tensor] = None, **_) -> Iterator[dict]:
    """The pipeline keyword arguments (`latents`, `callback_on_step_end`) that run `make_update(...)`'s update before
    every step of sampling `prompts` with these settings (those of the pipeline call; others are ignored); `concepts`
    are each prompt's words. The attention processors are in place inside the block only; the model's weights get no
    gradient."""
    device, unet = pipe._execution_device, pipe.unet
    maps = CrossAttentionMaps(unet, attention_res)
    with maps.installed(), frozen(*pipeline_modules(pipe)):
        # 1. The sampler's timesteps, and what the updates measure: the concepts' tokens, under the prompts' own
        #    conditional embedding.
        pipe.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = pipe.scheduler.timesteps
        tokens = tokens_of(pipe.tokenizer, prompts, concepts, device)
        cond = pipe.encode_prompt(list(prompts), device, 1, False)[0]
        update = make_update(maps, cond, tokens, len(timesteps))

        # 2. The initial noise as the pipeline would draw it, updated for step 0 (the pipeline scales the latents it is
        #    given by the scheduler's initial sigma itself, so it gets them unscaled).
        side = unet.config.sample_size * pipe.vae_scale_factor
        noise = pipe.prepare_latents(len(prompts), unet.config.in_channels, height or side, width or side, cond.dtype,
                                     device, generator, latents)
        first = update(noise, 0, timesteps[0]) / pipe.scheduler.init_noise_sigma

        # 3. Every later step's update at the end of the step before.
        def before_next_step(pipeline, i: int, t, tensors: dict) -> dict:
            if i + 1 >= len(timesteps):
                return {}
            return {"latents": update(tensors["latents"], i + 1, timesteps[i + 1])}

        yield {"latents": first, "callback_on_step_end": before_next_step,
               "callback_on_step_end_tensor_inputs": ["latents"]}


def generate(pipe, prompts: Sequence[str], scorer, concepts: Sequence[Sequence[str]], make_update: MakeUpdate,
             attention_res: int, num_inference_steps: int = 50, **kwargs):
    """`date.generate` (DATE's embedding updates when `scorer` is given, else the stock pipeline) with the update
    before every step; keyword arguments as for `date.generate`."""
    with steered(pipe, prompts, concepts, make_update, attention_res, num_inference_steps, **kwargs) as steering:
        kwargs = {key: value for key, value in kwargs.items() if key != "latents"}
        return date_generate(pipe, prompts, scorer, num_inference_steps=num_inference_steps, **kwargs, **steering)
