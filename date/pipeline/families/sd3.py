"""Stable Diffusion 3 / 3.5 (flow matching): `encoder_hidden_states` is CLIP-L/G tokens (padded to T5's width) followed
by T5's; the pooled CLIP embeddings are `pooled_projections`."""
from date.pipeline.families.base import Family

SD3 = Family(
    name="sd3",
    size_multiple=16,
    pipelines=("StableDiffusion3Pipeline",),
    pooled=("pooled_projections",),
    flow_matching=True,
)
