"""Samplers by the paper's names (and PNDM, SD 1.x's own), and x̂0 computed from the scheduler's noise schedule.

x̂0 is computed here rather than read from `scheduler.step`, because stepping a stateful scheduler (Euler, DPM-Solver)
twice per timestep would advance it.
"""
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

SCHEDULERS = {
    "DDIM": DDIMScheduler,  # η = 0, the paper's sampler
    "DDPM": DDPMScheduler,
    "ODE": EulerDiscreteScheduler,
    "DPM": DPMSolverMultistepScheduler,  # DPM-Solver++ (2M)
    "SDE": EulerAncestralDiscreteScheduler,
    "PNDM": PNDMScheduler,  # SD 1.x's own (PLMS, 51 calls for 50 steps): EBCA's official sampler; not for DATE
}
ONE_CALL_PER_STEP = ("DDIM", "DDPM", "ODE", "DPM", "SDE")  # the samplers DATE's update can ride on


def make_scheduler(name: str, config) -> SchedulerMixin:
    """The paper's sampler `name`, configured from a pipeline's scheduler config."""
    scheduler = SCHEDULERS[name].from_config(config)
    if name == "ODE":
        scheduler.register_to_config(use_karras_sigmas=False)
    if name == "PNDM":
        scheduler.register_to_config(skip_prk_steps=True)  # PLMS only, as Stable Diffusion ships it
    return scheduler


def alpha_bar(scheduler: SchedulerMixin, step_index: int, timestep: torch.Tensor) -> torch.Tensor:
    """ᾱ of the current step: from `sigmas` for σ-parameterized schedulers (σ² = (1-ᾱ)/ᾱ), else `alphas_cumprod[t]`."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:
        sigma = sigmas[step_index]
        return 1.0 / (sigma**2 + 1.0)
    return scheduler.alphas_cumprod[int(timestep)]


def is_flow_matching(scheduler: SchedulerMixin) -> bool:
    return type(scheduler).__name__.startswith("FlowMatch")


def predicted_original_sample(
    scheduler: SchedulerMixin, model_output: torch.Tensor, model_input: torch.Tensor, step_index: int, timestep: torch.Tensor
) -> torch.Tensor:
    """x̂0 from the (guided) model output and the model input x_t: variance-preserving (ε, v, x0 prediction), or flow
    matching, where x_t = (1 − σ)·x0 + σ·noise and the model predicts v = noise − x0, so x̂0 = x_t − σ·v."""
    if is_flow_matching(scheduler):
        sigma = scheduler.sigmas[step_index].to(device=model_input.device)
        return (model_input - sigma * model_output).to(model_output.dtype)
    a = alpha_bar(scheduler, step_index, timestep).to(device=model_input.device)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        x0 = (model_input - (1 - a) ** 0.5 * model_output) / a**0.5
    elif prediction_type == "v_prediction":
        x0 = a**0.5 * model_input - (1 - a) ** 0.5 * model_output
    elif prediction_type == "sample":
        x0 = model_output
    else:
        raise ValueError(f"unsupported prediction_type: {prediction_type}")
    return x0.to(model_output.dtype)
