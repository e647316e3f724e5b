"""Text-guided editing in the toy world, judged exactly: the baseline (edit-friendly DDPM inversion and regeneration
with the target prompt) against DATE at several settings, on the bundled toy edit set (`assets/toy/edits.csv`).

    python evaluation/toy_edit_bench.py --out runs/toy_edit_bench [--max_cnt N] [--device D]

Every method edits the same source images with the same inversion (same seeds: the x_t draws and noise maps are
identical; DATE changes the regeneration only). Each edited image is judged by the toy world's exact checker:
- `edit_success`: the target caption holds (`date.toy.check`);
- `faithfulness`: the edited object stays where it was (centroid within `--tolerance` px, whatever it became), the
  other object of a two-object scene is still there with its color, shape and position (within the tolerance), and no
  object is added or lost.
`results.json` has a row per method (`edit_success`, `faithfulness`, each with a bootstrap interval, their parts,
the paired comparison with the baseline over the same edits, wall time, and the judgement of every edit under
`per_edit`); `results.md` the same as a table; the edited images are in `<out>/<method>/<k>.png`.
"""
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from date.io.atomic import write_text
from date.io.devices import add_threads_flag, pick_device
from date.io.edits import check_image, read_edits
from date.io.errors import UserInputError, exit_on_user_error
from date.io.flags import Parser, non_negative_int, positive_float, positive_int
from date.io.loading import ASSETS
from evaluation.stats import mean_with_ci, paired_comparison

EDITS = os.path.join(ASSETS, "toy", "edits.csv")


@dataclass(frozen=True)
class Setting:
    name: str
    lr_upt_prompt: float = 0.0  # ρ; 0: the baseline (no DATE)
    skip_freq: int = 10


SETTINGS = {s.name: s for s in (Setting("baseline"), Setting("date_rho0.5", 0.5), Setting("date_rho1", 1.0),
                                 Setting("date_rho0.5_every5", 0.5, 5), Setting("date_rho2", 2.0))}
DEFAULT_METHODS = ("baseline", "date_rho0.5", "date_rho1", "date_rho0.5_every5")


def judge_edit(source, edited, source_caption: str, target_caption: str, tolerance: float = 3.0) -> Dict[str, float]:
    """The checker's verdict on one edit: did it follow the target caption, and did it keep the rest."""
    from date.toy import check, find_objects, parse

    named = parse(source_caption).objects
    before = check(source, source_caption).objects
    after = find_objects(edited)
    edited_object = next(o for o in before if (o.color, o.shape) == named[0])
    kept_other = True
    used = set()
    if len(named) == 2:
        other = next(o for o in before if (o.color, o.shape) == named[1])
        matches = [i for i, o in enumerate(after) if (o.color, o.shape) == (other.color, other.shape)
                   and np.hypot(o.cx - other.cx, o.cy - other.cy) <= tolerance]
        kept_other = bool(matches)
        used = set(matches[:1])
    position_kept = any(np.hypot(o.cx - edited_object.cx, o.cy - edited_object.cy) <= tolerance
                        for i, o in enumerate(after) if i not in used)
    same_count = len(after) == len(before)
    return {"edit_success": float(check(edited, target_caption).ok),
            "faithfulness": float(position_kept and kept_other and same_count),
            "position_kept": float(position_kept), "other_kept": float(kept_other), "same_count": float(same_count)}


def run_setting(pipe, scorer, edits, setting: Setting, args, folder: str) -> tuple:
    """Edit every image with one setting; (judgements per edit, seconds)."""
    from date import editing
    from date.io.outputs import save_image
    from date.io.seeding import image_generator

    os.makedirs(folder, exist_ok=True)
    judged, start = [], time.perf_counter()
    for k, edit in enumerate(edits):
        source = check_image(edit.image, k)
        output = editing.edit(pipe, source, edit.source_prompt, edit.target_prompt,
                              scorer if setting.lr_upt_prompt > 0 else None, num_inference_steps=args.steps,
                              skip=args.skip, cfg_src=args.cfg_src, cfg_tar=args.cfg_tar,
                              generator=image_generator(args.seed, k), skip_freq=setting.skip_freq,
                              lr_upt_prompt=setting.lr_upt_prompt)
        image = output.images[0]
        save_image(image, os.path.join(folder, f"{k}.png"))
        judged.append(judge_edit(source, image, edit.source_prompt, edit.target_prompt, args.tolerance))
    return judged, time.perf_counter() - start


