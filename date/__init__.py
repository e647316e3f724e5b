"""DATE: Diffusion Adaptive Text Embedding (NeurIPS 2025) on top of diffusers pipelines.

The public names load on first use, so that scripts needing only a helper (errors, captions) start without importing
diffusers and transformers.
"""
import importlib

_PUBLIC = {"CLIPScorer": "scorers.clip", "ImageRewardScorer": "scorers.image_reward", "Scorer": "scorers.base",
           "generate": "sampling", "update_steps": "sampling", "make_scheduler": "pipeline.schedulers",
           "edit": "editing"}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'date' has no attribute {name!r}")
