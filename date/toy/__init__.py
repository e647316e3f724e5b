"""The toy world: an offline text-to-image world whose text-image alignment is checked exactly.

Square SIZE px images with one or two colored shapes on black, captions of a fixed eight-template grammar, and an exact
pixel checker (`check`) that judges whether an image shows what its caption says. The trained toy models live in
`assets/toy/` (`python -m date.toy.train` reproduces them); `evaluation/toy_bench.py` measures DATE against fixed
embeddings here.
"""
from date.toy.captions import COLORS, SHAPES, SIZE, TEMPLATES, Caption, Placed, Verdict, judge, parse
from date.toy.checker import check, find_objects
from date.toy.world import Shape, render, sample_caption, sample_pair, sample_scene

__all__ = [
    "COLORS", "SHAPES", "SIZE", "TEMPLATES", "Caption", "Placed", "Verdict", "Shape",
    "check", "find_objects", "judge", "parse", "render", "sample_caption", "sample_pair", "sample_scene",
]
