"""One DATE step: what happens inside the denoiser call of an update step, read top to bottom.

The pipeline is about to evaluate its denoiser at x_t of step i. Before it does, DATE
1. points at x_t: the call's own inputs, and ε_u = ε(x_t, t, c_u) computed once (no gradient), shared by every
   gradient step below and by the sampling step itself;
2. takes `num_upt_prompt` normalized steps: g = ∂Σ_b(−h_b + prior_b)/∂c through x̂0(c) and the decoded image
   (`Objective.gradient`; a non-finite h or g stops the run, a zero g is logged), then c ← c − ρ·g/‖g‖ per sample (`normalized_step`);
3. with a trajectory, records x̂0 and h before and after, at the same x_t.
The call then runs with the updated c, which stays in use until the next update step (`date.pipeline.hook`).
"""
import logging
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from date.io.errors import StoppedRun
from date.objective import Objective
from date.pipeline.call import Call
from date.update import normalized_step

log = logging.getLogger("date")


@dataclass(frozen=True)
class StepSettings:
    """How far each update moves c: `num_upt_prompt` steps of size ρ = `lr_upt_prompt`, each from the current c
    (or from c_org with `init_org`)."""

    num_upt_prompt: int = 1
    lr_upt_prompt: float = 0.5
    init_org: bool = False


@dataclass
class TrajectoryStep:
    """What one update changed: x̂0 decoded (B×3×H×W on the CPU, as h sees it: about [0, 1], unclamped) and h, at the
    same x_t, before and after."""

    step_index: int
    before: torch.Tensor
    after: torch.Tensor
    h_before: torch.Tensor
    h_after: torch.Tensor


def check_gradient(grad: torch.Tensor, h: torch.Tensor, step_index: int) -> None:
    """A NaN or inf in h or g would turn into a zero (or NaN) step and a baseline image under DATE's name: stop. A zero
    gradient is legitimate (h does not depend on c there) and gives a zero step, said in the log."""
    bad = ~(torch.isfinite(grad.flatten(1)).all(dim=1) & torch.isfinite(h))
    if bad.any():
        images = ", ".join(str(i) for i in bad.nonzero().flatten().tolist())
        raise StoppedRun(f"error: DATE stopped at sampling step {step_index}: h or its gradient is not finite for image "
                         f"{images} of the batch; in fp16 this is usually the VAE overflowing while decoding x̂0: use "
                         "--dtype fp32 (or torch_dtype=torch.float32), or an fp16-safe VAE", exit_code=1)
    zero = grad.flatten(1).abs().amax(dim=1) == 0
    if zero.any():
        images = ", ".join(str(i) for i in zero.nonzero().flatten().tolist())
        log.warning("DATE step %d: zero gradient for image %s of the batch (h does not depend on c there): c not moved",
                    step_index, images)


def date_step(objective: Objective, embeds: torch.Tensor, call: Call, uncond_call: Optional[Call], step_index: int,
              settings: StepSettings, trajectory: Optional[List[TrajectoryStep]] = None
              ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The updated c (flat, one row per sample) and ε_u at x_t, for the sampling step to reuse (None unless the call
    holds an unconditional half)."""
    # 1. The point of this update: x_t and t of the call, ε_u once.
    point = objective.point(call, uncond_call, step_index)
    before = None
    for k in range(settings.num_upt_prompt):
        # 2a. g = ∂(−h + prior)/∂c via x̂0; the first pass also keeps its decoded x̂0 when a trajectory is asked for.
        keep = trajectory is not None and k == 0
        grad, h, images = objective.gradient(embeds, point, keep_images=keep)
        check_gradient(grad, h, step_index)
        if keep:
            before = (images, h.detach().cpu())
        # 2b. c ← c − ρ·g/‖g‖ (from c_org with init_org), in fp32; a zero gradient gives a zero step.
        embeds = normalized_step(embeds, objective.cond_org, grad, settings.lr_upt_prompt, settings.init_org)
    # 3. The trajectory: "before" is what step 2 decoded anyway; "after" costs one more forward, decode and h.
    if trajectory is not None and before is not None:
        after, h_after = objective.evaluate(embeds, point)
        trajectory.append(TrajectoryStep(step_index, before[0], after, before[1], h_after.cpu()))
    return embeds, point.noise_uncond if uncond_call is not None else None
