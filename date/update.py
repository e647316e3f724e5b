"""The DATE update rule: a normalized gradient step on the conditional text embedding, the same for every model and h."""
import torch


def normalized(grad: torch.Tensor) -> torch.Tensor:
    """g_b / ‖g_b‖ per sample (norm over all tokens and dims); a zero gradient gives a zero step, not NaN."""
    norms = grad.flatten(1).norm(dim=1).view(-1, *([1] * (grad.dim() - 1)))
    return torch.where(norms > 0, grad / norms.clamp_min(torch.finfo(grad.dtype).tiny), torch.zeros_like(grad))


def normalized_step(embeds: torch.Tensor, embeds_org: torch.Tensor, grad: torch.Tensor, lr: float,
                    init_org: bool = False) -> torch.Tensor:
    """c ← base − ρ·g/‖g‖ per sample, base = c (or c_org with `init_org`): every sample moves by exactly ρ, whatever
    the scale of its gradient. `grad` must be ∂Σ_b loss_b/∂c of a loss where samples do not interact."""
    base = embeds_org if init_org else embeds
    return (base.float() - lr * normalized(grad.float())).detach()
