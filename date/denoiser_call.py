"""A denoiser call as one dict of named inputs, so that DATE can re-issue the pipeline's own call with other embeddings,
for part of the batch, whatever the pipeline family."""
import inspect
from typing import Any, Dict, Sequence, Tuple

import torch

Call = Dict[str, Any]


def bind(module: torch.nn.Module, args: tuple, kwargs: dict) -> Call:
    """The call's inputs by parameter name (positional ones included)."""
    return dict(inspect.signature(module.forward).bind(*args, **kwargs).arguments)


def sample_name(module: torch.nn.Module) -> str:
    """The noisy-latent input: `sample` for UNets, `hidden_states` for transformers."""
    return next(iter(inspect.signature(module.forward).parameters))


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
