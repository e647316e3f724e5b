"""Memory during updates: frozen weights, optional checkpointing, and the size of the decoder micro-batch.

An update back-propagates through UNet, decoder and scorer. Almost all of its memory is what autograd saves for the
backward pass, and most of that is the decoder's at full image resolution. The decoder and scorer therefore run in
micro-batches (see `objective.py`), and so may the UNet; `UpdatePlan` sizes both from what the first update measures.
"""
import contextlib
import math
from typing import Iterator, Optional, Tuple, Union

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
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor) if active else contextlib.nullcontext()

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self._weights and key not in self._seen:
            self._seen.add(key)
            self.total += storage.nbytes()
        return tensor

    def __enter__(self) -> "SavedBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class LargestStep(contextlib.AbstractContextManager):
    """The most bytes one leaf module of `module` holds at once in forward: its input and its output, which must exist
    together. Fixed sampling's decode of B images needs at least B times this beyond the weights."""

    def __init__(self, module: torch.nn.Module, active: bool = True) -> None:
        self.bytes = 0
        self._leaves = [m for m in module.modules() if not list(m.children())] if active else []
        self._handles: list = []

    def _record(self, module, args: tuple, output) -> None:
        tensors = [a for a in (*args, output) if isinstance(a, torch.Tensor)]
        self.bytes = max(self.bytes, sum(t.numel() * t.element_size() for t in tensors))

    def __enter__(self) -> "LargestStep":
        self._handles = [leaf.register_forward_hook(self._record) for leaf in self._leaves]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()


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


def largest_chunks(batch: int, unet_per_image: int, decoder_per_image: int, decoder_step: int, pipeline_weights: int,
                   extra_weights: int, free: Optional[int]) -> Tuple[int, int]:
    """(images per UNet forward/backward, images per decoder + scorer backward), as many as fit both budgets:
    - DATE's peak within FIXED_PEAK_RATIO × fixed sampling's. Fixed sampling holds at least the pipeline's weights and,
      while decoding, `decoder_step` per image (`LargestStep`); that lower bound keeps the choice on the safe side.
      DATE holds besides the extra weights (scorer, tiny decoder), the UNet's graph of its chunk, and the decoder +
      scorer graph of one micro-batch.
    - within FREE_SHARE of the memory free now.
    The UNet chunk is made as large as possible first (whole batch when it fits), then the micro-batch; at least one.
    """
    room = FIXED_PEAK_RATIO * (pipeline_weights + batch * decoder_step) - pipeline_weights - extra_weights
    if free is not None:
        room = min(room, FREE_SHARE * free)
    cost = max(1.0, BACKWARD_MARGIN * decoder_per_image)
    for chunk in range(batch, 0, -1):
        micro_batch = math.floor((room - chunk * unet_per_image) / cost)
        if micro_batch >= 1:
            return chunk, min(micro_batch, chunk)
    return 1, 1


class UpdatePlan:
    """How an update's gradient is split: `unet_chunk` images per UNet forward + backward, `micro_batch` images per
    decoder + scorer backward inside a chunk.

    `micro_batch` is a positive number (the UNet then takes the whole batch at once) or "auto": the first image of the
    first update runs alone while what autograd saves is measured, then `largest_chunks` sizes the rest; the choice is
    kept for the later updates of the same call (same shapes).
    """

    def __init__(self, micro_batch: MicroBatch) -> None:
        if micro_batch != "auto" and not (isinstance(micro_batch, int) and micro_batch > 0):
            raise ValueError(f"update_batch_size must be a positive integer or 'auto', got {micro_batch!r}")
        self.unet_chunk: Optional[int] = None
        self.micro_batch: Optional[int] = None if micro_batch == "auto" else micro_batch

    @property
    def measuring(self) -> bool:
        return self.micro_batch is None

    def chunk(self, batch: int) -> int:
        return 1 if self.measuring else (self.unet_chunk or batch)

    def decide(self, batch: int, denoiser_per_image: int, decoder_per_image: int, decoder_step: int,
               pipeline_weights: int, extra_weights: int, device: torch.device) -> None:
        self.unet_chunk, self.micro_batch = largest_chunks(
            batch, denoiser_per_image, decoder_per_image, decoder_step, pipeline_weights, extra_weights, free_bytes(device)
        )
