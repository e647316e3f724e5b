"""`date.generate`: DATE on top of a stock diffusers pipeline of any supported family.

The pipeline runs its own loop, prompt encoding, guidance, scheduler steps and decoding. Hooks on its denoiser
(`DateHook`) run the update for step i inside step i's denoiser call, on that call's own x_t, and hand the updated
embedding to every later call; it stays in use until the next update.
"""
import functools
import inspect
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Set, Tuple, Union

import torch

from .denoiser_call import Call, sample_name
from .denoiser_hook import DateHook
from .families import family_of
from .memory import MicroBatch, UpdatePlan, checkpointing, frozen
from .objective import Objective, pipeline_modules
from .scorers.base import Scorer
from .update import update_embeddings


def update_steps(num_inference_steps: int, skip_freq: int = 10, skip_itrs: Optional[Iterable[int]] = None) -> Set[int]:
    """Indices of the sampling steps whose embedding is updated: every `skip_freq`-th step, or exactly `skip_itrs`."""
    if skip_itrs is not None:
        return {i for i in skip_itrs if 0 <= i < num_inference_steps}
    if skip_freq <= 0:
        raise ValueError("skip_freq must be positive")
    return set(range(0, num_inference_steps, skip_freq))


@dataclass
class TrajectoryStep:
    """What one update changed: x̂0 decoded (B×3×H×W on the CPU, as h sees it: about [0, 1], unclamped) and h, at the
    same x_t, before and after."""

    step_index: int
    before: torch.Tensor
    after: torch.Tensor
    h_before: torch.Tensor
    h_after: torch.Tensor


@dataclass
class EmbeddingUpdate:
    """One embedding update at a denoiser call: `num_upt_prompt` normalized steps along −∂(−h + prior)/∂c.
    With `trajectory` a list, each update appends its TrajectoryStep: "before" is what the first gradient step
    decoded and scored anyway, "after" costs one more denoiser forward, decode and h (no gradients)."""

    objective: Objective
    num_upt_prompt: int
    lr_upt_prompt: float
    init_org: bool
    trajectory: Optional[List[TrajectoryStep]] = None

    def __call__(self, embeds: torch.Tensor, call: Call, uncond_call: Optional[Call],
                 step_index: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The updated c (flat), and the unconditional prediction at x_t for the sampling step to reuse."""
        point = self.objective.point(call, uncond_call, step_index)
        first: List[torch.Tensor] = []

        def gradient(current: torch.Tensor) -> torch.Tensor:
            recording = self.trajectory is not None and not first
            self.objective.kept_images = [] if recording else None
            grad, h = self.objective.gradient(current, point)
            if recording:
                first.extend([torch.cat(self.objective.kept_images), h.detach()])
                self.objective.kept_images = None
            return grad

        updated = update_embeddings(embeds, self.objective.cond_org, gradient, self.num_upt_prompt, self.lr_upt_prompt,
                                    self.init_org)
        if self.trajectory is not None and first:
            after, h_after = self.objective.evaluate(updated, point)
            self.trajectory.append(TrajectoryStep(step_index, first[0], after, first[1].cpu(), h_after.cpu()))
        return updated, point.noise_uncond


def generate(
    pipe,
    prompts: Union[str, Sequence[str]],
    scorer: Optional[Scorer],
    num_inference_steps: int = 50,
    guidance_scale: Optional[float] = None,
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
    update_pooled: bool = False,
    trajectory: bool = False,
    **pipeline_kwargs,
):
    """Sample with DATE: like `pipe(prompts, ...)`, with the text embedding updated to raise `scorer` at the update steps.

    `pipe` is a stock diffusers pipeline of any supported family (`date.families`: SD 1.x/2.x, SDXL, SD3, FLUX, PixArt).
    With no update step (`skip_itrs=[]`), ρ = 0 or no scorer, this is exactly the pipeline's fixed-embedding sampling.
    `guidance_scale` None: 8 for SD 1.x/2.x (the paper's), else the pipeline's own default. `update_pooled` also
    updates the pooled text embedding (SDXL, SD3, FLUX) in the same normalized step. Other keyword arguments go to the
    pipeline. Returns the pipeline's own output object (`.images`: PIL list, numpy array or latents, per `output_type`).
    Memory (none of these changes the images beyond float rounding): `update_batch_size` images go through decoder +
    scorer backward at a time ("auto": as many, and as many through the denoiser at a time, as keep the peak within
    2.5× fixed sampling's and within free memory); `gradient_checkpointing` recomputes denoiser and decoder
    activations in backward instead of storing them. Speed: `x0_decoder` (e.g. an `AutoencoderTiny`) decodes x̂0
    inside updates instead of the pipeline's VAE; the final image is still the VAE's. Model weights are frozen during
    the call and their `requires_grad` restored after. `trajectory=True` also returns, as `output.trajectory`, one
    `TrajectoryStep` per update (x̂0 and h before and after it; one more decode per update, same images).
    """
    family = family_of(pipe)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if guidance_scale is None:
        guidance_scale = family.default_guidance or inspect.signature(pipe.__call__).parameters["guidance_scale"].default
    height, width = height or family.default_size(pipe), width or family.default_size(pipe)
    sample = functools.partial(pipe, prompt=prompts, num_inference_steps=num_inference_steps,
                               guidance_scale=guidance_scale, latents=latents, generator=generator,
                               output_type=output_type, height=height, width=width, **pipeline_kwargs)
    steps = update_steps(num_inference_steps, skip_freq, skip_itrs)
    if not steps or lr_upt_prompt == 0 or num_upt_prompt <= 0 or scorer is None:
        output = sample()
        if trajectory:
            output.trajectory = []
        return output

    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    decoder = x0_decoder if x0_decoder is not None else pipe.vae
    objective = Objective(pipe, family, denoiser, sample_name(denoiser), scorer, prompts, guidance_scale, weight_prior,
                          decoder, height, width, update_pooled, UpdatePlan(update_batch_size))
    update = EmbeddingUpdate(objective, num_upt_prompt, lr_upt_prompt, init_org, [] if trajectory else None)
    hook = DateHook(update, steps, num_inference_steps)
    with frozen(*pipeline_modules(pipe), scorer, x0_decoder), checkpointing(gradient_checkpointing, denoiser, decoder):
        hook.attach()
        try:
            output = sample()
        finally:
            hook.detach()
    if trajectory:
        output.trajectory = update.trajectory
    return output
