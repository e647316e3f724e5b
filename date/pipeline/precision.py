"""The text embedding in fp32 all the way into a half-precision denoiser.

DATE moves c by ρ, a small step per element (SD 1.5: 2e-3; FLUX: 3.5e-4), which fp16/bf16 would round away in part
(bf16 at FLUX's size: most of it). So c stays fp32 and is handed to the denoiser as it is; the layers that read it
(the text projection, the cross-attention key/value projections: plain `nn.Linear`s fed by c) compute in fp32 and
return their own dtype, so the rest of the network runs as the pipeline set it up.
"""
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

HALF = (torch.float16, torch.bfloat16)


def _linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.dtype == module.weight.dtype:
        return F.linear(x, module.weight, module.bias)
    bias = None if module.bias is None else module.bias.float()
    return F.linear(x.float(), module.weight.float(), bias).to(module.weight.dtype)


def _pooled_text_in_fp32(unet: torch.nn.Module) -> bool:
    """SDXL's UNet casts [pooled text embedding, time-id features] to the dtype of its time embedding before
    `add_embedding` (diffusers' `get_aug_embed`), which would round the pooled part of an fp32 step (`--update_pooled`).
    Where the pooled embedding comes in fp32, that cast is made to fp32 instead; `add_embedding`'s first linear then
    computes in fp32 as every text layer here. True where installed (undone by deleting the instance attribute)."""
    if getattr(unet.config, "addition_embed_type", None) != "text_time":
        return False
    own = unet.get_aug_embed

    def get_aug_embed(emb: torch.Tensor, encoder_hidden_states: torch.Tensor, added_cond_kwargs: dict):
        text = added_cond_kwargs.get("text_embeds")
        if text is not None and text.dtype == torch.float32 and emb.dtype in HALF:
            emb = emb.float()  # only its dtype is read there
        return own(emb=emb, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs)

    unet.get_aug_embed = get_aug_embed
    return True


@contextmanager
def fp32_text_inputs(denoiser: torch.nn.Module) -> Iterator[None]:
    """Within it, every plain `nn.Linear` of a half-precision `denoiser` accepts an fp32 input, computing in fp32, and
    SDXL's pooled text embedding reaches its layer in fp32."""
    linears = [m for m in denoiser.modules() if type(m) is torch.nn.Linear and m.weight.dtype in HALF]
    for module in linears:
        module.forward = _linear.__get__(module)
    inner = getattr(denoiser, "_orig_mod", denoiser)  # a torch.compile'd denoiser's own module
    patched = bool(linears) and _pooled_text_in_fp32(inner)
    try:
        yield
    finally:
        for module in linears:
            del module.forward
        if patched:
            del inner.get_aug_embed
