"""The DATE update rule: normalized gradient steps on the conditional text embedding, the same for every model and h."""
from typing import Callable

import torch


def normalized(grad: torch.Tensor) -> torch.Tensor:
    """g_b / ‖g_b‖ per sample (norm over all tokens and dims); a zero gradient gives a zero step, not NaN."""
    norms = grad.flatten(1).norm(dim=1).view(-1, *([1] * (grad.dim() - 1)))
    return torch.where(norms > 0, grad / norms.clamp_min(torch.finfo(grad.dtype).tiny), torch.zeros_like(grad))


def update_embeddings(
    embeds: torch.Tensor,
    embeds_org: torch.Tensor,
    gradient: Callable[[torch.Tensor], torch.Tensor],
    num_steps: int,
    lr: float,
    init_org: bool = False,
) -> torch.Tensor:
    """Take `num_steps` steps c ← base − ρ·g/‖g‖ with g = gradient(c) = ∂Σ_b loss_b/∂c, base = c (or c_org with init_org).

    Samples must not interact in the loss, so that each g_b only depends on sample b.
    """
    for _ in range(num_steps):
        grad = gradient(embeds.detach())
        base = embeds_org if init_org else embeds
        embeds = (base - lr * normalized(grad)).detach()
    return embeds
