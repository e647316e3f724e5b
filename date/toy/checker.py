"""The exact judge: reads the objects off an image's pixels and applies the caption's truth conditions.

Each pixel is explained as a palette color c seen at coverage a (pixel ≈ a·c over black, which is what anti-aliasing
produces); a pixel belongs to an object when its best explanation covers at least half of it. Objects are the connected
components of one color, at least MIN_AREA pixels (smaller specks are noise, a third of the smallest drawable shape).
Shape comes from moments of the coverage: a triangle's mass is skewed downwards, a square has heavy corners.
"""
from dataclasses import dataclass
from typing import List

import numpy as np
from PIL import Image
from scipy import ndimage

from date.toy.captions import COLORS, SIZE, Placed, Verdict, judge, parse

PALETTE = np.array(list(COLORS.values()), dtype=np.float64)
COLOR_NAMES = list(COLORS)
MIN_AREA = 7
COLOR_TOLERANCE = 0.25  # largest residual of a pixel's palette fit, relative to its fitted brightness
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Found(Placed):
    """An object read off the pixels, with the measurements its shape was decided from."""

    area: int
    skew: float
    corners: float


def _fit_palette(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: color label (index into COLOR_NAMES, -1 background, len(COLOR_NAMES) off-palette) and coverage per color."""
    pixels = rgb.reshape(-1, 1, 3)
    norms = (PALETTE**2).sum(-1)
    coverage = np.clip((pixels * PALETTE).sum(-1) / norms, 0.0, 1.0)  # (N, colors)
    residual = np.linalg.norm(pixels - coverage[..., None] * PALETTE, axis=-1)
    best = residual.argmin(-1)
    rows = np.arange(len(best))
    best_coverage = coverage[rows, best]
    labels = np.where(best_coverage >= 0.5, best, -1)
    off_palette = residual[rows, best] > COLOR_TOLERANCE * best_coverage * np.sqrt(norms[best])
    labels = np.where((labels >= 0) & off_palette, len(COLOR_NAMES), labels)
    return labels.reshape(rgb.shape[:2]), coverage.reshape(*rgb.shape[:2], -1)


def _moments(weights: np.ndarray) -> tuple[float, float, float, float]:
    """Centroid (cx, cy) of a coverage map, its vertical skewness and its corner ratio E[x⁴+y⁴] / 2E[x²y²].

    Skewness is ≈ -0.57 for an apex-up triangle (its mass sits low) and 0 for circles and squares; the corner ratio is
    1.8 for a square and 3 for a disc. Both are moments of the coverage, so they hold at any size and sub-pixel offset.
    """
    ys, xs = np.mgrid[0 : weights.shape[0], 0 : weights.shape[1]] + 0.5
    mass = weights.sum()
    cx, cy = (weights * xs).sum() / mass, (weights * ys).sum() / mass
    dx, dy = xs - cx, ys - cy
    var_y = (weights * dy**2).sum() / mass
    skew = (weights * dy**3).sum() / mass / var_y**1.5 if var_y > 0 else 0.0  # a one-row blob is no triangle
    corners = (weights * (dx**4 + dy**4)).sum() / (2 * (weights * dx**2 * dy**2).sum() + 1e-12)
    return float(cx), float(cy), float(skew), float(corners)


def _shape(skew: float, corners: float) -> str:
    if skew < -0.3:
        return "triangle"
    return "square" if corners < 2.4 else "circle"


def find_objects(image: Image.Image) -> List[Found]:
    """All objects on a toy-world image, top to bottom."""
    if image.size != (SIZE, SIZE):
        raise ValueError(f"the checker reads {SIZE}×{SIZE} images, got {image.size[0]}×{image.size[1]}")
    labels, coverage = _fit_palette(np.asarray(image.convert("RGB"), dtype=np.float64))
    found = []
    for color_index in range(len(COLOR_NAMES) + 1):
        components, count = ndimage.label(labels == color_index, structure=_EIGHT_CONNECTED)
        for k in range(1, count + 1):
            mask = components == k
            area = int(mask.sum())
            if area < MIN_AREA:
                continue
            if color_index == len(COLOR_NAMES):
                color, weights = "unknown", mask.astype(np.float64)
            else:
                # the anti-aliased rim below half coverage belongs to the object too: count it at its coverage
                rim = ndimage.binary_dilation(mask, structure=_EIGHT_CONNECTED) & (labels == -1)
                color, weights = COLOR_NAMES[color_index], coverage[..., color_index] * (mask | rim)
            cx, cy, skew, corners = _moments(weights)
            found.append(Found(color, _shape(skew, corners), cx, cy, area, skew, corners))
    return sorted(found, key=lambda f: (f.cy, f.cx))


def check(image: Image.Image, caption: str) -> Verdict:
    """Does `image` show exactly what `caption` says? ValueError for a caption outside the grammar."""
    return judge(parse(caption), find_objects(image))
