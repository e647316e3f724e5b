"""h = CLIP similarity between the image and its prompt, as in the paper's DATE(h=CLIP)."""
import torch
from transformers import AutoTokenizer, CLIPModel

from date.io.loading import loading, model_path
from date.scorers.base import Scorer, pooled


class CLIPScorer(Scorer):
    """Cosine similarity of CLIP image and text features; text features are computed once per prompt."""

    def __init__(self, model: CLIPModel, tokenizer) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = pooled(self.model.get_image_features(pixel_values=pixel_values))
        return features / features.norm(dim=-1, keepdim=True)

    @classmethod
    def from_pretrained(cls, name_or_dir: str = "openai/clip-vit-large-patch14", torch_dtype: torch.dtype = torch.float32) -> "CLIPScorer":
        """Load model and tokenizer from a hub id or a local directory holding both."""
        path = model_path(name_or_dir)
        with loading("CLIP scorer", name_or_dir):
            return cls(CLIPModel.from_pretrained(path, dtype=torch_dtype), AutoTokenizer.from_pretrained(path))

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer(prompt, truncation=True, max_length=self.tokenizer.model_max_length, return_tensors="pt")
        features = pooled(self.model.get_text_features(input_ids=tokens.input_ids.to(self.device)))[0]
        return features / features.norm()

    def score_pixels(self, pixel_values: torch.Tensor, prompt_encodings: torch.Tensor) -> torch.Tensor:
        return (self.image_features(pixel_values) * prompt_encodings).sum(dim=-1)
