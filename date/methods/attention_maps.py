"""Cross-attention maps of the concept tokens: what Attend-and-Excite and CONFORM measure their losses on.

- `concept_token`: a concept word's position in the CLIP tokenization of its caption;
- `CrossAttentionMaps`: a conditional UNet call that also returns its cross-attention probabilities, averaged over
  layers and heads at one resolution (the official `AttentionStore` + `aggregate_attention`);
- `smooth`: the official Gaussian smoothing of a map (`utils/gaussian_smoothing.py`), kernel and padding as there.
"""
import contextlib
import math
from typing import Iterator, List, Sequence

import torch
import torch.nn.functional as F

from date.io.errors import UserInputError


def concept_token(tokenizer, caption: str, word: str, occurrence: int = 0) -> int:
    """The index of `word` in the tokenization of `caption` (0 is the start token), at its `occurrence`-th appearance
    (0: the first; "a red circle and a blue circle" names circle twice, one concept each).

    A word that CLIP's BPE splits into several tokens ("giraffe" may be one, "hairdryer" two) is represented by its
    LAST sub-token: only that one ends the word (`</w>`), and under the text encoder's causal mask it is the one
    position whose hidden state has read the whole word, so its attention map is the word's. The official code takes
    one index per object, picked by hand from the printed tokenization; this is the rule for picking it automatically.
    """
    ids = tokenizer(caption).input_ids
    pieces = tokenizer(word, add_special_tokens=False).input_ids
    limit = tokenizer.model_max_length - 1  # the last position is the end token, even when the caption is cut
    found = 0
    for start in range(1, len(ids) - len(pieces) + 1):
        if ids[start:start + len(pieces)] == pieces:
            index = start + len(pieces) - 1
            if index >= limit:
                break
            if found == occurrence:
                return index
            found += 1
    nth = "" if occurrence == 0 else f" for its appearance {occurrence + 1}"
    raise UserInputError(f"concept {word!r} has no token{nth} in the first {limit - 1} tokens of its caption {caption!r}")


class _Recorder:
    """An attention processor around a cross-attention layer's own: while its maps are wanted, it computes the
    attention probabilities explicitly (as the official processors do) and keeps them."""

    def __init__(self, maps: "CrossAttentionMaps", inner) -> None:
        self.maps, self.inner = maps, inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        pixels = hidden_states.shape[1]
        if not self.maps.recording or pixels > self.maps.max_resolution ** 2:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        batch = hidden_states.shape[0]
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (batch·heads, pixels, tokens)
        self.maps.recorded.append(probs.view(batch, -1, pixels, probs.shape[-1]))
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


class CrossAttentionMaps:
    """`maps(latents, t, cond)`: the UNet's conditional call at (latents, t) and, per image, its cross-attention
    probabilities (res, res, tokens) averaged over every cross-attention layer (down, mid, up) and head at the largest
    resolution res ≤ `max_resolution` that the UNet has at this latent size.

    The official code uses 16×16, SD's middle resolution at 512 pixels; a smaller model has it only at a larger image
    (the toy 32-pixel model's largest cross-attention maps are 8×8), so the largest one up to 16 stands in for it.
    The call goes to `unet.forward`, below the module's hooks: hooks that watch the pipeline's UNet calls (DATE's)
    do not see these extra ones. Processors are installed by `installed()` and removed after.
    """

    def __init__(self, unet, max_resolution: int = 16) -> None:
        self.unet, self.max_resolution = unet, max_resolution
        self.recording = False
        self.recorded: List[torch.Tensor] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator["CrossAttentionMaps"]:
        original = self.unet.attn_processors
        self.unet.set_attn_processor({name: _Recorder(self, processor) if name.endswith("attn2.processor")
                                      else processor for name, processor in original.items()})
        try:
            yield self
        finally:
            self.unet.set_attn_processor(original)

    def __call__(self, latents: torch.Tensor, t, cond: torch.Tensor) -> torch.Tensor:
        self.recording, self.recorded = True, []
        try:
            self.unet.forward(latents, t, encoder_hidden_states=cond)
        finally:
            self.recording = False
        recorded, self.recorded = self.recorded, []
        sides = {math.isqrt(item.shape[2]) for item in recorded}
        if not sides:
            raise ValueError(f"the UNet has no cross-attention maps of {self.max_resolution}×{self.max_resolution} "
                             "pixels or fewer at this image size")
        side = max(sides)
        layers = [item for item in recorded if item.shape[2] == side * side]
        stacked = torch.cat(layers, dim=1)  # (batch, layers·heads, pixels, tokens)
        return (stacked.sum(1) / stacked.shape[1]).view(len(latents), side, side, -1)


def token_maps(maps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(batch, res, res, T) maps and (batch, n) token indices -> the n tokens' maps (batch, n, res, res)."""
    return torch.take_along_dim(maps.permute(0, 3, 1, 2), tokens[:, :, None, None], dim=1)


def text_softmax(maps: torch.Tensor) -> torch.Tensor:
    """The official normalization over the text tokens: start and last token dropped, ×100, softmax. Token index k
    of the caption is then index k − 1."""
    return torch.softmax(100 * maps[..., 1:-1], dim=-1)


def smooth(maps: torch.Tensor, kernel_size: int = 3, sigma: float = 0.5) -> torch.Tensor:
    """Each (res, res) map of (..., res, res) smoothed as in the official code: reflect-padded, convolved with its
    normalized kernel ∝ exp(−((x − μ)/(2σ))²) per axis (note 2σ, not √2·σ: the official formula, kept)."""
    grid = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
    line = torch.exp(-((grid / (2 * sigma)) ** 2)) / (sigma * math.sqrt(2 * math.pi))
    kernel = line[:, None] * line[None, :]
    kernel = (kernel / kernel.sum()).to(maps)
    side = maps.shape[-1]
    flat = maps.reshape(-1, 1, side, side)
    padded = F.pad(flat, (kernel_size // 2,) * 4, mode="reflect")
    return F.conv2d(padded, kernel[None, None]).reshape(maps.shape)


def tokens_of(tokenizer, prompts: Sequence[str], words: Sequence[Sequence[str]], device) -> torch.Tensor:
    """(batch, n) token indices of each prompt's concept words; a word named twice is its two appearances."""
    return torch.tensor([[concept_token(tokenizer, prompt, word, row[:k].count(word)) for k, word in enumerate(row)]
                         for prompt, row in zip(prompts, words)], device=device)
