"""Memory during updates: frozen weights, optional checkpointing, and the size of the decoder micro-batch.

An update back-propagates through UNet, decoder and scorer. Almost all of its memory is what autograd saves for the
backward pass, and most of that is the decoder's at full image resolution. The decoder and scorer therefore run in
micro-batches (see `objective.py`); `MicroBatchPlan` picks their size from what is measured on the first update.
"""
import contextlib
import math
from typing import Iterator, Optional, Union

import torch

# DATE's peak may be this many times the peak of fixed-embedding sampling (the budget; the paper's code: ~2.6×).
FIXED_PEAK_RATIO = 2.5
# Backward needs some memory beyond what forward saved (gradients in flight, workspace): counted as this share.
BACKWARD_MARGIN = 1.25
# Never plan to fill more than this share of the memory that is free.
FREE_SHARE = 0.8

MicroBatch = Union[int, str]  # a positive size, or "auto"


@contextlib.contextmanager
def frozen(*modules: Optional[torch.nn.Module]) -> Iterator[None]:
    """No weight gradients: autograd then saves nothing for them. The caller's `requires_grad` flags come back after."""
    params = {id(p): p for m in modules if m is not None for p in m.parameters()}.values()
    flags = [(p, p.requires_grad) for p in params]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def checkpointing(enabled: bool, *modules: Optional[torch.nn.Module]) -> Iterator[None]:
    """diffusers' gradient checkpointing on `modules` (it acts only under gradient, so only in updates), restored after."""
    modules = [m for m in modules if m is not None and getattr(m, "_supports_gradient_checkpointing", False)]
    before = [m.is_gradient_checkpointing for m in modules]
    try:
        for m in modules:
            if enabled and not m.is_gradient_checkpointing:
                m.enable_gradient_checkpointing()
        yield
    finally:
        for m, was in zip(modules, before):
            if not was and m.is_gradient_checkpointing:
                m.disable_gradient_checkpointing()


class SavedBytes(contextlib.AbstractContextManager):
    """Counts the bytes autograd saves for backward inside the block (distinct storages, model weights excluded).

    Inactive (`active=False`) it does nothing and costs nothing: only the first update of a call is measured.
    """

    def __init__(self, *modules: Optional[torch.nn.Module], active: bool = True) -> None:
        self._weights = {p.untyped_storage().data_ptr() for m in modules if m is not None for p in m.parameters()} if active else set()
        self._seen: set = set()
        self.total = 0
        self.largest = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor) if active else contextlib.nullcontext()

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self._weights and key not in self._seen:
            self._seen.add(key)
            self.total += storage.nbytes()
            self.largest = max(self.largest, storage.nbytes())
        return tensor

    def __enter__(self) -> "SavedBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def weight_bytes(*modules: Optional[torch.nn.Module]) -> int:
    tensors = {t.untyped_storage().data_ptr(): t for m in modules if m is not None
               for t in [*m.parameters(), *m.buffers()]}
    return sum(t.untyped_storage().nbytes() for t in tensors.values())


def free_bytes(device: torch.device) -> Optional[int]:
    """Memory still available to this process: CUDA's free memory plus what the caching allocator holds unused;
    on a CPU, the kernel's MemAvailable. None where it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def largest_micro_batch(batch: int, per_image: int, unet_graph: int, decoder_activation: int, pipeline_weights: int,
                        extra_weights: int, free: Optional[int]) -> int:
    """The most images whose decoder + scorer backward fits both budgets:
    - DATE's peak within FIXED_PEAK_RATIO × fixed sampling's. Fixed sampling holds at least the pipeline's weights and,
      while decoding the batch, one decoder activation per image; that lower bound keeps the choice on the safe side.
      DATE holds besides the extra weights (scorer, tiny decoder) and the UNet's graph for the whole batch.
    - within the memory that is free now (the UNet's graph is already allocated).
    At least one image, at most the batch.
    """
    fixed_floor = pipeline_weights + batch * decoder_activation
    room = FIXED_PEAK_RATIO * fixed_floor - (pipeline_weights + extra_weights + unet_graph)
    if free is not None:
        room = min(room, FREE_SHARE * free)
    cost = max(1.0, BACKWARD_MARGIN * per_image)
    return int(min(batch, max(1, math.floor(room / cost))))


class MicroBatchPlan:
    """How many images go through decoder + scorer backward at a time: a fixed number, or 'auto'.

    'auto' runs the first image alone while measuring what autograd saves, then sizes the rest with
    `largest_micro_batch`; the choice is kept for later updates of the same call (same shapes).
    """

    def __init__(self, setting: MicroBatch) -> None:
        if setting != "auto" and not (isinstance(setting, int) and setting > 0):
            raise ValueError(f"update_batch_size must be a positive integer or 'auto', got {setting!r}")
        self.setting = setting
        self.size: Optional[int] = None if setting == "auto" else setting
        self.unet_graph = 0

    @property
    def measuring(self) -> bool:
        return self.size is None

    def decide(self, batch: int, per_image: int, decoder_activation: int, pipe, extra_weights: int, device) -> None:
        self.size = largest_micro_batch(
            batch, per_image, self.unet_graph, decoder_activation, weight_bytes(pipe.unet, pipe.vae, pipe.text_encoder),
            extra_weights, free_bytes(torch.device(device)),
        )
