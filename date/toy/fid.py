"""toy FID: Fréchet distance between image sets in the feature space of a small network trained on the toy world.

Inception features mean little on 32 px drawings of colored shapes, so the network is trained to tell what is where:
for every (color, shape) and every image quadrant, whether such an object has its centroid there. Its penultimate
features therefore move when colors, shapes, layout or rendering quality drift. It is not the DATE scorer.
"""
import json
import os
from typing import List, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import load_file, save_file
from scipy import linalg

from date.toy.captions import COLORS, SHAPES, SIZE, Placed

FEATURES = 64
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class FeatureNet(nn.Module):
    """Four conv stages down to 4×4, global max pooling to FEATURES numbers, one linear layer of attribute logits.

    Max rather than average pooling: objects cover a tenth of an image, and averaging with the black background would
    shrink every feature (and so every distance) by as much."""

    def __init__(self, features: int = FEATURES, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        layers, channels = [], 3
        for width in (*widths, features):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU()]
            if width != features:
                layers.append(nn.AvgPool2d(2))
            channels = width
        self.trunk = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(features, len(COLORS) * len(SHAPES) * 4)
        self.widths = tuple(widths)
        self.features = features

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Features of images in [0, 1], B×3×SIZE×SIZE."""
        return self.trunk(images * 2 - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))

    def save_pretrained(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        save_file(self.state_dict(), os.path.join(path, WEIGHTS_NAME))
        with open(os.path.join(path, CONFIG_NAME), "w") as f:
            json.dump({"features": self.features, "widths": list(self.widths), "image_size": SIZE}, f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str) -> "FeatureNet":
        with open(os.path.join(path, CONFIG_NAME)) as f:
            config = json.load(f)
        net = cls(config["features"], config["widths"])
        net.load_state_dict(load_file(os.path.join(path, WEIGHTS_NAME)))
        return net.eval()


def attribute_targets(objects: List[List[Placed]]) -> torch.Tensor:
    """Multi-hot targets: (color, shape, quadrant of the centroid) for each scene."""
    colors, shapes = list(COLORS), list(SHAPES)
    targets = torch.zeros(len(objects), len(colors) * len(shapes) * 4)
    for i, scene in enumerate(objects):
        for o in scene:
            quadrant = 2 * (o.cy > SIZE / 2) + (o.cx > SIZE / 2)
            targets[i, (colors.index(o.color) * len(shapes) + shapes.index(o.shape)) * 4 + quadrant] = 1
    return targets


@torch.no_grad()
def embed_images(net: FeatureNet, images: Sequence[Image.Image] | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Features (N × FEATURES, float64) of PIL images or a float tensor in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2).float() / 255
    out = [net.embed(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real))
