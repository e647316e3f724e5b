"""The toy world's caption grammar and its truth conditions.

Truth is defined on a list of placed objects (color, shape, centroid), so that the same function judges a scene as it was
drawn (`world`) and a scene as the pixel checker reads it (`checker`): the checker can only differ from the ground truth
in what it perceives, never in what a caption means.
"""
import itertools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

SIZE = 32  # image side in pixels

COLORS = {
    "red": (230, 25, 25),
    "green": (30, 200, 40),
    "blue": (40, 80, 240),
    "yellow": (240, 220, 30),
    "purple": (160, 50, 210),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("left", "right", "top", "bottom")
RELATIONS = ("and", "left_of", "above")

_POSITION_WORDS = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
_RELATION_WORDS = {"and": "and", "left_of": "to the left of", "above": "above"}
_OBJECT = r"a ({c}) ({s})".format(c="|".join(COLORS), s="|".join(SHAPES))
_SINGLE = re.compile(rf"{_OBJECT}(?: ({'|'.join(_POSITION_WORDS.values())}))?")
_PAIR = re.compile(rf"{_OBJECT} ({'|'.join(_RELATION_WORDS.values())}) {_OBJECT}")

Thing = Tuple[str, str]  # (color, shape)


@dataclass(frozen=True)
class Caption:
    """A parsed caption: one or two named objects, plus a position (one object) or a relation (two objects)."""

    objects: Tuple[Thing, ...]
    position: Optional[str] = None
    relation: Optional[str] = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= 2:
            raise ValueError("a caption names one or two objects")
        for color, shape in self.objects:
            if color not in COLORS or shape not in SHAPES:
                raise ValueError(f"unknown object {color} {shape}")
        if len(self.objects) == 1 and (self.relation is not None or self.position not in (None, *POSITIONS)):
            raise ValueError("a one-object caption takes an optional position and no relation")
        if len(self.objects) == 2:
            if self.position is not None or self.relation not in RELATIONS:
                raise ValueError("a two-object caption takes a relation and no position")
            if self.objects[0] == self.objects[1]:
                raise ValueError("the two objects of a caption must differ in color or shape")

    @property
    def template(self) -> str:
        """Which of the eight templates this caption uses, e.g. 'single', 'left', 'and', 'above'."""
        if len(self.objects) == 1:
            return self.position or "single"
        return self.relation

    @property
    def text(self) -> str:
        named = [f"a {color} {shape}" for color, shape in self.objects]
        if len(named) == 1:
            return named[0] + (f" {_POSITION_WORDS[self.position]}" if self.position else "")
        return f"{named[0]} {_RELATION_WORDS[self.relation]} {named[1]}"


TEMPLATES = ("single", *POSITIONS, *RELATIONS)


def parse(caption: str) -> Caption:
    """Parse a caption of the toy grammar; ValueError for anything outside it."""
    if not isinstance(caption, str):
        raise ValueError(f"a caption is a string, got {type(caption).__name__}")
    match = _SINGLE.fullmatch(caption)
    if match:
        color, shape, where = match.groups()
        position = next((p for p, words in _POSITION_WORDS.items() if words == where), None)
        return Caption(((color, shape),), position=position)
    match = _PAIR.fullmatch(caption)
    if match:
        color1, shape1, words, color2, shape2 = match.groups()
        relation = next(r for r, w in _RELATION_WORDS.items() if w == words)
        return Caption(((color1, shape1), (color2, shape2)), relation=relation)
    raise ValueError(f"not a caption of the toy world: {caption!r}")


@dataclass(frozen=True)
class Placed:
    """An object as placed in or found on an image: centroid (cx, cy) in pixels, origin at the top-left image corner."""

    color: str
    shape: str
    cx: float
    cy: float


@dataclass(frozen=True)
class Verdict:
    """The judgement of one caption against one image, with the part that failed.

    colors / shapes / binding: every named color / shape / (color, shape) pair is carried by a distinct object found.
    positions: some binding assignment satisfies the caption's position or relation (None: the caption has none).
    extra_objects: objects found beyond the number named.
    """

    ok: bool
    objects: Tuple[Placed, ...]
    count: bool
    colors: bool
    shapes: bool
    binding: bool
    positions: Optional[bool]
    extra_objects: int


def _contains(found: Sequence, named: Sequence) -> bool:
    return not (Counter(named) - Counter(found))


def _spatial_holds(caption: Caption, assigned: Sequence[Placed]) -> bool:
    half = SIZE / 2
    if caption.position is not None:
        (obj,) = assigned
        return {"left": obj.cx < half, "right": obj.cx > half, "top": obj.cy < half, "bottom": obj.cy > half}[caption.position]
    if caption.relation == "left_of":
        return assigned[0].cx < assigned[1].cx
    if caption.relation == "above":
        return assigned[0].cy < assigned[1].cy
    return True


def judge(caption: Caption, objects: Sequence[Placed]) -> Verdict:
    """Whether `caption` holds for an image containing exactly `objects`, part by part."""
    objects = tuple(objects)
    named = caption.objects
    binding = _contains([(o.color, o.shape) for o in objects], named)
    spatial = caption.position is not None or caption.relation in ("left_of", "above")
    positions: Optional[bool] = None
    if spatial:
        positions = any(
            all((o.color, o.shape) == thing for o, thing in zip(assigned, named)) and _spatial_holds(caption, assigned)
            for assigned in itertools.permutations(objects, len(named))
        )
    extra = max(0, len(objects) - len(named))
    return Verdict(
        ok=binding and positions is not False and extra == 0,
        objects=objects,
        count=len(objects) == len(named),
        colors=_contains([o.color for o in objects], [c for c, _ in named]),
        shapes=_contains([o.shape for o in objects], [s for _, s in named]),
        binding=binding,
        positions=positions,
        extra_objects=extra,
    )
