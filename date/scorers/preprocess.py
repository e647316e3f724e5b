"""Image preprocessing shared by every evaluation function h.

DATE differentiates h through the decoded image, so preprocessing must be a pure tensor op. The official code resized with
torchvision's tensor `Resize`, which at the time did not antialias; we reproduce that explicitly.
"""
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_SIZE = 224


def to_clip_input(images: torch.Tensor, size: int = CLIP_SIZE) -> torch.Tensor:
    """Map images in [0, 1] (B×3×H×W, any H×W) to the normalized size×size input of a CLIP-style vision tower."""
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    mean = images.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def openai_clip_pixels(image, size: int = CLIP_SIZE) -> torch.Tensor:
    """OpenAI CLIP's evaluation preprocessing of a PIL image (its `clip` package's transform): shorter side to `size`
    (bicubic, on the PIL image), center crop, RGB, CLIP normalization."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    image = TF.center_crop(TF.resize(image, size, InterpolationMode.BICUBIC), size)
    return TF.normalize(TF.to_tensor(image.convert("RGB")), CLIP_MEAN, CLIP_STD)


def processor_pixels(processor, image) -> torch.Tensor:
    """A transformers image processor's input for one PIL image (picklable with functools.partial, for loaders)."""
    return processor(images=image, return_tensors="pt").pixel_values[0]
