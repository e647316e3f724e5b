"""Stable Diffusion 3 / 3.5 (flow matching): `encoder_hidden_states` is CLIP-L/G tokens (padded to T5's width) followed
by T5's; the pooled CLIP embeddings are `pooled_projections`. The CLIP tokens' padding to T5's width never moves."""
import torch

from date.pipeline.families.base import Family


def _unpadded(pipe, call):
    """0 where `encode_prompt` zero-pads CLIP-L/G's tokens (their two widths side by side) to T5's width."""
    movable = torch.ones_like(call["encoder_hidden_states"], dtype=torch.float32)
    clip_width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    movable[:, :pipe.tokenizer_max_length, clip_width:] = 0
    return movable


SD3 = Family(
    name="sd3",
    size_multiple=16,
    pipelines=("StableDiffusion3Pipeline",),
    pooled=("pooled_projections",),
    flow_matching=True,
    text_movable=_unpadded,
)
