"""The toy world's grammar and its exact checker, on thousands of rendered scenes."""
import numpy as np
import pytest
from PIL import Image

from date.toy import COLORS, SHAPES, SIZE, TEMPLATES, Caption, Shape, check, find_objects, judge, parse, render, sample_caption, sample_pair
from date.toy.data import hard_negative, spatial_negative


@pytest.fixture(scope="module")
def rendered():
    """2,000 scenes of the world's distribution: (caption, shapes, image, objects the checker finds on the image)."""
    rng = np.random.default_rng(2024)
    scenes = []
    for _ in range(2000):
        caption, shapes = sample_pair(rng)
        image = render(shapes)
        scenes.append((caption, shapes, image, find_objects(image)))
    return scenes


def test_every_template_round_trips():
    rng = np.random.default_rng(0)
    for template in TEMPLATES:
        caption = sample_caption(rng, template)
        assert caption.template == template
        assert parse(caption.text) == caption


def test_parse_reads_the_grammar():
    assert parse("a red circle") == Caption((("red", "circle"),))
    assert parse("a white triangle at the bottom").position == "bottom"
    relation = parse("a green square to the left of a purple circle")
    assert relation.objects == (("green", "square"), ("purple", "circle")) and relation.relation == "left_of"
    assert parse("a blue circle above a blue square").relation == "above"
    assert parse("a yellow circle and a yellow triangle").relation == "and"


@pytest.mark.parametrize("bad", [
    "", "a red circle ", " a red circle", "A red circle", "a red circles", "an red circle", "a orange circle",
    "a red hexagon", "a red circle on the top", "a red circle at the left", "a red circle above",
    "a red circle and a red circle", "a red circle above a red circle", "a red circle and a blue square and a red square",
    "a red circle on the left of a blue square", "two red circles", "a red circle.",
])
def test_parse_rejects_everything_else(bad):
    with pytest.raises(ValueError):
        parse(bad)


def test_parse_rejects_non_strings():
    with pytest.raises(ValueError):
        parse(None)


def test_checker_reads_objects_off_rendered_images(rendered):
    for caption, shapes, _, found in rendered:
        assert len(found) == len(shapes), caption.text
        for shape in shapes:
            cx, cy = shape.centroid
            matches = [f for f in found if (f.color, f.shape) == (shape.color, shape.shape)
                       and abs(f.cx - cx) < 0.3 and abs(f.cy - cy) < 0.3]
            assert len(matches) == 1, (caption.text, shape, found)


def test_checker_accepts_the_caption_each_scene_was_drawn_for(rendered):
    assert all(judge(caption, found).ok for caption, _, _, found in rendered)
    assert all(check(image, caption.text).ok for caption, _, image, _ in rendered[:200])
    assert {c.template for c, *_ in rendered} == set(TEMPLATES)


def test_checker_agrees_with_the_scene_on_false_and_unrelated_captions(rendered):
    rng = np.random.default_rng(7)
    false_seen = true_seen = 0
    for caption, shapes, _, found in rendered:
        truth = [s.placed() for s in shapes]
        negative = hard_negative(caption, truth, rng)
        assert not judge(negative, found).ok, (caption.text, negative.text)
        other = sample_caption(rng, caption.template)  # same template, random objects: usually false, sometimes true
        expected = judge(other, truth).ok
        assert judge(other, found).ok == expected, (caption.text, other.text)
        true_seen += expected
        false_seen += not expected
    assert true_seen > 20 and false_seen > 1500


def test_spatial_negatives_change_only_where_things_are(rendered):
    rng = np.random.default_rng(8)
    for caption, shapes, _, _ in rendered[:500]:
        truth = [s.placed() for s in shapes]
        negative = spatial_negative(caption, truth, rng)
        assert not judge(negative, truth).ok, (caption.text, negative.text)
        if caption.position:
            assert negative.objects == caption.objects and negative.position not in (None, caption.position)
        elif caption.relation in ("left_of", "above"):
            assert negative.objects == caption.objects[::-1] and negative.relation == caption.relation


def test_verdict_parts_say_what_failed():
    red_circle_left = Shape("red", "circle", 3, 10, 10)
    blue_triangle_right = Shape("blue", "triangle", 19, 10, 10)
    image = render([red_circle_left, blue_triangle_right])

    wrong_shape = check(image, "a red circle and a blue square")
    assert (wrong_shape.ok, wrong_shape.colors, wrong_shape.shapes, wrong_shape.binding) == (False, True, False, False)
    assert wrong_shape.positions is None and wrong_shape.count and wrong_shape.extra_objects == 0

    swapped = check(image, "a blue triangle to the left of a red circle")
    assert (swapped.ok, swapped.binding, swapped.positions) == (False, True, False)
    assert check(image, "a red circle to the left of a blue triangle").ok

    extra = check(image, "a red circle on the left")
    assert (extra.ok, extra.binding, extra.positions, extra.count, extra.extra_objects) == (False, True, True, False, 1)

    missing = check(render([red_circle_left]), "a red circle and a blue triangle")
    assert (missing.ok, missing.colors, missing.shapes, missing.binding, missing.count) == (False, False, False, False, False)

    wrong_half = check(render([red_circle_left]), "a red circle on the right")
    assert (wrong_half.ok, wrong_half.binding, wrong_half.positions) == (False, True, False)


def test_colors_and_shapes_are_told_apart_at_the_smallest_size():
    for color in COLORS:
        for shape in SHAPES:
            image = render([Shape(color, shape, 12.3, 12.6, 0.2 * SIZE)])
            assert check(image, f"a {color} {shape}").ok, (color, shape)


def test_checker_sees_off_palette_blobs_and_ignores_specks():
    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    pixels[4:12, 4:12] = (240, 130, 20)  # orange: no palette color explains it
    pixels[20, 20] = COLORS["red"]  # a one-pixel speck
    found = find_objects(Image.fromarray(pixels))
    assert [(f.color, f.shape) for f in found] == [("unknown", "square")]


def test_checker_refuses_other_image_sizes():
    with pytest.raises(ValueError):
        check(Image.new("RGB", (SIZE * 2, SIZE * 2)), "a red circle")
