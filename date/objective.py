"""DATE's objective at one sampling step, −h(decode(x̂0(c))) + prior(c), and its gradient in c at the lowest cost.

c is whatever DATE updates, flattened per sample (`Condition`): the token embedding the denoiser attends to, and with
`update_pooled` the pooled embedding too. The gradient is taken in two halves that meet at x̂0, because their memory
differs by an order of magnitude:
1. denoiser forward for the whole batch (or a chunk of it, where its graph would not fit), c → x̂0, keeping its graph;
2. decoder + scorer in micro-batches: each takes x̂0 of a few images, returns ∂h/∂x̂0 (a vector-Jacobian product) and
   frees its graph before the next one starts;
3. one backward through the denoiser with ∂(−h)/∂x̂0 as the output gradient.
Samples are independent, so this is the same gradient as one backward through everything (up to float rounding), and
the same FLOPs.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

from date.pipeline.call import Call, batch_slice, get, replaced
from date.pipeline.families import Family
from date.pipeline.families.base import SkipLayerGuidance
from date.memory import LargestStep, SavedBytes, UpdatePlan, weight_bytes
from date.pipeline.schedulers import predicted_original_sample
from date.scorers.base import Scorer

TEXT = ("encoder_hidden_states",)


class Condition:
    """Reads and writes the updated inputs of a denoiser call as one flat vector per sample."""

    def __init__(self, family: Family, call: Call, update_pooled: bool) -> None:
        self.family = family
        self.paths = [TEXT] + ([family.pooled] if update_pooled and family.pooled else [])
        self.shapes = [get(call, path).shape[1:] for path in self.paths]

    def read(self, call: Call) -> torch.Tensor:
        """c in fp32 whatever the pipeline's dtype: an fp16/bf16 c would round most of a step of ρ away."""
        return torch.cat([get(call, path).flatten(1).float() for path in self.paths], dim=1)

    def write(self, call: Call, flat: torch.Tensor) -> Call:
        """The call with `flat` in place of c, in fp32: the denoiser reads it in fp32 (`date.pipeline.precision`)."""
        sizes = [shape.numel() for shape in self.shapes]
        for path, shape, value in zip(self.paths, self.shapes, flat.split(sizes, dim=1)):
            call = replaced(call, path, value.reshape(len(flat), *shape))
        return call

    def movable(self, pipe, call: Call) -> Optional[torch.Tensor]:
        """1 where DATE may move c, 0 on padding the model does not use (PixArt's masked tokens, SD3's CLIP padding);
        None: everywhere."""
        if self.family.text_movable is None:
            return None
        text = self.family.text_movable(pipe, call).flatten(1)
        rest = [torch.ones(len(text), shape.numel(), device=text.device) for shape in self.shapes[1:]]
        return torch.cat([text, *rest], dim=1)


@dataclass
class Point:
    """One update step: the pipeline's conditional call at x_t, and the unconditional prediction there (if guided)."""

    call: Call
    x_t: torch.Tensor
    noise_uncond: Optional[torch.Tensor]  # ε_u, or ε of FLUX's separate negative call (true CFG)
    t: torch.Tensor
    step_index: int
    noise_skip: Optional[torch.Tensor] = None  # ε of SD3's skip-layer call, at the steps where the pipeline adds it


