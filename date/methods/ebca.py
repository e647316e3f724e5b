"""EBCA (Park et al., NeurIPS 2023, "Energy-Based Cross Attention for Bayesian Context Update") on a stock UNet.

In every cross-attention layer, after the layer's usual output is computed with the current context C, C takes one
closed-form gradient step of the layer's energy (official `bayesian_context_update`):
    A = softmax over pixels of S^T, S = Q·K^T / sqrt(d) per head;  U = γ_attn·A·Q − γ_norm·softmax_l(‖k_l‖²)·k_l
    C ← C + U·W_k                       (heads concatenated; W_k the layer's key projection)
The updated C flows into the next cross-attention layer in execution order (down, mid, up) and is reset to the
prompt embeddings at every UNet call; the unconditional half of the batch is updated too, as in the official code.
Installed as diffusers attention processors around the ones in place, and removed afterwards.
"""
import contextlib
from typing import Iterator, Optional

import torch

DEFAULT_GAMMA_ATTN = 0.01  # the official README's text-to-image setting
DEFAULT_GAMMA_NORM = 0.02


def context_update(attn, hidden_states: torch.Tensor, context: torch.Tensor, gamma_attn: float,
                   gamma_norm: float) -> torch.Tensor:
    """ΔC of one cross-attention layer `attn` (a diffusers `Attention`) for its input `hidden_states`."""
    query, key = attn.to_q(hidden_states), attn.to_k(context)
    batch, tokens, inner = key.shape
    head_dim = inner // attn.heads
    q = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    k = key.view(batch, tokens, attn.heads, head_dim).transpose(1, 2)
    attention_to_pixels = (attn.scale * k @ q.transpose(-1, -2)).softmax(dim=-1)  # per token, over pixels
    attended = (attention_to_pixels @ q).transpose(1, 2).reshape(batch, tokens, inner)
    prior = key.pow(2).sum(dim=-1).softmax(dim=-1)[..., None] * key
    return (gamma_attn * attended - gamma_norm * prior) @ attn.to_k.weight


class ContextCascade:
    """The context of the UNet call in progress, as updated by the cross-attention layers so far."""

    def __init__(self, gamma_attn: float, gamma_norm: float) -> None:
        self.gamma_attn, self.gamma_norm = gamma_attn, gamma_norm
        self.context: Optional[torch.Tensor] = None

    def reset(self, *_) -> None:
        self.context = None


class EnergyCrossAttention:
    """An attention processor: the wrapped one computes the output with the cascade's context, then C is updated."""

    def __init__(self, cascade: ContextCascade, inner) -> None:
        self.cascade, self.inner = cascade, inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        context = encoder_hidden_states if self.cascade.context is None else self.cascade.context
        output = self.inner(attn, hidden_states, context, attention_mask, temb, *args, **kwargs)
        self.cascade.context = context + context_update(attn, hidden_states, context, self.cascade.gamma_attn,
                                                         self.cascade.gamma_norm)
        return output


@contextlib.contextmanager
def energy_cross_attention(unet, gamma_attn: float = DEFAULT_GAMMA_ATTN,
                           gamma_norm: float = DEFAULT_GAMMA_NORM) -> Iterator[ContextCascade]:
    """EBCA on every cross-attention layer (`attn2`) of `unet` inside the block; the UNet is as it was after."""
    cascade = ContextCascade(gamma_attn, gamma_norm)
    original = unet.attn_processors
    unet.set_attn_processor({name: EnergyCrossAttention(cascade, processor) if name.endswith("attn2.processor")
                             else processor for name, processor in original.items()})
    handle = unet.register_forward_pre_hook(cascade.reset)
    try:
        yield cascade
    finally:
        handle.remove()
        unet.set_attn_processor(original)


def generate(pipe, prompts, gamma_attn: float = DEFAULT_GAMMA_ATTN, gamma_norm: float = DEFAULT_GAMMA_NORM, **kwargs):
    """Sample with EBCA: `date.generate` without a scorer (the stock pipeline), cross-attention updated as above."""
    from date.sampling import generate as sample

    with energy_cross_attention(pipe.unet, gamma_attn, gamma_norm):
        return sample(pipe, prompts, None, **kwargs)
