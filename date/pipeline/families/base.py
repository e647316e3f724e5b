"""What differs between pipeline families, and nothing else: where the text condition sits in a denoiser call, which
inputs are shared by the whole batch, and how latents become an image.

Everything DATE does (the update rule, the objective, guidance, x̂0, memory plan) is written once against this; a family
is a few fields. Prompt encoding, guidance setup and micro-conditioning stay the pipeline's own: DATE reads the
conditional embedding from the pipeline's first denoiser call and substitutes its updated one in every later call.
"""
import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, FrozenSet, Mapping, NamedTuple, Optional, Tuple

import torch


class Defaults(NamedTuple):
    steps: int
    guidance_scale: float
    size: int


@dataclass(frozen=True)
class SkipLayerGuidance:
    """SD3's skip-layer guidance: at `steps`, ε += scale·(ε_c − ε_skip), ε_skip from the conditional call with the
    transformer blocks `layers` skipped."""

    layers: Tuple[int, ...]
    scale: float
    steps: FrozenSet[int]


@dataclass(frozen=True)
class Family:
    name: str
    pipelines: Tuple[str, ...]  # diffusers pipeline class names
    pooled: Optional[Tuple[str, ...]] = None  # path of the pooled text embedding in the call's kwargs
    # (pipe, call) -> 1 where c may move, 0 on padding the pipeline adds and the model does not use (None: everywhere)
    text_movable: Optional[Callable] = None
    unbatched: Tuple[str, ...] = ()  # kwargs without a batch dimension (position ids)
    default_scheduler: Optional[str] = None  # the paper's name of the sampler the CLI uses by default (None: the model's)
    default_guidance: Optional[float] = None  # date.generate's guidance scale when none is given (None: the pipeline's)
    flow_matching: bool = False  # x̂0 = x_t − σ·v; the paper's DDPM-family sampler names do not apply
    unpack: Optional[Callable] = None  # (pipe, latents, height, width) -> latents in the VAE's layout
    default_size: Callable = lambda pipe: pipe.default_sample_size * pipe.vae_scale_factor
    exact_size: Tuple[Tuple[str, object], ...] = ()  # pipeline arguments that keep a requested size as it is
    size_multiple: int = 8  # image sides must be multiples of this: the VAE's factor times the denoiser's patch size
    vae_stats: bool = False  # the pipeline unscales latents by the VAE config's latents_mean / latents_std when set
    vae_upcast: bool = False  # the pipeline decodes an fp16 VAE in fp32 when its config says `force_upcast`

    def sampling_defaults(self, pipeline_class: type, denoiser_config: Mapping) -> Tuple[int, float]:
        """Steps and guidance scale when none is given: the pipeline's documented defaults, except where the family
        sets its own (SD 1.x/2.x: guidance 8, the paper's). Read from the class and the denoiser's config, so a plan
        knows them before any weight loads."""
        parameters = inspect.signature(pipeline_class.__call__).parameters
        return (parameters["num_inference_steps"].default,
                self.default_guidance or parameters["guidance_scale"].default)

    def defaults(self, pipe) -> "Defaults":
        """Steps, guidance scale and image size when none is given. One place for the CLI and `date.generate`."""
        denoiser = pipe.unet if hasattr(pipe, "unet") else pipe.transformer
        return Defaults(*self.sampling_defaults(type(pipe), denoiser.config), self.default_size(pipe))

    @contextmanager
    def decode_precision(self, decoder):
        """Within it, `decoder` runs in the precision the pipeline decodes in: SDXL's pipeline decodes an fp16 VAE
        whose config says `force_upcast` in fp32, "as it overflows in float16"; DATE's x̂0 must not differ."""
        upcast = (self.vae_upcast and decoder.dtype == torch.float16
                  and getattr(decoder.config, "force_upcast", False))
        # nn.Module.to: diffusers' own `to` warns about fp32 modules at every cast, i.e. twice per update
        if upcast:
            torch.nn.Module.to(decoder, torch.float32)
        try:
            yield
        finally:
            if upcast:
                torch.nn.Module.to(decoder, torch.float16)

    def negative_inputs(self, pipe, pipeline_kwargs: dict, images_per_prompt: int) -> Optional[dict]:
        """Inputs of a separate negative call (true CFG) to put in the conditional call, or None: the family's
        guidance, if any, is in its batched [uncond; cond] call."""
        return None

    def skip_layer_guidance(self, pipe, pipeline_kwargs: dict, num_inference_steps: int) -> Optional[SkipLayerGuidance]:
        """The extra guidance term the pipeline adds at some steps, or None."""
        return None

    def latents_to_image(self, pipe, decoder, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Image in [0, 1] (no clamp) from the denoiser's latents, by the VAE or a tiny stand-in (`AutoencoderTiny`),
        unscaled exactly as the pipeline unscales its final latents."""
        if self.unpack is not None:
            latents = self.unpack(pipe, latents, height, width)
        config = decoder.config
        latents = latents.to(decoder.dtype)
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if self.vae_stats and mean is not None and std is not None:
            view = lambda values: torch.tensor(values, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
            latents = latents * view(std) / config.scaling_factor + view(mean)
        else:
            latents = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
        return decoder.decode(latents, return_dict=False)[0] / 2 + 0.5
