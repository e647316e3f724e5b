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


@contextmanager
def fp32_text_inputs(denoiser: torch.nn.Module) -> Iterator[None]:
    """Within it, every plain `nn.Linear` of a half-precision `denoiser` accepts an fp32 input, computing in fp32."""
    linears = [m for m in denoiser.modules() if type(m) is torch.nn.Linear and m.weight.dtype in HALF]
    for module in linears:
        module.forward = _linear.__get__(module)
    try:
        yield
    finally:
        for module in linears:
            del module.forward
