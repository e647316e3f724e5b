"""DATE: Diffusion Adaptive Text Embedding (NeurIPS 2025) on top of diffusers pipelines."""
from .clip_scorer import CLIPScorer
from .sampling import generate, update_steps
from .scorer import Scorer

__all__ = ["CLIPScorer", "Scorer", "generate", "update_steps"]
