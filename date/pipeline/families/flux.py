"""FLUX.1 (flow matching, latents packed 2×2 into tokens): `encoder_hidden_states` is T5's tokens, `pooled_projections`
CLIP's pooled embedding; `txt_ids` / `img_ids` are positions shared by the batch. FLUX.1-dev is guidance-distilled: one
conditional call per step, the guidance scale enters as an embedding, and DATE's x̂0 uses that single prediction.
FLUX.1-schnell has no guidance embedding and is documented for 4 steps without guidance. With `true_cfg_scale > 1` and a
negative prompt the pipeline adds a separate negative call per step and combines neg + s·(pos − neg): DATE's x̂0 does
the same, with the negative inputs encoded exactly as the pipeline encodes them."""
from typing import Mapping, Optional, Tuple

import torch

from date.pipeline.families.base import Family


def _unpack(pipe, latents, height: int, width: int):
    return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)


class FluxFamily(Family):
    def sampling_defaults(self, pipeline_class: type, denoiser_config: Mapping) -> Tuple[int, float]:
        if not denoiser_config["guidance_embeds"]:  # schnell: 4 steps, no guidance
            return 4, 0.0
        return super().sampling_defaults(pipeline_class, denoiser_config)

    def negative_inputs(self, pipe, pipeline_kwargs: dict, images_per_prompt: int) -> Optional[dict]:
        get = pipeline_kwargs.get
        has_negative = get("negative_prompt") is not None or (
            get("negative_prompt_embeds") is not None and get("negative_pooled_prompt_embeds") is not None)
        if not (get("true_cfg_scale", 1.0) > 1 and has_negative):
            return None
        with torch.no_grad():
            embeds, pooled, text_ids = pipe.encode_prompt(
                prompt=get("negative_prompt"), prompt_2=get("negative_prompt_2"),
                prompt_embeds=get("negative_prompt_embeds"), pooled_prompt_embeds=get("negative_pooled_prompt_embeds"),
                device=pipe._execution_device, num_images_per_prompt=images_per_prompt,
                max_sequence_length=get("max_sequence_length", 512),
                lora_scale=(get("joint_attention_kwargs") or {}).get("scale"))
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids}


FLUX = FluxFamily(
    name="flux",
    size_multiple=16,
    pipelines=("FluxPipeline",),
    pooled=("pooled_projections",),
    unbatched=("txt_ids", "img_ids"),
    flow_matching=True,
    unpack=_unpack,
)
