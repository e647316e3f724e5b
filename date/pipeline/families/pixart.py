"""PixArt-α / Σ: `encoder_hidden_states` is T5's tokens with `encoder_attention_mask` marking padding, which DATE leaves
where it is; no pooled input; the transformer also predicts a variance, which the pipeline (and DATE) drop."""
from date.pipeline.families.base import Family

PIXART = Family(
    name="pixart",
    size_multiple=16,
    pipelines=("PixArtAlphaPipeline", "PixArtSigmaPipeline"),
    mask="encoder_attention_mask",
    default_size=lambda pipe: pipe.transformer.config.sample_size * pipe.vae_scale_factor,
    exact_size=(("use_resolution_binning", False),),  # else the pipeline moves a requested size to its nearest bin
)
