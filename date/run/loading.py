"""The models a run names: `--ver_sd` shortcuts, the bundled toy models, and loading a pipeline or tiny decoder."""
import os
import sys
from typing import Mapping, NamedTuple, Optional

import torch

from date.io.loading import ASSETS, loading, model_path
from date.pipeline.families import family_of
from date.pipeline.schedulers import make_scheduler

MODELS = {  # --ver_sd: the official checkpoints of every supported family
    "1.4": "CompVis/stable-diffusion-v1-4",
    "1.5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "xl": "stabilityai/stable-diffusion-xl-base-1.0",
    "3-medium": "stabilityai/stable-diffusion-3-medium-diffusers",
    "3.5-medium": "stabilityai/stable-diffusion-3.5-medium",
    "3.5-large": "stabilityai/stable-diffusion-3.5-large",
    "flux-dev": "black-forest-labs/FLUX.1-dev",
    "flux-schnell": "black-forest-labs/FLUX.1-schnell",
    "pixart-alpha": "PixArt-alpha/PixArt-XL-2-1024-MS",
    "pixart-sigma": "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOY_MODELS = {"model": os.path.join(ASSETS, "toy", "sd"), "clip": os.path.join(ASSETS, "toy", "clip"),
              "x0_decoder": os.path.join(ASSETS, "toy", "taesd")}


def resolve_model(name: Optional[str], default: Optional[str], toy_key: str) -> Optional[str]:
    """A hub id or local dir; 'toy' means the bundled toy model."""
    return TOY_MODELS[toy_key] if name == "toy" else (name or default)


class ModelInfo(NamedTuple):
    """What a model's config files tell before any weight loads: enough for the defaults and the output folder."""

    class_name: str  # the pipeline class its model_index.json names
    pipeline: type  # that class
    scheduler: str  # its scheduler's class name
    denoiser_config: Mapping  # the UNet's or transformer's config.json


def describe_model(name: str) -> ModelInfo:
    """Read a model folder's or hub repo's config files (no weights), checking the pipeline class against the
    families."""
    import diffusers

    path = model_path(name)
    with loading("pipeline", name):
        index = diffusers.DiffusionPipeline.load_config(path)
        class_name = index["_class_name"]
        family_of(class_name)
        denoiser = "unet" if "unet" in index else "transformer"
        denoiser_config = getattr(diffusers, index[denoiser][1]).load_config(path, subfolder=denoiser)
    return ModelInfo(class_name, getattr(diffusers, class_name), index["scheduler"][1], denoiser_config)


def load_pipeline(name: str, class_name: str, scheduler: Optional[str], dtype: torch.dtype, device: torch.device):
    """The stock pipeline, with the paper's sampler `scheduler` (None: the family's default, else the model's own)."""
    import diffusers

    family = family_of(class_name)
    extra = {"safety_checker": None, "requires_safety_checker": False} if family.name == "sd" else {}
    with loading(f"{class_name}", name):
        pipe = getattr(diffusers, class_name).from_pretrained(model_path(name), dtype=dtype, **extra)
    scheduler = scheduler or family.default_scheduler
    if scheduler:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_x0_decoder(name: str, dtype: torch.dtype, device: torch.device):
    """Fast mode's tiny decoder of x̂0 inside updates (`AutoencoderTiny`)."""
    from diffusers import AutoencoderTiny

    with loading("tiny decoder", name):
        decoder = AutoencoderTiny.from_pretrained(model_path(name), dtype=dtype)
    return decoder.eval().to(device)


def quiet_loading() -> None:
    """One progress bar (ours) rather than one per loaded component."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def versions() -> dict:
    """The library versions a run records in its config.json."""
    import diffusers
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}
