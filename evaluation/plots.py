"""Figures of the report and the toy benchmark: bars with their 95% intervals, one panel per metric. matplotlib's
object API only (no pyplot, no display), so scripts run the same on a headless machine."""
import os
from typing import Dict, List, Optional, Sequence, Tuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from date.io.atomic import atomic_write

Bar = Tuple[str, float, Optional[float], Optional[float], Optional[str]]  # label, value, low, high, note above it


def bar_panels(panels: Sequence[Tuple[str, Sequence[Bar]]], title: str = "", zero_based: Sequence[str] = ()) -> Figure:
    """One panel per (metric name, bars); a bar per method with its interval and an optional note (paired Δ). The
    panels named in `zero_based` start at 0; the others zoom on the intervals, where small differences live."""
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    panel_width = max(3.5, 1.5 + 0.8 * max(len(bars) for _, bars in panels))
    figure = Figure(figsize=(panel_width * columns, 3.8 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for k, (name, bars) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, k + 1)
        values = [b[1] for b in bars]
        errors = [[b[1] - b[2] if b[2] is not None else 0 for b in bars],
                  [b[3] - b[1] if b[3] is not None else 0 for b in bars]]
        positions = range(len(bars))
        has_interval = any(b[2] is not None for b in bars)
        axes.bar(positions, values, yerr=errors if has_interval else None, capsize=4, color=[f"C{i}" for i in positions])
        axes.set_xticks(list(positions), [_short(b[0]) for b in bars], rotation=30, ha="right", fontsize=8)
        axes.set_title(name, fontsize=10)
        top = max((b[3] if b[3] is not None else b[1]) for b in bars)
        low = min((b[2] if b[2] is not None else b[1]) for b in bars)
        if name in zero_based:
            low, top = min(low, 0.0), max(top, 0.0)
        span = (top - low) or abs(top) or 1.0
        for position, bar in zip(positions, bars):
            if bar[4]:
                axes.annotate(bar[4], (position, (bar[3] if bar[3] is not None else bar[1]) + 0.02 * span),
                              ha="center", va="bottom", fontsize=7)
        axes.set_ylim(low - (0 if name in zero_based and low == 0 else 0.1 * span), top + 0.25 * span)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def line_panels(panels: Sequence[Tuple[str, Dict[str, Sequence[Tuple[float, Optional[float], Optional[float]]]]]],
                settings: Sequence[str], xlabel: str) -> Figure:
    """One panel per metric, one line per method: its value (with interval) at each setting, in order."""
    figure = Figure(figsize=(4.5 * len(panels), 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    for k, (name, series) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), k + 1)
        for method, points in series.items():
            xs = [i for i, p in enumerate(points) if p is not None]
            ys = [points[i][0] for i in xs]
            low = [points[i][0] - points[i][1] if points[i][1] is not None else 0 for i in xs]
            high = [points[i][2] - points[i][0] if points[i][2] is not None else 0 for i in xs]
            axes.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=method)
        axes.set_xticks(range(len(settings)), [_short(s, 40) for s in settings], rotation=30, ha="right", fontsize=8)
        axes.set_xlabel(xlabel, fontsize=9)
        axes.set_title(name, fontsize=10)
        axes.legend(fontsize=7)
    return figure


def save_figure(figure: Figure, path: str) -> None:
    """Written atomically, like every other output."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


FID_PANEL = "FID ↓"


def report_panels(rows: Sequence[dict], metrics: Sequence[Tuple[str, str]],
                  labels: Sequence[str]) -> List[Tuple[str, List[Bar]]]:
    """The report's rows as panels, a bar per row named by its label (`evaluation/labels.py`): FID (no interval: a
    set-level number), then each per-image metric (key, header) with its interval and, for non-baseline rows, the
    paired Δ against the baseline."""
    panels: List[Tuple[str, List[Bar]]] = []
    if any(row.get("fid") is not None for row in rows):
        panels.append((FID_PANEL, [(label, row["fid"], None, None, None) for row, label in zip(rows, labels)
                                   if row.get("fid") is not None]))
    for key, header in metrics:
        bars = []
        for row, label in zip(rows, labels):
            if row.get(key) is None:
                continue
            note = f"Δ {row[f'{key}_diff']:+.3g}\n[{row[f'{key}_diff_low']:+.2g}, {row[f'{key}_diff_high']:+.2g}]" \
                if row.get(f"{key}_diff") is not None else None
            bars.append((label, row[key], row[f"{key}_low"], row[f"{key}_high"], note))
        if bars:
            panels.append((header, bars))
    return panels
