"""Tune the baselines' settings on the toy world's tuning prompts, never on the benchmark's.

    python evaluation/toy_tune.py --out runs/toy_tune

Runs `toy_bench.py` on `assets/toy/tuning_prompts.csv` (two-object captions, none in the benchmark) once for fixed and
DATE (for reference) and once per value tried of Universal Guidance's weight s, of EBCA's (γ_attn, γ_norm) and of
Attend-and-Excite's and CONFORM's step size (`--methods` runs only some of them), and
writes `<out>/tuning.md`: exact accuracy, toy-CLIP and toy FID per setting. The value kept for the benchmark is the one
of highest exact accuracy (ties: lower toy FID); it becomes `toy_bench.py`'s default by hand, with this table beside it.
"""
import os
from typing import Dict, List, Tuple

from date.io import flags
from date.io.errors import UserInputError, exit_on_user_error
from date.io.devices import add_threads_flag
from date.io.atomic import write_text
from evaluation.toy import bench as toy_bench

TUNING_PROMPTS = os.path.join(toy_bench.ASSETS, "tuning_prompts.csv")
UG_WEIGHTS = (5, 10, 20, 30, 50, 100, 200, 500)
EBCA_GAMMAS = ((0.01, 0.02), (0.05, 0.02), (0.1, 0.02), (0.2, 0.02), (0.01, 0.1), (0.05, 0.1), (0.1, 0.1), (0.2, 0.1),
               (0.001, 0.1), (0.003, 0.1), (0.001, 0.3), (0.003, 0.3), (0.01, 0.3),  # around the best of the first
               (0.001, 0.6), (0.003, 0.6), (0.001, 1.0), (0.003, 1.0))  # beyond the best of the second
UG_RECURRENCES = ((20, 2), (10, 2), (30, 2), (20, 3))  # self-recurrence k around the best s (k = 1)
STEERING_SCALES = (20, 60, 200, 10, 5, 2)  # A&E's and CONFORM's latent step size (official 20): up, then down


def runs() -> List[Tuple[str, str, List[str]]]:
    """(method, setting label, toy_bench flags) of every run."""
    out = [("fixed", "–", []), ("date", "ρ = 0.5, k = 10 (paper)", [])]
    out += [("ug", f"s = {s:g}", ["--optim_forward_guidance_wt", str(s)]) for s in UG_WEIGHTS]
    out += [("ug", f"s = {s:g}, k = {k}", ["--optim_forward_guidance_wt", str(s), "--optim_num_steps", str(k)])
            for s, k in UG_RECURRENCES]
    out += [("ebca", f"γ_attn = {a:g}, γ_norm = {n:g}", ["--gamma_attn", str(a), "--gamma_norm", str(n)]) for a, n in EBCA_GAMMAS]
    out += [("ae", f"scale_factor = {s:g}", ["--ae_scale_factor", str(s)]) for s in STEERING_SCALES]
    out += [("conform", f"scale_factor = {s:g}", ["--conform_scale_factor", str(s)]) for s in STEERING_SCALES]
    return out


@exit_on_user_error
def main(argv: List[str] | None = None) -> List[Dict]:
    parser = flags.Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="parent folder of one toy_bench folder per setting")
    parser.add_argument("--text_path", "--prompts", default=TUNING_PROMPTS, help="tuning prompts (never the benchmark's)")
    parser.add_argument("--reference_images", type=flags.positive_int, default=1000, help="rendered images for toy FID")
    parser.add_argument("--methods", default=None, help="tune only these methods (comma-separated), with fixed and "
                        "DATE for reference")
    add_threads_flag(parser)
    args, rest = parser.parse_known_args(argv)  # anything else goes to toy_bench.py (e.g. --device)
    rows = []
    tuned = {method for method, _, _ in runs()}
    wanted = None if args.methods is None else {"fixed", "date", *args.methods.split(",")}
    if wanted is not None and wanted - tuned:
        raise UserInputError(f"--methods: nothing to tune for {','.join(sorted(wanted - tuned))} (tuned: "
                             f"{','.join(sorted(tuned))})")
    for method, label, extra in (run for run in runs() if wanted is None or run[0] in wanted):
        folder = os.path.join(args.out, f"{method}_{'_'.join(extra[1::2]) or 'default'}")
        result = toy_bench.main(["--text_path", args.text_path, "--out", folder, "--methods", method, "--bs", "120",
                                 "--reference_images", str(args.reference_images), *extra, *rest])[method]
        rows.append({"method": method, "setting": label, **{k: result[k] for k in ("exact_accuracy", "ci95", "clip_score", "toy_fid")}})
    lines = [f"Tuning prompts: `{args.text_path}`", "", "| method | setting | exact accuracy ↑ | toy-CLIP ↑ | toy FID ↓ |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['method']} | {r['setting']} | {r['exact_accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | "
              f"{r['clip_score']:.4f} | {r['toy_fid']:.2f} |" for r in rows]
    write_text(os.path.join(args.out, "tuning.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
