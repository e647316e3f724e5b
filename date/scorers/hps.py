"""h = HPS v2.1 (Wu et al. 2023): OpenCLIP ViT-H/14 fine-tuned on human preferences (`HPS_v2.1_compressed.pt`).

The reference (`hpsv2`'s `score`) takes the cosine of normalized image and text features, about 0.25–0.32 on real
images. Built with open_clip's own model and tokenizer, the checkpoint's `state_dict` loaded as it is. Its evaluation
preprocessing is not open_clip's usual one (shorter side + center crop) but the longest side resized and the rest
zero-padded (`hps_pixels`); the recorded reference fixture tells the two apart.
"""
import functools
import open_clip
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from date.io.errors import UserInputError
from date.scorers.base import Scorer
from date.scorers.checkpoints import load_checkpoint
from date.scorers.preprocess import CLIP_MEAN, CLIP_STD

DEFAULT_CHECKPOINT = "xswu/HPSv2"
CHECKPOINT_FILE = "HPS_v2.1_compressed.pt"
ARCHITECTURE = "ViT-H-14"


def hps_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """HPS's evaluation input: RGB to a tensor, the longest side resized to `size` (bicubic), zero padding around it
    to a centred square, CLIP normalization (the reference's light-augmentation validation transform)."""
    pixels = TF.to_tensor(image.convert("RGB"))
    height, width = pixels.shape[1:]
    scale = size / max(height, width)
    if scale != 1.0:
        new_height, new_width = round(height * scale), round(width * scale)
        pixels = TF.resize(pixels, [new_height, new_width], InterpolationMode.BICUBIC)
        pad_h, pad_w = size - new_height, size - new_width
        pixels = TF.pad(pixels, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    return TF.normalize(pixels, CLIP_MEAN, CLIP_STD)


class HPSScorer(Scorer):
    def __init__(self, model, tokenizer) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        size = model.visual.image_size
        self.input_size = size[0] if isinstance(size, (tuple, list)) else size
        self.preprocess = functools.partial(hps_pixels, size=self.input_size)

    @classmethod
    def from_pretrained(cls, checkpoint: str = DEFAULT_CHECKPOINT, architecture: str = ARCHITECTURE,
                        torch_dtype: torch.dtype = torch.float32) -> "HPSScorer":
        """`checkpoint`: the .pt file, a folder holding it, or a hub repo; `architecture`: an open_clip model name."""
        path, state_dict = load_checkpoint(checkpoint, CHECKPOINT_FILE, "HPS v2.1", key="state_dict")
        try:
            model = open_clip.create_model(architecture, pretrained=None)
        except RuntimeError as e:  # open_clip's word for an unknown model name
            raise UserInputError(f"open_clip architecture {architecture!r}: {str(e).split('. Available')[0]}") from None
        try:
            model.load_state_dict({k.removeprefix("module."): v for k, v in state_dict.items()})
        except RuntimeError as e:
            raise UserInputError(f"{path} does not fit open_clip {architecture}: "
                                 f"{str(e).strip().splitlines()[1].strip()[:200]}") from None
        return cls(model.to(torch_dtype), open_clip.get_tokenizer(architecture))

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        features = self.model.encode_text(self.tokenizer([prompt]).to(self.device))[0]
        return features / features.norm()

    def score_pixels(self, pixel_values: torch.Tensor, prompt_encodings: torch.Tensor) -> torch.Tensor:
        features = self.model.encode_image(pixel_values)
        return (features / features.norm(dim=-1, keepdim=True) * prompt_encodings).sum(dim=-1)
