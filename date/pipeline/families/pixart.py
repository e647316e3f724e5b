"""PixArt-α / Σ: `encoder_hidden_states` is T5's tokens with `encoder_attention_mask` marking padding, which DATE leaves
where it is; no pooled input; the transformer also predicts a variance, which the pipeline (and DATE) drop."""
from date.pipeline.families.base import Family


def _unmasked_tokens(pipe, call):
    """1 on the tokens `encoder_attention_mask` lets the transformer see, over the whole width."""
    text = call["encoder_hidden_states"]
    return call["encoder_attention_mask"][:, :, None].expand_as(text).float()


PIXART = Family(
    name="pixart",
    size_multiple=16,
    pipelines=("PixArtAlphaPipeline", "PixArtSigmaPipeline"),
    text_movable=_unmasked_tokens,
    default_size=lambda pipe: pipe.transformer.config.sample_size * pipe.vae_scale_factor,
    exact_size=(("use_resolution_binning", False),),  # else the pipeline moves a requested size to its nearest bin
)