def without_variance(output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Transformers that also predict a variance (PixArt) return twice the latent channels; the mean is the first half."""
    return output.chunk(2, dim=1)[0] if output.dim() == 4 and output.shape[1] == 2 * sample.shape[1] else output


@dataclass
class Objective:
    """Everything the objective needs besides c and x_t; one per `date.generate` call."""

    pipe: object
    family: Family
    denoiser: torch.nn.Module
    sample_name: str
    scorer: Scorer
    prompts: List[str]
    guidance_scale: float  # the scale of the guidance formula: CFG's w, or FLUX's true_cfg_scale
    weight_prior: float
    decoder: object  # decodes x̂0 inside updates: the pipeline's VAE, or a tiny decoder (fast mode)
    height: int
    width: int
    update_pooled: bool = False
    guidance_rescale: float = 0.0  # SD / SDXL's `guidance_rescale`: x̂0 from the prediction the sampler uses
    negative: Optional[dict] = None  # FLUX's true CFG: the negative call's text inputs
    skip_layer_guidance: Optional[SkipLayerGuidance] = None  # SD3's extra guidance term
    plan: UpdatePlan = field(default_factory=lambda: UpdatePlan("auto"))
    condition: Optional[Condition] = None
    cond_org: Optional[torch.Tensor] = None
    movable: Optional[torch.Tensor] = None

    def start(self, call: Call) -> torch.Tensor:
        """Take c_org from the pipeline's first conditional call; return it (flat)."""
        self.condition = Condition(self.family, call, self.update_pooled)
        self.cond_org = self.condition.read(call).detach().clone()
        self.movable = self.condition.movable(self.pipe, call)
        return self.cond_org

    def write(self, call: Call, embeds: torch.Tensor) -> Call:
        """The call with c = `embeds` (flat) in place of its text condition."""
        return self.condition.write(call, embeds)

    def carries_original(self, call: Call) -> bool:
        """Whether the pipeline's call still holds c_org (it passes the same embedding at every step)."""
        return torch.equal(self.condition.read(call), self.cond_org)

    def point(self, call: Call, uncond_call: Optional[Call], step_index: int) -> Point:
        """The update step at this call. What guidance adds to the conditional prediction is computed once, for every
        gradient step (and ε_u also for the sampling step): ε_u from the call's own unconditional half, or FLUX's
        negative prediction from the conditional call with the negative inputs; SD3's skip-layer prediction."""
        x_t = call[self.sample_name]
        if uncond_call is None and self.negative is not None:
            uncond_call = {**call, **self.negative}
        noise_uncond = noise_skip = None
        with torch.no_grad():
            if uncond_call is not None:
                noise_uncond = self.denoiser(**uncond_call)[0]
            slg = self.skip_layer_guidance
            if slg is not None and noise_uncond is not None and step_index in slg.steps:
                noise_skip = self.denoiser(**call, skip_layers=list(slg.layers))[0]
        return Point(call, x_t, noise_uncond, self.pipe.scheduler.timesteps[step_index], step_index, noise_skip)

    def predicted_x0(self, embeds: torch.Tensor, point: Point, part: slice) -> torch.Tensor:
        """x̂0 of samples `part` from the guided prediction with updated inputs `embeds` (flat, those samples only),
        combined exactly as the pipeline combines it."""
        call = self.condition.write(batch_slice(point.call, part, len(self.prompts), self.family.unbatched), embeds)
        x_t = point.x_t[part]
        noise = cond = without_variance(self.denoiser(**call)[0], x_t)
        if point.noise_uncond is not None:
            uncond = without_variance(point.noise_uncond[part], x_t)
            noise = uncond + self.guidance_scale * (cond - uncond)
            if point.noise_skip is not None:
                noise = noise + self.skip_layer_guidance.scale * (cond - point.noise_skip[part])
            if self.guidance_rescale > 0:
                noise = rescale_noise_cfg(noise, cond, self.guidance_rescale)
        return predicted_original_sample(self.pipe.scheduler, noise, x_t, point.step_index, point.t)

    def gradient(self, embeds: torch.Tensor, point: Point, keep_images: bool = False
                 ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """g = ∂Σ_b(−h_b + prior_b)/∂c (zero on padding) and h_b at c = `embeds`, `plan.chunk` samples at a time; with
        `keep_images`, also the decoded x̂0 (on the CPU, as h sees it), else None."""
        grads, values, images = [], [], []
        start = 0
        while start < len(embeds):
            part = slice(start, start + self.plan.chunk(len(embeds)))
            grad, h = self._chunk_gradient(embeds, point, part, images if keep_images else None)
            grads.append(grad)
            values.append(h)
            start = part.stop
        return torch.cat(grads), torch.cat(values), torch.cat(images) if keep_images else None

    def _chunk_gradient(self, embeds: torch.Tensor, point: Point, part: slice,
                        images: Optional[List[torch.Tensor]]) -> Tuple[torch.Tensor, torch.Tensor]:
        measuring = self.plan.measuring
        with torch.enable_grad():
            embeds = embeds[part].detach().requires_grad_(True)
            with SavedBytes(self.denoiser, active=measuring) as denoiser_graph:
                x0 = self.predicted_x0(embeds, point, part)
            with self.family.decode_precision(self.decoder):
                image_grad, h = self.image_gradient(x0.detach(), self.prompts[part], denoiser_graph.total, images)
            # Loss scaling: ∂h/∂x̂0 enters the denoiser's backward in the denoiser's dtype, where fp16 flushes small
            # values to zero. A power of two per sample brings its largest element to about 1 and is undone exactly.
            scale = power_of_two_scale(image_grad)
            outputs, output_grads = [x0], [(-image_grad.float() * scale).to(x0.dtype)]
            if self.weight_prior != 0:
                drift = (embeds - self.cond_org[part]) ** 2
                outputs.append(self.weight_prior * (drift.mean(dim=1) * scale.flatten()).sum())
                output_grads.append(torch.ones((), device=drift.device, dtype=drift.dtype))
            (grad,) = torch.autograd.grad(outputs, embeds, output_grads)
            grad = grad / scale.view(-1, 1)
        return (grad if self.movable is None else grad * self.movable[part]), h

    def image_gradient(self, x0: torch.Tensor, prompts: List[str], denoiser_graph: int,
                       images: Optional[List[torch.Tensor]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """∂h/∂x̂0 and h, decoder + scorer in micro-batches whose graphs are freed one after the other; the decoded
        images are appended to `images` when it is a list. While the plan is measuring (one image), this also measures
        the decoder + scorer graph and sizes the plan."""
        grads, values = torch.empty_like(x0, dtype=torch.float32), torch.empty(len(x0), device=x0.device)
        start = 0
        while start < len(x0):
            measuring = self.plan.measuring
            part = slice(start, start + (1 if measuring else self.plan.micro_batch))
            with torch.enable_grad(), SavedBytes(self.decoder, self.scorer, active=measuring) as graph:
                x = x0[part].detach().requires_grad_(True)
                with LargestStep(self.decoder, active=measuring) as step:
                    image = self.family.latents_to_image(self.pipe, self.decoder, x, self.height, self.width)
                h = self.scorer.score(image, prompts[part])
                (grad,) = torch.autograd.grad(h.sum(), x)
            if images is not None:
                images.append(image.detach().float().cpu())
            if measuring:
                extra = weight_bytes(self.scorer) + (0 if self.decoder is self.pipe.vae else weight_bytes(self.decoder))
                self.plan.decide(len(self.prompts), denoiser_graph, graph.total, step.bytes,
                                 weight_bytes(*pipeline_modules(self.pipe)), extra, x0.device)
            grads[part], values[part] = grad.float(), h.detach()
            start = part.stop
        return grads, values

    @torch.no_grad()
    def evaluate(self, embeds: torch.Tensor, point: Point) -> Tuple[torch.Tensor, torch.Tensor]:
        """The decoded x̂0 (as h sees it, unclamped, on the CPU) and h at c = `embeds`, without gradients."""
        images, values = [], []
        for start in range(0, len(embeds), self.plan.chunk(len(embeds))):
            part = slice(start, start + self.plan.chunk(len(embeds)))
            x0 = self.predicted_x0(embeds[part], point, part)
            with self.family.decode_precision(self.decoder):
                image = self.family.latents_to_image(self.pipe, self.decoder, x0, self.height, self.width)
            values.append(self.scorer.score(image, self.prompts[part]).detach())
            images.append(image.float().cpu())
        return torch.cat(images), torch.cat(values)


def power_of_two_scale(grad: torch.Tensor) -> torch.Tensor:
    """Per sample, 2^k with 2^k·max|grad| in [0.5, 1) (1 for a zero or non-finite gradient), shaped to broadcast."""
    peak = grad.detach().float().flatten(1).abs().amax(dim=1)
    usable = torch.isfinite(peak) & (peak > 0)
    exponent = torch.where(usable, -torch.frexp(torch.where(usable, peak, torch.ones_like(peak))).exponent,
                           torch.zeros_like(peak, dtype=torch.int32))
    return torch.ldexp(torch.ones_like(peak), exponent).view(-1, *([1] * (grad.dim() - 1)))


def pipeline_modules(pipe) -> List[torch.nn.Module]:
    return [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
