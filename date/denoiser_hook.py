"""DATE inside the pipeline's own denoising loop, through hooks on its denoiser (UNet or transformer).

Every pipeline family calls its denoiser once per sampling step, on x_t (twice over, [uncond; cond], with classifier-free
guidance), with the text condition as `encoder_hidden_states`. The hooks see each call, so without a per-family loop:
- the first call gives c_org, the conditional embedding the pipeline encoded;
- at an update step, the update runs right there, on the call's own x_t and inputs, and the call is then cut to its
  conditional half with the updated c; the unconditional prediction the update computed is put back in front of the
  result, so it is not computed twice (the official code also reuses e_u for the step);
- every other call gets the current c in place of the original.
The pipeline's loop, guidance, scheduler, micro-conditioning and decoding stay its own.
"""
from typing import Optional, Set

import torch

from .denoiser_call import batch_cat, batch_slice, bind


class DateHook:
    """Hooks on `update.objective.denoiser` from `attach` to `detach`."""

    def __init__(self, update, steps: Set[int], num_inference_steps: int) -> None:
        self.update = update
        self.steps = steps
        self.num_inference_steps = num_inference_steps
        self.calls = 0
        self.embeds: Optional[torch.Tensor] = None
        self._inside = False  # the update's own denoiser calls pass through untouched
        self._pending: Optional[torch.Tensor] = None
        self._handles: list = []

    def attach(self) -> "DateHook":
        denoiser = self.update.objective.denoiser
        self._handles = [denoiser.register_forward_pre_hook(self._before, with_kwargs=True),
                         denoiser.register_forward_hook(self._after, with_kwargs=True)]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._pending = [], None

    def _before(self, module, args: tuple, kwargs: dict):
        if self._inside:
            return None
        objective = self.update.objective
        if self.calls == 0 and len(objective.pipe.scheduler.timesteps) != self.num_inference_steps:
            raise ValueError(f"{type(objective.pipe.scheduler).__name__} takes several model evaluations per step; DATE needs one")
        step, self.calls = self.calls, self.calls + 1
        call = bind(module, args, kwargs)
        batch, unbatched = len(objective.prompts), objective.family.unbatched
        guided = len(call[objective.sample_name]) == 2 * batch
        uncond_call = batch_slice(call, slice(0, batch), 2 * batch, unbatched) if guided else None
        cond_call = batch_slice(call, slice(batch, 2 * batch), 2 * batch, unbatched) if guided else call
        if self.embeds is None:
            self.embeds = objective.start(cond_call)
        if step in self.steps:
            self._inside = True
            try:
                self.embeds, self._pending = self.update(self.embeds, cond_call, uncond_call, step)
            finally:
                self._inside = False
            return (), objective.condition.write(cond_call, self.embeds)
        cond_call = objective.condition.write(cond_call, self.embeds)
        return (), batch_cat(uncond_call, cond_call, batch, unbatched) if guided else cond_call

    def _after(self, module, args: tuple, kwargs: dict, output):
        if self._inside or self._pending is None:
            return None
        uncond, self._pending = self._pending, None
        if isinstance(output, tuple):
            return (torch.cat([uncond, output[0]]), *output[1:])
        output.sample = torch.cat([uncond, output.sample])
        return output
