"""DATE inside the pipeline's own denoising loop, through hooks on its denoiser (UNet or transformer).

Every pipeline family calls its denoiser once per sampling step, on x_t (twice over, [uncond; cond], with classifier-free
guidance), with the text condition as `encoder_hidden_states`. The hooks see each call, so without a per-family loop:
- the first call gives c_org, the conditional embedding the pipeline encoded;
- at an update step, the call is handed to the DATE step (`date.step.date_step`), which runs right there on the call's
  own x_t and inputs; the call is then cut to its conditional half with the updated c, and the unconditional
  prediction the step computed is put back in front of the result, so it is not computed twice (the official code
  also reuses e_u for the step);
- every other call gets the current c in place of the original.
The hook only substitutes inputs; the pipeline's loop, guidance, scheduler, micro-conditioning and decoding stay its own.
"""
from typing import Callable, Optional, Set, Tuple

import torch

from date.pipeline.call import Call, GuidedBatch, bind

# (c, conditional call, unconditional call or None, step index) -> (updated c, ε_u at x_t or None)
Step = Callable[[torch.Tensor, Call, Optional[Call], int], Tuple[torch.Tensor, Optional[torch.Tensor]]]


class DateHook:
    """Hooks on `denoiser` from `attach` to `detach`. `condition` reads c_org from a call (`start`) and writes c into
    one (`write`); `step` runs at the calls of `steps`, the indices of the sampling steps to update."""

    def __init__(self, denoiser: torch.nn.Module, layout: GuidedBatch, condition, step: Step, steps: Set[int],
                 scheduler, num_inference_steps: int) -> None:
        self.denoiser, self.layout, self.condition, self.step = denoiser, layout, condition, step
        self.steps, self.scheduler, self.num_inference_steps = steps, scheduler, num_inference_steps
        self.calls = 0
        self.embeds: Optional[torch.Tensor] = None  # the current c, flat
        self._inside = False  # the step's own denoiser calls pass through untouched
        self._pending: Optional[torch.Tensor] = None  # ε_u to put in front of the current call's output
        self._handles: list = []

    def attach(self) -> "DateHook":
        self._handles = [self.denoiser.register_forward_pre_hook(self._before, with_kwargs=True),
                         self.denoiser.register_forward_hook(self._after, with_kwargs=True)]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._pending = [], None

    def _before(self, module, args: tuple, kwargs: dict):
        if self._inside:
            return None
        if self.calls == 0 and len(self.scheduler.timesteps) != self.num_inference_steps:
            raise ValueError(f"{type(self.scheduler).__name__} takes several model evaluations per step; DATE needs one")
        index, self.calls = self.calls, self.calls + 1
        uncond_call, cond_call = self.layout.split(bind(module, args, kwargs))
        if self.embeds is None:
            self.embeds = self.condition.start(cond_call)
        if index in self.steps:
            self._inside = True
            try:
                self.embeds, self._pending = self.step(self.embeds, cond_call, uncond_call, index)
            finally:
                self._inside = False
            return (), self.condition.write(cond_call, self.embeds)
        return (), self.layout.join(uncond_call, self.condition.write(cond_call, self.embeds))

    def _after(self, module, args: tuple, kwargs: dict, output):
        if self._inside or self._pending is None:
            return None
        uncond, self._pending = self._pending, None
        if isinstance(output, tuple):
            return (torch.cat([uncond, output[0]]), *output[1:])
        output.sample = torch.cat([uncond, output.sample])
        return output
