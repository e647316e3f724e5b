"""Drawing the toy world: scenes of one or two filled shapes on black, and (caption, scene) pairs for training.

Scenes keep every centroid at least `MARGIN` px from the image's center lines and two objects' centroids at least
`2 * MARGIN` px apart on both axes, so that every caption's truth on a drawn scene is unambiguous to the pixel.
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from date.toy.captions import COLORS, RELATIONS, SHAPES, SIZE, TEMPLATES, Caption, Placed, judge

MIN_SIDE, MAX_SIDE = 0.2 * SIZE, 0.4 * SIZE
BORDER = 1.0  # px kept free at the image border
GAP = 2.0  # px between two objects' bounding boxes
MARGIN = 1.0
SUPERSAMPLE = 8


@dataclass(frozen=True)
class Shape:
    """A drawn object: its bounding box is the square [x0, x0 + side] × [y0, y0 + side] in pixels."""

    color: str
    shape: str
    x0: float
    y0: float
    side: float

    @property
    def centroid(self) -> Tuple[float, float]:
        cx = self.x0 + self.side / 2
        # an apex-up isosceles triangle has its centroid two thirds of the way down from the apex
        cy = self.y0 + self.side * (2 / 3 if self.shape == "triangle" else 1 / 2)
        return cx, cy

    def placed(self) -> Placed:
        return Placed(self.color, self.shape, *self.centroid)


def render(shapes: Sequence[Shape]) -> Image.Image:
    """Draw shapes on a black SIZE×SIZE RGB image, anti-aliased by supersampling."""
    k = SUPERSAMPLE
    canvas = Image.new("RGB", (SIZE * k, SIZE * k), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for s in shapes:
        # PIL's shape boxes include their last pixel, hence the -1
        x0, y0, x1, y1 = s.x0 * k, s.y0 * k, (s.x0 + s.side) * k - 1, (s.y0 + s.side) * k - 1
        fill = COLORS[s.color]
        if s.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif s.shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return canvas.resize((SIZE, SIZE), Image.BOX)


def _well_separated(shapes: Sequence[Shape]) -> bool:
    half = SIZE / 2
    for s in shapes:
        cx, cy = s.centroid
        if abs(cx - half) < MARGIN or abs(cy - half) < MARGIN:
            return False
    for a, b in zip(shapes, shapes[1:]):
        (ax, ay), (bx, by) = a.centroid, b.centroid
        if abs(ax - bx) < 2 * MARGIN or abs(ay - by) < 2 * MARGIN:
            return False
        apart_x = a.x0 + a.side + GAP <= b.x0 or b.x0 + b.side + GAP <= a.x0
        apart_y = a.y0 + a.side + GAP <= b.y0 or b.y0 + b.side + GAP <= a.y0
        if not (apart_x or apart_y):
            return False
    return True


def _random_shape(rng: np.random.Generator, color: str, shape: str) -> Shape:
    side = rng.uniform(MIN_SIDE, MAX_SIDE)
    x0, y0 = rng.uniform(BORDER, SIZE - BORDER - side, size=2)
    return Shape(color, shape, float(x0), float(y0), float(side))


def sample_scene(rng: np.random.Generator, caption: Caption, max_tries: int = 10_000) -> List[Shape]:
    """A scene drawn uniformly (by rejection) among the well-separated scenes for which `caption` holds."""
    for _ in range(max_tries):
        shapes = [_random_shape(rng, color, shape) for color, shape in caption.objects]
        if _well_separated(shapes) and judge(caption, [s.placed() for s in shapes]).ok:
            return shapes
    raise RuntimeError(f"no scene found for {caption.text!r}")


def _random_thing(rng: np.random.Generator) -> Tuple[str, str]:
    return str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))


def sample_caption(rng: np.random.Generator, template: str | None = None) -> Caption:
    """A caption of the given template (one of TEMPLATES; uniform if None), its colors and shapes uniform."""
    template = template or str(rng.choice(TEMPLATES))
    first = _random_thing(rng)
    if template in ("single", "left", "right", "top", "bottom"):
        return Caption((first,), position=None if template == "single" else template)
    second = _random_thing(rng)
    while second == first:
        second = _random_thing(rng)
    return Caption((first, second), relation=template)


def sample_pair(rng: np.random.Generator) -> Tuple[Caption, List[Shape]]:
    """A caption of a uniformly drawn template and a scene for which it holds: the world's data distribution."""
    caption = sample_caption(rng)
    return caption, sample_scene(rng, caption)


def benchmark_captions(per_pair_template: int = 70, seed: int = 2025) -> List[str]:
    """The default prompt file of the toy benchmark: every one-object caption (18 per template), and
    `per_pair_template` distinct two-object captions of each two-object template, where there is room to improve."""
    rng = np.random.default_rng(seed)
    captions: List[str] = []
    for template in TEMPLATES:
        count = len(COLORS) * len(SHAPES) if template in ("single", "left", "right", "top", "bottom") else per_pair_template
        chosen: dict = {}
        while len(chosen) < count:
            chosen.setdefault(sample_caption(rng, template).text, None)
        captions += list(chosen)
    return captions


def tuning_captions(per_relation: int = 40, seed: int = 7) -> List[str]:
    """Prompts for tuning methods' settings: two-object captions none of which is a benchmark caption (every
    one-object caption is in the benchmark, so there is none left to tune on)."""
    rng, benchmark = np.random.default_rng(seed), set(benchmark_captions())
    captions: List[str] = []
    for template in RELATIONS:
        chosen: dict = {}
        while len(chosen) < per_relation:
            text = sample_caption(rng, template).text
            if text not in benchmark:
                chosen.setdefault(text, None)
        captions += list(chosen)
    return captions
