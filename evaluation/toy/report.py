"""What the toy benchmark writes besides results.json: the Markdown table, accuracy.png, the contact sheet grid.png,
and the summary of several runs over a setting (`toy_bench.py --summarize PARENT`)."""
import json
import os
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

from date.io.errors import UserInputError
from date.io.atomic import write_text
from date.io.outputs import image_path, save_image
from date.io.sheets import contact_sheet
from date.toy import Verdict
from evaluation.plots import bar_panels, line_panels, save_figure
from evaluation.toy.methods import IMAGE_SETTINGS, LABELS, METHODS

PARTS = ("count", "colors", "shapes", "binding", "positions", "no_extra")


def table_row(cells: Sequence[str]) -> str:
    """One Markdown table row; header, separator and body rows built alike always have the same number of cells."""
    return "| " + " | ".join(cells) + " |"


def markdown(results: Dict, command: str) -> str:
    methods = [m for m in METHODS if m in results]
    first = results[methods[0]]
    rows = [
        ("exact accuracy ↑", lambda r: f"{r['exact_accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"),
        ("single-object ↑", lambda r: _fmt(r["single_object_accuracy"])),
        ("two-object ↑", lambda r: _fmt(r["two_object_accuracy"])),
        *[(f"{part} ↑", lambda r, part=part: _fmt(r["parts"][part])) for part in PARTS],
        *[(f"template `{t}` ↑", lambda r, t=t: _fmt(r["templates"][t])) for t in first["templates"]],
        ("toy-CLIP score (h) ↑", lambda r: f"{r['clip_score']:.4f}"),
        ("toy FID ↓", lambda r: f"{r['toy_fid']:.3f}"),
        ("seconds per image ↓", lambda r: _fmt(r["seconds_per_image"])),
    ]
    kept = results["settings"].get("kept_methods")
    note = ["", f"Kept from an earlier run in this folder with the same settings (their images judged again): "
                f"{', '.join(LABELS[m] for m in kept)}."] if kept else []
    lines = [f"`{command}`", *note, "", f"n = {first['n']} images per method ({first['prompts']} prompts × {first['n'] // first['prompts']} seeds)", "",
             table_row(["metric", *(LABELS[m] for m in methods)]), table_row(["---"] * (len(methods) + 1))]
    lines += [table_row([name, *(cell(results[m]) for m in methods)]) for name, cell in rows]
    for baseline, compared in results["paired"].items():
        for method, paired in compared.items():
            lines += ["", f"Paired on the same (prompt, seed), {LABELS[method]} − {LABELS[baseline]}: exact accuracy "
                      f"{paired['mean_diff']:+.3f} [{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}] (bootstrap over "
                      f"prompts); images ✗ → ✓: {paired['gained']}, ✓ → ✗: {paired['lost']}, "
                      f"exact McNemar p = {paired['mcnemar_p']:.3g}."]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def accuracy_figure(results: Dict, methods: Sequence[str]):
    """accuracy.png: exact accuracy and each template's, a bar per method with its 95% interval."""
    first = results[methods[0]]
    panels = [("exact accuracy", [(LABELS[m], results[m]["exact_accuracy"], *results[m]["ci95"], None) for m in methods])]
    panels += [(f"template `{t}`", [(LABELS[m], results[m]["templates"][t], *results[m]["templates_ci95"][t], None)
                                    for m in methods]) for t in first["templates"]]
    return bar_panels(panels, "toy benchmark: share of images the checker accepts (95% intervals over prompts)",
                      [name for name, _ in panels])


def grid_rows(args, prompt_count: int) -> List[int]:
    """The contact sheet's prompts: `--grid_indices`, or `--grid` K spread evenly over the file (every template)."""
    if args.grid_indices is not None:
        beyond = [i for i in args.grid_indices if i >= prompt_count]
        if beyond:
            raise UserInputError(f"--grid_indices {beyond[0]} is beyond the {prompt_count} prompts")
        return args.grid_indices
    return sorted(set(np.linspace(0, prompt_count - 1, min(args.grid, prompt_count)).round().astype(int).tolist()))


def write_grid(out: str, methods: Sequence[str], prompts: Sequence[str], indices: Sequence[int],
               verdicts: Dict[str, List[Verdict]]) -> None:
    """grid.png: seed 0 of the chosen prompts as rows, one column per method, the checker's ✓/✗ on every cell."""
    rows = [[Image.open(image_path(os.path.join(out, m, "seed_0"), i)).convert("RGB") for m in methods] for i in indices]
    marks = [[verdicts[m][i].ok for m in methods] for i in indices]
    sheet = contact_sheet(rows, [f"{i}: {prompts[i]}" for i in indices], [LABELS[m] for m in methods], cell=128,
                          verdicts=marks)
    save_image(sheet, os.path.join(out, "grid.png"))


def _sort_key(value) -> tuple:
    """Numbers by value (so 5 < 20 < 100), then anything else by its text."""
    return (0, float(value), "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0.0, str(value))


def summarize_runs(parent: str) -> Dict:
    """PARENT/summary.md and summary.png: exact accuracy and toy FID of every method in every benchmark folder of
    PARENT (one folder per setting), the folders ordered by the settings that differ between them."""
    if not os.path.isdir(parent):
        raise UserInputError(f"--summarize: folder not found: {parent}")
    runs = {}
    for name in sorted(os.listdir(parent)):
        path = os.path.join(parent, name, "results.json")
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    runs[name] = json.load(f)
            except (OSError, ValueError) as e:
                raise UserInputError(f"cannot read {path}: {e}") from None
    if not runs:
        raise UserInputError(f"--summarize: no benchmark folder (<name>/results.json) in {parent}")
    varying = [k for k in IMAGE_SETTINGS if len({json.dumps(r["settings"].get(k)) for r in runs.values()}) > 1]
    order = sorted(runs, key=lambda n: [_sort_key(runs[n]["settings"].get(k)) for k in varying] + [_sort_key(n)])
    methods = [m for m in METHODS if any(m in r for r in runs.values())]
    header = ["run", *varying, "method", "exact accuracy ↑", "toy FID ↓", "toy-CLIP ↑"]
    lines = [table_row(header), table_row(["---"] * len(header))]
    for name in order:
        for method in (m for m in methods if m in runs[name]):
            r = runs[name][method]
            lines.append(table_row([name, *(str(runs[name]["settings"].get(k)) for k in varying), LABELS[method],
                                    f"{r['exact_accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]",
                                    f"{r['toy_fid']:.2f}", f"{r['clip_score']:.4f}"]))
    accuracy = {LABELS[m]: [(runs[n][m]["exact_accuracy"], *runs[n][m]["ci95"]) if m in runs[n] else None for n in order]
                for m in methods}
    fid = {LABELS[m]: [(runs[n][m]["toy_fid"], None, None) if m in runs[n] else None for n in order] for m in methods}
    ticks = [", ".join(f"{k}={runs[n]['settings'].get(k)}" for k in varying) or n for n in order]  # what differs
    figure = line_panels([("exact accuracy ↑", accuracy), ("toy FID ↓", fid)], ticks,
                         ", ".join(varying) if varying else "benchmark folder")
    write_text(os.path.join(parent, "summary.md"), "\n".join(lines) + "\n")
    save_figure(figure, os.path.join(parent, "summary.png"))
    print("\n".join(lines))
    return {"runs": order, "varying": varying, "methods": methods}

