"""The DATE update rule: normalized gradient steps on the conditional text embedding."""
from typing import Callable

import torch


def normalized(grad: torch.Tensor) -> torch.Tensor:
    """g_b / ‖g_b‖ per sample (norm over all tokens and dims); a zero gradient gives a zero step, not NaN."""
    norms = grad.flatten(1).norm(dim=1).view(-1, *([1] * (grad.dim() - 1)))
    return torch.where(norms > 0, grad / norms.clamp_min(torch.finfo(grad.dtype).tiny), torch.zeros_like(grad))


def update_embeddings(
    embeds: torch.Tensor,
    embeds_org: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    num_steps: int,
    lr: float,
    init_org: bool = False,
) -> torch.Tensor:
    """Take `num_steps` steps c ← base − ρ·g/‖g‖ with g = ∂Σloss/∂c, base = c (or c_org with init_org).

    `loss_fn(c)` returns one loss per sample; samples must not interact so that each g_b only depends on sample b.
    """
    for _ in range(num_steps):
        with torch.enable_grad():
            current = embeds.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(loss_fn(current).sum(), current)
        base = embeds_org if init_org else embeds
        embeds = (base - lr * normalized(grad)).detach()
    return embeds
