"""Labelled image sheets, drawn with PIL: contact sheets (rows of images under column labels, a caption under each
row, an optional ✓/✗ per cell) and the trajectory strips built from them. Researchers judge a method first by eye."""
import functools
from typing import List, Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

BACKGROUND, INK, GOOD, BAD = "white", (20, 20, 20), (0, 150, 60), (200, 30, 30)
PAD = 6


@functools.lru_cache(maxsize=None)
def label_font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib: Latin, Greek, arrows, ✓ ✗); Pillow's default font where it is missing."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=False), size)
    except (ImportError, ValueError, OSError):
        return ImageFont.load_default(size=size)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> List[str]:
    """Greedy word wrap to `width` pixels (over-long words broken anywhere); an ellipsis ends a text cut short."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    fits = lambda s: draw.textlength(s, font=font) <= width  # noqa: E731
    lines: List[str] = []
    line = ""
    words = " ".join(text.split()).split(" ")
    while words and len(lines) <= max_lines:
        word = words.pop(0)
        if fits(f"{line} {word}".strip()):
            line = f"{line} {word}".strip()
        elif line:
            lines.append(line)
            line = ""
            words.insert(0, word)
        else:  # a word wider than the line: as many characters as fit
            cut = 1
            while cut < len(word) and fits(word[: cut + 1]):
                cut += 1
            lines.append(word[:cut])
            if word[cut:]:
                words.insert(0, word[cut:])
    if line:
        lines.append(line)
    if len(lines) > max_lines or words:
        last = lines[max_lines - 1]
        while last and not fits(last + "…"):
            last = last[:-1]
        lines = lines[: max_lines - 1] + [last + "…"]
    return lines


def fit(image: Image.Image, cell: int) -> Image.Image:
    """`image` scaled to fit a cell×cell square (keeping its aspect), centred on white. Enlarged 2× or more (toy
    images), it is scaled by nearest neighbour so that its pixels stay visible; otherwise by Lanczos."""
    image = image.convert("RGB")
    scale = cell / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image.resize(size, Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS)
    square = Image.new("RGB", (cell, cell), BACKGROUND)
    square.paste(resized, ((cell - size[0]) // 2, (cell - size[1]) // 2))
    return square


def _mark(draw: ImageDraw.ImageDraw, x: int, y: int, cell: int, ok: bool) -> None:
    """A check mark or a cross drawn as lines in the cell's top-right corner (no font needed)."""
    s = max(10, cell // 7)
    x0, y0 = x + cell - s - 3, y + 3
    draw.rectangle((x0 - 2, y0 - 2, x0 + s + 2, y0 + s + 2), fill="white")
    width = max(2, s // 5)
    if ok:
        draw.line([(x0, y0 + s * 0.55), (x0 + s * 0.4, y0 + s), (x0 + s, y0)], fill=GOOD, width=width)
    else:
        draw.line([(x0, y0), (x0 + s, y0 + s)], fill=BAD, width=width)
        draw.line([(x0, y0 + s), (x0 + s, y0)], fill=BAD, width=width)


def contact_sheet(rows: Sequence[Sequence[Image.Image]], captions: Sequence[str], columns: Sequence[str],
                  cell: int = 192, verdicts: Optional[Sequence[Sequence[Optional[bool]]]] = None,
                  font_size: int = 14) -> Image.Image:
    """One row per caption (its images left to right, the caption under them), one column per label (on top).
    `verdicts[r][c]` True/False draws ✓/✗ on a cell (None: nothing)."""
    if any(len(row) != len(columns) for row in rows) or len(rows) != len(captions):
        raise ValueError("contact_sheet: every row needs one image per column and one caption")
    font = label_font(font_size)
    line_height = font_size + 4
    header = [wrap(label, font, cell - 2 * PAD, 2) for label in columns]
    header_height = PAD * 2 + line_height * max([len(lines) for lines in header] + [1])
    width = cell * len(columns) + PAD * (len(columns) + 1)
    caption_lines = [wrap(caption, font, width - 2 * PAD, 2) for caption in captions]
    heights = [cell + PAD + line_height * max(1, len(lines)) + PAD for lines in caption_lines]
    sheet = Image.new("RGB", (width, header_height + sum(heights)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for c, lines in enumerate(header):
        for k, line in enumerate(lines):
            draw.text((PAD + c * (cell + PAD) + PAD, PAD + k * line_height), line, font=font, fill=INK)
    y = header_height
    for r, (row, lines) in enumerate(zip(rows, caption_lines)):
        for c, image in enumerate(row):
            x = PAD + c * (cell + PAD)
            sheet.paste(fit(image, cell), (x, y))
            if verdicts is not None and verdicts[r][c] is not None:
                _mark(draw, x, y, cell, bool(verdicts[r][c]))
        for k, line in enumerate(lines):
            draw.text((PAD, y + cell + PAD // 2 + k * line_height), line, font=font, fill=INK)
        y += heights[r]
    return sheet


def tensor_image(pixels) -> Image.Image:
    """A 3×H×W tensor in [0, 1] as a PIL image."""
    array = (pixels.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    return Image.fromarray(array)


def trajectory_strip(steps: Sequence, index: int, cell: int = 160, title: Optional[str] = None) -> Image.Image:
    """Image `index`'s x̂0 before (top) and after (bottom) every update (`date.generate(..., trajectory=True)`'s
    `TrajectoryStep`s), one column per update, labelled with its step index and h before → after; `title` (which
    image, its caption) heads the first row, so a strip is legible on its own."""
    labels = [f"step {s.step_index}: h {float(s.h_before[index]):.4f} → {float(s.h_after[index]):.4f}" for s in steps]
    rows = [[tensor_image(s.before[index]) for s in steps], [tensor_image(s.after[index]) for s in steps]]
    before = "x̂0 before the update" if title is None else f"{title}: x̂0 before the update"
    return contact_sheet(rows, [before, "x̂0 after the update (same x_t)"], labels, cell=cell)
