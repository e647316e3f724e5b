"""DATE: Diffusion Adaptive Text Embedding (NeurIPS 2025) on top of diffusers pipelines."""
from .clip_scorer import CLIPScorer
from .image_reward import ImageRewardScorer
from .sampling import generate, update_steps
from .scorer import Scorer

__all__ = ["CLIPScorer", "ImageRewardScorer", "Scorer", "generate", "update_steps"]
