"""A denoiser call as one dict of named inputs, so that DATE can re-issue the pipeline's own call with other embeddings,
for part of the batch, whatever the pipeline family."""
import inspect
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

Call = Dict[str, Any]


def _forward(module: torch.nn.Module):
    """The model's own forward, also behind `torch.compile(module)`, whose wrapper takes `*args, **kwargs`."""
    return getattr(module, "_orig_mod", module).forward


def bind(module: torch.nn.Module, args: tuple, kwargs: dict) -> Call:
    """The call's inputs by parameter name (positional ones included)."""
    return dict(inspect.signature(_forward(module)).bind(*args, **kwargs).arguments)


def sample_name(module: torch.nn.Module) -> str:
    """The noisy-latent input: `sample` for UNets, `hidden_states` for transformers."""
    return next(iter(inspect.signature(_forward(module)).parameters))


def batch_slice(call: Call, part: slice, batch: int, unbatched: Sequence[str] = ()) -> Call:
    """The inputs of samples `part`: every tensor (also inside dicts) whose first dimension is the call's batch."""

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
            return value[part]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        return value

    return {k: v if k in unbatched else cut(v) for k, v in call.items()}


def batch_cat(first: Call, second: Call, batch: int, unbatched: Sequence[str] = ()) -> Call:
    """The inverse of two `batch_slice`s: one call for both halves."""

    def join(a: Any, b: Any) -> Any:
        if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch:
            return torch.cat([a, b])
        if isinstance(a, dict):
            return {k: join(a[k], b[k]) for k in a}
        return a

    return {k: first[k] if k in unbatched else join(first[k], second[k]) for k in first}


def get(call: Call, path: Tuple[str, ...]) -> Any:
    for key in path:
        call = call[key]
    return call


def replaced(call: Call, path: Tuple[str, ...], value: Any) -> Call:
    """A copy of the call with the input at `path` (nested dicts allowed) replaced."""
    head, *rest = path
    return {**call, head: replaced(call[head], tuple(rest), value) if rest else value}


@dataclass(frozen=True)
class GuidedBatch:
    """How a pipeline batches its denoiser calls for `batch` prompts: with classifier-free guidance the call holds
    [unconditional; conditional] (twice the batch), without it the conditional half only; `unbatched` inputs (position
    ids) are shared by every sample."""

    sample_name: str
    batch: int
    unbatched: Tuple[str, ...] = ()

    def split(self, call: Call) -> Tuple[Optional[Call], Call]:
        """(unconditional call or None without guidance, conditional call)."""
        if len(call[self.sample_name]) != 2 * self.batch:
            return None, call
        return (batch_slice(call, slice(0, self.batch), 2 * self.batch, self.unbatched),
                batch_slice(call, slice(self.batch, 2 * self.batch), 2 * self.batch, self.unbatched))

    def join(self, uncond: Optional[Call], cond: Call) -> Call:
        return cond if uncond is None else batch_cat(uncond, cond, self.batch, self.unbatched)
