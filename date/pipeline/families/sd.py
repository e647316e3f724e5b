"""Stable Diffusion 1.x / 2.x (ε or v): the text condition is `encoder_hidden_states` (77 × 768/1024), no pooled input."""
from date.pipeline.families.base import Family

SD = Family(
    name="sd",
    pipelines=("StableDiffusionPipeline",),
    default_scheduler="DDIM",  # the paper's
    default_guidance=8.0,  # the paper's
    default_size=lambda pipe: pipe.unet.config.sample_size * pipe.vae_scale_factor,
)