def summarize(name: str, setting: Setting, judged: List[Dict], seconds: float, baseline: Optional[List[Dict]],
              resamples: int) -> Dict:
    row = {"method": name, "rho": setting.lr_upt_prompt, "skip_freq": setting.skip_freq if setting.lr_upt_prompt else
           None, "edits": len(judged), "seconds": round(seconds, 2)}
    for key in ("edit_success", "faithfulness", "position_kept", "other_kept", "same_count"):
        values = np.array([j[key] for j in judged])
        stats = mean_with_ci(values, resamples=resamples)
        row[key] = stats.mean
        if key in ("edit_success", "faithfulness"):
            row[f"{key}_low"], row[f"{key}_high"] = stats.low, stats.high
            if baseline is not None:
                paired = paired_comparison(values, np.array([j[key] for j in baseline]), resamples=resamples)
                row[f"{key}_vs_baseline"] = {"mean_diff": paired.mean_diff, "low": paired.low, "high": paired.high,
                                             "win_rate": paired.win_rate, "wilcoxon_p": paired.wilcoxon_p}
    both = np.array([j["edit_success"] * j["faithfulness"] for j in judged])
    row["success_and_faithful"] = float(both.mean())
    row["per_edit"] = judged
    return row


def markdown(rows: Sequence[Dict]) -> str:
    lines = ["| method | ρ | update every | edit success [95% CI] | Δ vs baseline [95% CI], p | faithfulness [95% CI] | "
             "Δ vs baseline [95% CI], p | both | seconds |", "|---|---:|---:|---|---|---|---|---:|---:|"]
    for r in rows:
        def delta(key):
            d = r.get(f"{key}_vs_baseline")
            return "" if d is None else f"{d['mean_diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], {d['wilcoxon_p']:.2g}"
        lines.append(f"| {r['method']} | {r['rho']:g} | {r['skip_freq'] or ''} | {r['edit_success']:.3f} "
                     f"[{r['edit_success_low']:.3f}, {r['edit_success_high']:.3f}] | {delta('edit_success')} | "
                     f"{r['faithfulness']:.3f} [{r['faithfulness_low']:.3f}, {r['faithfulness_high']:.3f}] | "
                     f"{delta('faithfulness')} | {r['success_and_faithful']:.3f} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def parser() -> Parser:
    from date import editing

    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder (results.json, results.md, edited images)")
    p.add_argument("--edits", default=EDITS, help="toy edits file (default: the bundled one)")
    p.add_argument("--max_cnt", type=non_negative_int, default=None, help="only the first edits")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, of {', '.join(SETTINGS)} (default: %(default)s)")
    p.add_argument("--steps", type=positive_int, default=editing.NUM_STEPS, help="inversion steps N")
    p.add_argument("--skip", type=non_negative_int, default=editing.SKIP, help="skipped steps")
    p.add_argument("--cfg_src", type=positive_float, default=editing.CFG_SRC, help="inversion guidance")
    p.add_argument("--cfg_tar", type=positive_float, default=editing.CFG_TAR, help="regeneration guidance")
    p.add_argument("--tolerance", type=positive_float, default=3.0, help="pixels an object may move and stay 'kept'")
    p.add_argument("--seed", type=non_negative_int, default=6, help="seed of the inversions (same for every method)")
    p.add_argument("--resamples", type=positive_int, default=10_000, help="bootstrap resamples")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    add_threads_flag(p)
    return p


@exit_on_user_error
def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    args = parser().parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in SETTINGS]
    if unknown or not methods:
        raise UserInputError(f"--methods: unknown {unknown[0] if unknown else 'empty'}; choose from {', '.join(SETTINGS)}")
    if "baseline" in methods:
        methods = ["baseline"] + [m for m in methods if m != "baseline"]
    edits = read_edits(args.edits)[: args.max_cnt]
    if args.skip >= args.steps:
        raise UserInputError(f"--skip {args.skip} leaves none of the {args.steps} steps to regenerate")
    for k, edit in enumerate(edits):
        check_image(edit.image, k)
        from date.toy import parse

        try:
            parse(edit.source_prompt), parse(edit.target_prompt)
        except ValueError as e:
            raise UserInputError(f"{args.edits}: edit {k} is outside the toy grammar ({e})") from None
    device = pick_device(args.device)

    from diffusers import StableDiffusionPipeline

    from date.scorers.clip import CLIPScorer

    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(ASSETS, "toy", "sd"), safety_checker=None,
                                                   requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    scorer = CLIPScorer.from_pretrained(os.path.join(ASSETS, "toy", "clip")).to(device)
    os.makedirs(args.out, exist_ok=True)
    rows, baseline = [], None
    for name in methods:
        judged, seconds = run_setting(pipe, scorer, edits, SETTINGS[name], args, os.path.join(args.out, name))
        if name == "baseline":
            baseline = judged
        rows.append(summarize(name, SETTINGS[name], judged, seconds, baseline if name != "baseline" else None,
                              args.resamples))
        r = rows[-1]
        print(f"{name}: edit success {r['edit_success']:.3f}, faithfulness {r['faithfulness']:.3f} "
              f"({len(edits)} edits, {seconds:.1f} s)", file=sys.stderr)
    record = {"edits": args.edits, "count": len(edits), "settings": {k: getattr(args, k) for k in
              ("steps", "skip", "cfg_src", "cfg_tar", "tolerance", "seed")}, "device": str(device),
              "threads": torch.get_num_threads(), "rows": rows}
    write_text(os.path.join(args.out, "results.json"), json.dumps(record, indent=1) + "\n")
    write_text(os.path.join(args.out, "results.md"), markdown(rows))
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
