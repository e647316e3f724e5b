"""DATE's objective at one sampling step, −h(decode(x̂0(c))) + prior(c), and its gradient in c at the lowest cost.

The gradient is taken in two halves that meet at x̂0, because their memory differs by an order of magnitude:
1. UNet forward for the whole batch (or a chunk of it, where its graph would not fit), c → x̂0, keeping its graph;
2. decoder + scorer in micro-batches: each takes x̂0 of a few images, returns ∂h/∂x̂0 (a vector-Jacobian product) and
   frees its graph before the next one starts;
3. one backward through the UNet with ∂(−h)/∂x̂0 as the output gradient.
Samples are independent, so this is the same gradient as one backward through everything (up to float rounding), and
the same FLOPs.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

from .memory import LargestStep, SavedBytes, UpdatePlan, weight_bytes
from .schedulers import predicted_original_sample
from .scorer import Scorer


def decode(decoder, latents: torch.Tensor) -> torch.Tensor:
    """Image in [0, 1] from (scaled) latents, by the pipeline's VAE or a tiny stand-in (`AutoencoderTiny`), no clamp."""
    latents = latents.to(decoder.dtype) / decoder.config.scaling_factor
    return decoder.decode(latents, return_dict=False)[0] / 2 + 0.5


@dataclass
class Objective:
    """Everything the objective needs besides c and x_t; one per `date.generate` call."""

    pipe: object
    scorer: Scorer
    prompts: List[str]
    uncond_embeds: Optional[torch.Tensor]  # None: no classifier-free guidance
    cond_embeds_org: torch.Tensor
    guidance_scale: float
    weight_prior: float
    decoder: object  # decodes x̂0 inside updates: the pipeline's VAE, or a tiny decoder (fast mode)
    plan: UpdatePlan = field(default_factory=lambda: UpdatePlan("auto"))

    def unconditional(self, model_input: torch.Tensor, t: torch.Tensor) -> Optional[torch.Tensor]:
        """ε(x_t, t, c_u): the same for every gradient step of an update, and for the sampling step that follows."""
        if self.uncond_embeds is None:
            return None
        with torch.no_grad():
            return self.pipe.unet(model_input, t, encoder_hidden_states=self.uncond_embeds, return_dict=False)[0]

    def predicted_x0(self, embeds: torch.Tensor, model_input: torch.Tensor, t: torch.Tensor, step_index: int,
                     noise_uncond: Optional[torch.Tensor]) -> torch.Tensor:
        """x̂0 from the guided prediction with conditional embedding `embeds`."""
        noise = self.pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
        if noise_uncond is not None:
            noise = noise_uncond + self.guidance_scale * (noise - noise_uncond)
        return predicted_original_sample(self.pipe.scheduler, noise, model_input, step_index, t)

    def gradient(self, embeds: torch.Tensor, model_input: torch.Tensor, t: torch.Tensor, step_index: int,
                 noise_uncond: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """g = ∂Σ_b(−h_b + prior_b)/∂c and h_b at c = `embeds`, the UNet taking `plan.chunk` samples at a time."""
        grads, values = [], []
        start = 0
        while start < len(embeds):
            part = slice(start, start + self.plan.chunk(len(embeds)))
            grad, h = self._chunk_gradient(embeds, part, model_input, t, step_index, noise_uncond)
            grads.append(grad)
            values.append(h)
            start = part.stop
        return torch.cat(grads), torch.cat(values)

    def _chunk_gradient(self, embeds: torch.Tensor, part: slice, model_input: torch.Tensor, t: torch.Tensor,
                        step_index: int, noise_uncond: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        measuring = self.plan.measuring
        with torch.enable_grad():
            embeds = embeds[part].detach().requires_grad_(True)
            with SavedBytes(self.pipe.unet, active=measuring) as unet_graph:
                x0 = self.predicted_x0(embeds, model_input[part], t, step_index,
                                       None if noise_uncond is None else noise_uncond[part])
            image_grad, h = self.image_gradient(x0.detach(), self.prompts[part], unet_graph.total)
            outputs, output_grads = [x0], [-image_grad]
            if self.weight_prior != 0:
                drift = (embeds - self.cond_embeds_org[part]) ** 2
                outputs.append(self.weight_prior * drift.mean(dim=tuple(range(1, drift.dim()))).sum())
                output_grads.append(torch.ones((), device=drift.device, dtype=drift.dtype))
            (grad,) = torch.autograd.grad(outputs, embeds, output_grads)
        return grad, h

    def image_gradient(self, x0: torch.Tensor, prompts: List[str], unet_graph: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """∂h/∂x̂0 and h, decoder + scorer in micro-batches whose graphs are freed one after the other. While the plan
        is measuring (one image), this also measures the decoder + scorer graph and sizes the plan."""
        grads, values = torch.empty_like(x0), torch.empty(len(x0), device=x0.device)
        start = 0
        while start < len(x0):
            measuring = self.plan.measuring
            part = slice(start, start + (1 if measuring else self.plan.micro_batch))
            with torch.enable_grad(), SavedBytes(self.decoder, self.scorer, active=measuring) as graph:
                x = x0[part].detach().requires_grad_(True)
                with LargestStep(self.decoder, active=measuring) as step:
                    image = decode(self.decoder, x)
                h = self.scorer.score(image, prompts[part])
                (grad,) = torch.autograd.grad(h.sum(), x)
            if measuring:
                extra = weight_bytes(self.scorer) + (0 if self.decoder is self.pipe.vae else weight_bytes(self.decoder))
                self.plan.decide(len(self.prompts), unet_graph, graph.total, step.bytes, self.pipe, extra, x0.device)
            grads[part], values[part] = grad.to(x0.dtype), h.detach()
            start = part.stop
        return grads, values
