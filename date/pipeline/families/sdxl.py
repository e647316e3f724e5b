"""SDXL: `encoder_hidden_states` is both CLIP encoders' tokens (77 × 2048); the pooled embedding of the second is
`added_cond_kwargs["text_embeds"]`, next to the micro-conditioning `time_ids`. Its pipeline decodes an fp16 VAE in
fp32 when the VAE's config says `force_upcast`, and unscales by `latents_mean`/`latents_std` when they are set."""
from date.pipeline.families.base import Family

SDXL = Family(
    name="sdxl",
    pipelines=("StableDiffusionXLPipeline",),
    pooled=("added_cond_kwargs", "text_embeds"),
    default_size=lambda pipe: pipe.default_sample_size * pipe.vae_scale_factor,
    vae_stats=True,
    vae_upcast=True,
)
