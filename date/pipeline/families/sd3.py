"""Stable Diffusion 3 / 3.5 (flow matching): `encoder_hidden_states` is CLIP-L/G tokens (padded to T5's width) followed
by T5's; the pooled CLIP embeddings are `pooled_projections`. The CLIP tokens' padding to T5's width never moves. With
`skip_guidance_layers` (skip-layer guidance, recommended for SD 3.5 medium) the pipeline adds scale·(ε_c − ε_skip) at
some steps; DATE's x̂0 does the same."""
import inspect
from typing import Optional

import torch

from date.pipeline.families.base import Family, SkipLayerGuidance


def _unpadded(pipe, call):
    """0 where `encode_prompt` zero-pads CLIP-L/G's tokens (their two widths side by side) to T5's width."""
    movable = torch.ones_like(call["encoder_hidden_states"], dtype=torch.float32)
    clip_width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    movable[:, :pipe.tokenizer_max_length, clip_width:] = 0
    return movable


class SD3Family(Family):
    def skip_layer_guidance(self, pipe, pipeline_kwargs: dict, num_inference_steps: int) -> Optional[SkipLayerGuidance]:
        if not pipeline_kwargs.get("skip_guidance_layers"):
            return None
        defaults = inspect.signature(pipe.__call__).parameters
        setting = {name: pipeline_kwargs.get(name, defaults[name].default) for name in (
            "skip_layer_guidance_scale", "skip_layer_guidance_start", "skip_layer_guidance_stop")}
        n = num_inference_steps  # the pipeline's own test: n·start < i < n·stop
        steps = frozenset(i for i in range(n) if n * setting["skip_layer_guidance_start"] < i
                          < n * setting["skip_layer_guidance_stop"])
        return SkipLayerGuidance(tuple(pipeline_kwargs["skip_guidance_layers"]),
                                 setting["skip_layer_guidance_scale"], steps)


SD3 = SD3Family(
    name="sd3",
    size_multiple=16,
    pipelines=("StableDiffusion3Pipeline",),
    pooled=("pooled_projections",),
    flow_matching=True,
    text_movable=_unpadded,
)
