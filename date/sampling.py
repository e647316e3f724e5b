"""`date.generate`: DATE on top of a stock diffusers pipeline of any supported family.

The pipeline runs its own loop, prompt encoding, guidance, scheduler steps and decoding. Hooks on its denoiser
(`date.pipeline.hook`) hand the denoiser call of every update step to `date.step.date_step`, which updates c on that
call's own x_t; the updated c goes to every later call and stays in use until the next update.
"""
import functools
from typing import Iterable, List, Optional, Sequence, Set, Union

import torch

from date.memory import MicroBatch, UpdatePlan, checkpointing, frozen
from date.objective import Objective, pipeline_modules
from date.pipeline.call import GuidedBatch, sample_name
from date.pipeline.families import family_of
from date.pipeline.hook import DateHook
from date.pipeline.precision import fp32_text_inputs
from date.scorers.base import Scorer
from date.step import StepSettings, date_step


def update_steps(num_inference_steps: int, skip_freq: int = 10, skip_itrs: Optional[Iterable[int]] = None) -> Set[int]:
    """Indices of the sampling steps whose embedding is updated: every `skip_freq`-th step, or exactly `skip_itrs`."""
    if skip_itrs is not None:
        return {i for i in skip_itrs if 0 <= i < num_inference_steps}
    if skip_freq <= 0:
        raise ValueError("skip_freq must be positive")
    return set(range(0, num_inference_steps, skip_freq))


def generate(
    pipe,
    prompts: Union[str, Sequence[str]],
    scorer: Optional[Scorer],
    num_inference_steps: Optional[int] = None,
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

    `pipe` is a stock diffusers pipeline of any supported family (`date.pipeline.families`: SD 1.x/2.x, SDXL, SD3, FLUX, PixArt).
    With no update step (`skip_itrs=[]`), ρ = 0 or no scorer, this is exactly the pipeline's fixed-embedding sampling.
    `num_inference_steps` None: the pipeline's own default (FLUX.1-schnell: 4). `guidance_scale` None: 8 for
    SD 1.x/2.x (the paper's), else the pipeline's own default. With `num_images_per_prompt` (a pipeline argument),
    every image has its own copy of c, updated on its own, as if the prompts were written out. `update_pooled` also
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
    # 1. The pipeline's own call, with its defaults where none is given (guidance: 8 for SD 1.x/2.x, the paper's).
    family = family_of(pipe)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    defaults = family.defaults(pipe)
    num_inference_steps = num_inference_steps or defaults.steps
    guidance_scale = defaults.guidance_scale if guidance_scale is None else guidance_scale
    height, width = height or defaults.size, width or defaults.size
    sample = functools.partial(pipe, prompt=prompts, num_inference_steps=num_inference_steps,
                               guidance_scale=guidance_scale, latents=latents, generator=generator,
                               output_type=output_type, height=height, width=width, **pipeline_kwargs)
    steps = update_steps(num_inference_steps, skip_freq, skip_itrs)
    if not steps or lr_upt_prompt == 0 or num_upt_prompt <= 0 or scorer is None:
        output = sample()
        if trajectory:
            output.trajectory = []
        return output

    # 2. What the DATE step needs: the objective −h(decode(x̂0(c))) + prior, and how far each update moves c; one c per
    #    image, in the order the pipeline repeats prompts (each prompt's images side by side).
    images_per_prompt = pipeline_kwargs.get("num_images_per_prompt") or 1
    image_prompts = [prompt for prompt in prompts for _ in range(images_per_prompt)]
    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    decoder = x0_decoder if x0_decoder is not None else pipe.vae
    negative = family.negative_inputs(pipe, pipeline_kwargs, images_per_prompt)  # FLUX's true CFG
    objective = Objective(pipe=pipe, family=family, denoiser=denoiser, sample_name=sample_name(denoiser), scorer=scorer,
                          prompts=image_prompts, weight_prior=weight_prior, decoder=decoder, height=height, width=width,
                          guidance_scale=pipeline_kwargs["true_cfg_scale"] if negative else guidance_scale,
                          guidance_rescale=pipeline_kwargs.get("guidance_rescale", 0.0), negative=negative,
                          skip_layer_guidance=family.skip_layer_guidance(pipe, pipeline_kwargs, num_inference_steps),
                          update_pooled=update_pooled, plan=UpdatePlan(update_batch_size))
    recorded = [] if trajectory else None
    step = functools.partial(date_step, objective, settings=StepSettings(num_upt_prompt, lr_upt_prompt, init_org),
                             trajectory=recorded)
    hook = DateHook(denoiser, GuidedBatch(sample_name(denoiser), len(image_prompts), family.unbatched), objective, step,
                    steps, pipe.scheduler, num_inference_steps)

    # 3. Sample: the pipeline's own loop; at each update step, its denoiser call runs the DATE step first (the hook).
    with frozen(*pipeline_modules(pipe), scorer, x0_decoder), checkpointing(gradient_checkpointing, denoiser, decoder), \
            fp32_text_inputs(denoiser):
        hook.attach()
        try:
            output = sample()
        finally:
            hook.detach()
    if trajectory:
        output.trajectory = recorded
    return output
