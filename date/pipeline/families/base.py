"""What differs between pipeline families, and nothing else: where the text condition sits in a denoiser call, which
inputs are shared by the whole batch, and how latents become an image.

Everything DATE does (the update rule, the objective, guidance, x̂0, memory plan) is written once against this; a family
is a few fields. Prompt encoding, guidance setup and micro-conditioning stay the pipeline's own: DATE reads the
conditional embedding from the pipeline's first denoiser call and substitutes its updated one in every later call.
"""
import inspect
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Tuple

import torch


class Defaults(NamedTuple):
    steps: int
    guidance_scale: float
    size: int


@dataclass(frozen=True)
class Family:
    name: str
    pipelines: Tuple[str, ...]  # diffusers pipeline class names
    pooled: Optional[Tuple[str, ...]] = None  # path of the pooled text embedding in the call's kwargs
    mask: Optional[str] = None  # kwarg holding the text attention mask: padding tokens are never moved
    unbatched: Tuple[str, ...] = ()  # kwargs without a batch dimension (position ids)
    default_scheduler: Optional[str] = None  # the paper's name of the sampler the CLI uses by default (None: the model's)
    default_guidance: Optional[float] = None  # date.generate's guidance scale when none is given (None: the pipeline's)
    flow_matching: bool = False  # x̂0 = x_t − σ·v; the paper's DDPM-family sampler names do not apply
    unpack: Optional[Callable] = None  # (pipe, latents, height, width) -> latents in the VAE's layout
    default_size: Callable = lambda pipe: pipe.default_sample_size * pipe.vae_scale_factor
    exact_size: Tuple[Tuple[str, object], ...] = ()  # pipeline arguments that keep a requested size as it is
    size_multiple: int = 8  # image sides must be multiples of this: the VAE's factor times the denoiser's patch size

    def defaults(self, pipe) -> "Defaults":
        """Steps, guidance scale and image size when none is given: the pipeline's documented defaults, except where
        the family sets its own (SD 1.x/2.x: guidance 8, the paper's). One place for the CLI and `date.generate`."""
        parameters = inspect.signature(pipe.__call__).parameters
        return Defaults(parameters["num_inference_steps"].default,
                        self.default_guidance or parameters["guidance_scale"].default, self.default_size(pipe))

    def latents_to_image(self, pipe, decoder, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Image in [0, 1] (no clamp) from the denoiser's latents, by the VAE or a tiny stand-in (`AutoencoderTiny`)."""
        if self.unpack is not None:
            latents = self.unpack(pipe, latents, height, width)
        config = decoder.config
        latents = latents.to(decoder.dtype) / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
        return decoder.decode(latents, return_dict=False)[0] / 2 + 0.5
