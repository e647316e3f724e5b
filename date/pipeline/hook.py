"""DATE inside the pipeline's own denoising loop, through hooks on its denoiser (UNet or transformer).

Every pipeline family opens each sampling step with one call of its denoiser on x_t (twice over, [uncond; cond], with
classifier-free guidance), the text condition as `encoder_hidden_states`. Some add calls within the step (FLUX's true
CFG: a negative call; SD3's skip-layer guidance: a call with layers skipped). The hooks see every call, so without a
per-family loop:
- a call whose timestep differs from the previous call's opens the next sampling step (its index counts these); the
  other calls of the step pass with their own inputs, untouched;
- the first call gives c_org, the conditional embedding the pipeline encoded; every later step's first call must
  carry it again (a `callback_on_step_end` that edits `prompt_embeds` is refused: DATE owns c during sampling);
- at an update step, the call is handed to the DATE step (`date.step.date_step`), which runs right there on the call's
  own x_t and inputs; the call is then cut to its conditional half with the updated c, and the unconditional
  prediction the step computed is put back in front of the result, so it is not computed twice (the official code
  also reuses e_u for the step);
- every other step's first call gets the current c in place of the original.
The hook only substitutes inputs; the pipeline's loop, guidance, scheduler, micro-conditioning and decoding stay its own.
"""
from typing import Callable, Optional, Set, Tuple

import torch

from date.pipeline.call import Call, GuidedBatch, bind

# (c, conditional call, unconditional call or None, step index) -> (updated c, ε_u at x_t or None)
Step = Callable[[torch.Tensor, Call, Optional[Call], int], Tuple[torch.Tensor, Optional[torch.Tensor]]]


class DateHook:
    """Hooks on `denoiser` from `attach` to `detach`. `condition` reads c_org from a call (`start`) and writes c into
    one (`write`); `step` runs at the first call of each sampling step in `steps` (the indices of the steps to update)."""

    def __init__(self, denoiser: torch.nn.Module, layout: GuidedBatch, condition, step: Step, steps: Set[int],
                 scheduler, num_inference_steps: int) -> None:
        self.denoiser, self.layout, self.condition, self.step = denoiser, layout, condition, step
        self.steps, self.scheduler, self.num_inference_steps = steps, scheduler, num_inference_steps
        self.step_index = -1  # the sampling step of the latest call
        self._timestep: Optional[float] = None  # the latest call's timestep
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

    def _opens_step(self, call: dict) -> bool:
        """Whether this call opens a new sampling step: its timestep differs from the previous call's."""
        timestep = call["timestep"]
        value = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        opens, self._timestep = value != self._timestep, value
        return opens

    @torch.compiler.disable
    def _before(self, module, args: tuple, kwargs: dict):
        if self._inside:
            return None
        if self.step_index < 0 and len(self.scheduler.timesteps) != self.num_inference_steps:
            raise ValueError(f"{type(self.scheduler).__name__} takes several model evaluations per step; DATE needs one")
        call = bind(module, args, kwargs)
        if not self._opens_step(call):
            return None  # another call of this step (true CFG's negative, skip-layer guidance): its own inputs
        self.step_index += 1
        uncond_call, cond_call = self.layout.split(call)
        if self.embeds is None:
            self.embeds = self.condition.start(cond_call)
        elif not self.condition.carries_original(cond_call):
            raise ValueError(f"the text embedding changed between sampling steps (step {self.step_index}), e.g. by a "
                             "callback_on_step_end that edits prompt_embeds; DATE updates it itself: pass the edited "
                             "embedding as prompt_embeds instead")
        if self.step_index in self.steps:
            self._inside = True
            try:
                self.embeds, self._pending = self.step(self.embeds, cond_call, uncond_call, self.step_index)
            finally:
                self._inside = False
            return (), self.condition.write(cond_call, self.embeds)
        return (), self.layout.join(uncond_call, self.condition.write(cond_call, self.embeds))

    @torch.compiler.disable
    def _after(self, module, args: tuple, kwargs: dict, output):
        if self._inside or self._pending is None:
            return None
        uncond, self._pending = self._pending, None
        if isinstance(output, tuple):
            return (torch.cat([uncond, output[0]]), *output[1:])
        output.sample = torch.cat([uncond, output.sample])
        return output
