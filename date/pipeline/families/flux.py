"""FLUX.1 (flow matching, latents packed 2×2 into tokens): `encoder_hidden_states` is T5's tokens, `pooled_projections`
CLIP's pooled embedding; `txt_ids` / `img_ids` are positions shared by the batch. FLUX.1-dev is guidance-distilled: one
conditional call per step, the guidance scale enters as an embedding, and DATE's x̂0 uses that single prediction.
FLUX.1-schnell has no guidance embedding and is documented for 4 steps without guidance."""
from date.pipeline.families.base import Defaults, Family


def _unpack(pipe, latents, height: int, width: int):
    return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)


class FluxFamily(Family):
    def defaults(self, pipe) -> Defaults:
        defaults = super().defaults(pipe)
        if not pipe.transformer.config.guidance_embeds:  # schnell: 4 steps, no guidance
            return defaults._replace(steps=4, guidance_scale=0.0)
        return defaults


FLUX = FluxFamily(
    name="flux",
    size_multiple=16,
    pipelines=("FluxPipeline",),
    pooled=("pooled_projections",),
    unbatched=("txt_ids", "img_ids"),
    flow_matching=True,
    unpack=_unpack,
)
