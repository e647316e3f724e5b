"""FLOPs of whatever runs inside the block, counted with torch's own per-operator formulas (torch.utils.flop_counter).

A plain dispatch mode rather than FlopCounterMode: the latter's module tracker hooks every module input and breaks
`torch.autograd.grad` on leaf tensors, which DATE's update uses.
"""
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


class CountFlops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out
