"""DATE against fixed text embeddings in the toy world, where whether an image follows its caption is checked exactly.

    python evaluation/toy_bench.py --prompts assets/toy/prompts.csv --seeds 2 --out runs/toy_bench

Methods (`--methods`, any subset with `fixed`): `fixed` embeddings, `date_clip` (DATE ascending h = the toy CLIP) and
`date_fast` (the same, x̂0 decoded inside updates by the tiny decoder `--x0_decoder`). All start from the same initial
noise for each (prompt, seed) and use the same toy Stable Diffusion. Each image is judged by `date.toy.check` (never used for guidance). Writes
`<out>/results.json` and `<out>/results.md`: exact accuracy with a 95% bootstrap interval over prompts, accuracy per
part and per caption template, the mean toy-CLIP score, toy FID against freshly rendered world images, and a paired
comparison on the same (prompt, seed) (exact McNemar test). Images go to `<out>/<method>/seed_<k>/<index>.png`; a
rerun with the same settings reuses the images already there (resume), other settings are refused.
"""
import os
import sys

if not __package__:  # run as `python evaluation/<script>.py`: import from the repository root, not from evaluation/
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np
import torch
from PIL import Image
from scipy import stats as scipy_stats
from tqdm import tqdm

import date
from date.errors import UserInputError, exit_on_user_error
from date.loading import loading, model_path
from date.outputs import atomic_write, check_resumable, image_path, pending, save_image, write_config
from date.prompts import read_captions, write_captions
from date.toy import SIZE, Verdict, check, parse
from date.toy.fid import FeatureNet, embed_images, frechet_distance
from date.toy.world import render, sample_pair
from evaluation import cli
from evaluation.stats import mean_with_ci, paired_comparison

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(REPO, "assets", "toy")
METHODS = ("fixed", "date_clip", "date_fast")
LABELS = {"fixed": "fixed", "date_clip": "DATE (h = toy CLIP)", "date_fast": "DATE fast (tiny x̂0 decoder)"}
PARTS = ("count", "colors", "shapes", "binding", "positions", "no_extra")
REFERENCE_SEED = 12345
IMAGE_SETTINGS = ("steps", "w", "skip_freq", "lr_upt_prompt", "num_upt_prompt", "model", "clip_model", "x0_decoder")


@dataclass
class Judged:
    """Everything measured on one method's images, in (seed, prompt) order."""

    verdicts: List[Verdict]
    clip_scores: np.ndarray
    images: List[Image.Image]


def initial_latents(pipe, prompt_count: int, seed: int) -> torch.Tensor:
    """The same x_T for every method: one generator per (seed, prompt index)."""
    shape = (pipe.unet.config.in_channels, SIZE // pipe.vae_scale_factor, SIZE // pipe.vae_scale_factor)
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed * 100_003 + i)) for i in range(prompt_count)])


def generate_all(pipe, scorer, prompts: Sequence[str], seeds: int, method: str, args, out: str, x0_decoder=None) -> List[Image.Image]:
    """Images in (seed, prompt) order; those already in `out` are read back, so a killed run resumes where it stopped."""
    update = {"skip_itrs": []} if method == "fixed" else {"skip_freq": args.skip_freq}
    if method == "date_fast":
        update["x0_decoder"] = x0_decoder
    bar = tqdm(total=seeds * len(prompts), desc=method, file=sys.stdout, mininterval=5)
    for seed in range(seeds):
        folder = os.path.join(out, method, f"seed_{seed}")
        os.makedirs(folder, exist_ok=True)
        latents = initial_latents(pipe, len(prompts), seed)
        todo = pending(folder, range(len(prompts)))
        bar.update(len(prompts) - len(todo))
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start : start + args.batch_size]
            result = date.generate(pipe, [prompts[i] for i in batch], scorer, num_inference_steps=args.steps,
                                   guidance_scale=args.w, lr_upt_prompt=args.lr_upt_prompt,
                                   num_upt_prompt=args.num_upt_prompt, latents=latents[batch].to(pipe.device), **update)
            for index, image in zip(batch, result.images):
                save_image(image, image_path(folder, index))
            bar.update(len(batch))
    bar.close()
    return [Image.open(image_path(os.path.join(out, method, f"seed_{seed}"), i)).convert("RGB")
            for seed in range(seeds) for i in range(len(prompts))]


@torch.no_grad()
def clip_scores(scorer, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
    pixels = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    return np.concatenate([scorer.score(pixels[i : i + 256], prompts[i : i + 256]).cpu().numpy() for i in range(0, len(images), 256)])


def part_values(verdicts: Sequence[Verdict], part: str) -> np.ndarray:
    """0/1 per image for one part of the verdict; positions only over captions that have one (NaN elsewhere)."""
    if part == "no_extra":
        return np.array([v.extra_objects == 0 for v in verdicts], dtype=float)
    if part == "positions":
        return np.array([np.nan if v.positions is None else float(v.positions) for v in verdicts])
    return np.array([getattr(v, part) for v in verdicts], dtype=float)


def per_prompt(values: np.ndarray, prompt_count: int) -> np.ndarray:
    """Average over seeds: images are stored seed-major, so (seeds × prompts) -> one value per prompt."""
    return values.reshape(-1, prompt_count).mean(0)


def summarize(judged: Judged, prompts: Sequence[str], reference_features: np.ndarray, feature_net: FeatureNet) -> Dict:
    ok = np.array([v.ok for v in judged.verdicts], dtype=float)
    accuracy = mean_with_ci(per_prompt(ok, len(prompts)))
    templates = [parse(p).template for p in prompts] * (len(ok) // len(prompts))
    two_object = np.array([parse(p).objects[1:] != () for p in prompts] * (len(ok) // len(prompts)))
    parts = {}
    for part in PARTS:
        values = part_values(judged.verdicts, part)
        parts[part] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else None
    return {
        "exact_accuracy": accuracy.mean,
        "ci95": [accuracy.low, accuracy.high],
        "n": len(ok),
        "prompts": len(prompts),
        "single_object_accuracy": float(ok[~two_object].mean()) if np.any(~two_object) else None,
        "two_object_accuracy": float(ok[two_object].mean()) if np.any(two_object) else None,
        "parts": parts,
        "templates": {t: float(ok[np.array(templates) == t].mean()) for t in dict.fromkeys(templates)},
        "clip_score": float(judged.clip_scores.mean()),
        "toy_fid": frechet_distance(embed_images(feature_net, judged.images), reference_features),
    }


def mcnemar(baseline: np.ndarray, method: np.ndarray) -> Dict:
    """Exact McNemar test on paired 0/1 outcomes: only the pairs where the two methods disagree carry information."""
    gained = int(np.sum((method == 1) & (baseline == 0)))
    lost = int(np.sum((method == 0) & (baseline == 1)))
    p = 1.0 if gained + lost == 0 else float(scipy_stats.binomtest(gained, gained + lost, 0.5).pvalue)
    return {"gained": gained, "lost": lost, "mcnemar_p": p}


def reference_features(feature_net: FeatureNet, count: int) -> np.ndarray:
    """Features of `count` freshly rendered world images (fixed seed, so every run compares with the same set)."""
    rng = np.random.default_rng(REFERENCE_SEED)
    images = [render(sample_pair(rng)[1]) for _ in tqdm(range(count), desc="reference", file=sys.stdout, mininterval=5)]
    return embed_images(feature_net, images)


def markdown(results: Dict, command: str) -> str:
    methods = [m for m in METHODS if m in results]
    fixed = results["fixed"]
    rows = [
        ("exact accuracy ↑", lambda r: f"{r['exact_accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"),
        ("single-object ↑", lambda r: _fmt(r["single_object_accuracy"])),
        ("two-object ↑", lambda r: _fmt(r["two_object_accuracy"])),
        *[(f"{part} ↑", lambda r, part=part: _fmt(r["parts"][part])) for part in PARTS],
        *[(f"template `{t}` ↑", lambda r, t=t: _fmt(r["templates"][t])) for t in fixed["templates"]],
        ("toy-CLIP score (h) ↑", lambda r: f"{r['clip_score']:.4f}"),
        ("toy FID ↓", lambda r: f"{r['toy_fid']:.3f}"),
    ]
    lines = [f"`{command}`", "", f"n = {fixed['n']} images per method ({fixed['prompts']} prompts × {fixed['n'] // fixed['prompts']} seeds)", "",
             "| metric | " + " | ".join(LABELS[m] for m in methods) + " |", "| --- |" + " --- |" * len(methods)]
    lines += [f"| {name} | " + " | ".join(cell(results[m]) for m in methods) + " |" for name, cell in rows]
    for method, paired in results["paired"].items():
        lines += ["", f"Paired on the same (prompt, seed), {LABELS[method]} − fixed: exact accuracy {paired['mean_diff']:+.3f} "
                  f"[{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}] (bootstrap over prompts); "
                  f"images fixed ✗ → ✓: {paired['gained']}, fixed ✓ → ✗: {paired['lost']}, "
                  f"exact McNemar p = {paired['mcnemar_p']:.3g}."]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def parse_args(argv: List[str] | None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", default=os.path.join(ASSETS, "prompts.csv"), help="CSV with a `caption` column")
    parser.add_argument("--seeds", type=cli.positive_int, default=1, help="initial noises per prompt")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--steps", type=cli.positive_int, default=50, help="DDIM steps")
    parser.add_argument("--w", type=float, default=8.0, help="classifier-free guidance scale")
    parser.add_argument("--skip_freq", type=cli.positive_int, default=10, help="update the embedding every k steps")
    parser.add_argument("--lr_upt_prompt", type=float, default=0.5, help="ρ, the DATE step size")
    parser.add_argument("--num_upt_prompt", type=cli.positive_int, default=1, help="gradient steps per update")
    parser.add_argument("--batch_size", type=cli.positive_int, default=100, help="prompts per sampling batch")
    parser.add_argument("--reference_images", type=cli.positive_int, default=2000, help="rendered images for toy FID")
    parser.add_argument("--model", default=os.path.join(ASSETS, "sd"), help="toy Stable Diffusion folder")
    parser.add_argument("--clip_model", default=os.path.join(ASSETS, "clip"), help="toy CLIP folder (h)")
    parser.add_argument("--fid_net", default=os.path.join(ASSETS, "fid_net"), help="toy FID feature network folder")
    parser.add_argument("--x0_decoder", default=os.path.join(ASSETS, "taesd"), help="tiny x̂0 decoder of date_fast")
    parser.add_argument("--methods", type=_methods, default=",".join(METHODS),
                        help=f"comma-separated, with fixed (the baseline): any of {','.join(METHODS)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    return parser.parse_args(argv)


def _methods(text: str) -> List[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if "fixed" not in methods or set(methods) - set(METHODS):
        raise argparse.ArgumentTypeError(f"must list fixed and any of {','.join(METHODS)}, got {text!r}")
    return [m for m in METHODS if m in methods]


def load_models(args):
    from diffusers import AutoencoderTiny, StableDiffusionPipeline

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError("--device cuda asked for, but no CUDA GPU is available (use --device cpu)")
    with loading("toy Stable Diffusion", args.model):
        pipe = StableDiffusionPipeline.from_pretrained(model_path(args.model)).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    scorer = date.CLIPScorer.from_pretrained(args.clip_model).to(args.device)
    if not os.path.isfile(os.path.join(args.fid_net, "config.json")):
        raise UserInputError(f"toy FID network not found: {args.fid_net}")
    x0_decoder = None
    if "date_fast" in args.methods:
        with loading("tiny x̂0 decoder", args.x0_decoder):
            x0_decoder = AutoencoderTiny.from_pretrained(model_path(args.x0_decoder)).to(args.device)
    return pipe, scorer, FeatureNet.from_pretrained(args.fid_net), x0_decoder


@exit_on_user_error
def main(argv: List[str] | None = None) -> Dict:
    args = parse_args(argv)
    prompts = read_captions(args.prompts)
    for index, prompt in enumerate(prompts):
        try:
            parse(prompt)
        except ValueError as e:
            raise UserInputError(f"{args.prompts}: caption {index}: {e}") from None
    pipe, scorer, feature_net, x0_decoder = load_models(args)
    # what changes the images: a folder made with other values is refused rather than mixed in (prompts: same prefix)
    config = {"settings": {k: getattr(args, k) for k in IMAGE_SETTINGS}}
    check_resumable(args.out, config, prompts)
    os.makedirs(args.out, exist_ok=True)
    write_config(args.out, config)
    write_captions(os.path.join(args.out, "subset.csv"), prompts)
    reference = reference_features(feature_net, args.reference_images)
    all_prompts = list(prompts) * args.seeds
    results: Dict = {}
    outcomes = {}
    for method in args.methods:
        images = generate_all(pipe, scorer, prompts, args.seeds, method, args, args.out, x0_decoder)
        verdicts = [check(image, prompt) for image, prompt in zip(images, all_prompts)]
        judged = Judged(verdicts, clip_scores(scorer, images, all_prompts), images)
        results[method] = summarize(judged, prompts, reference, feature_net)
        outcomes[method] = np.array([v.ok for v in verdicts], dtype=float)
    results["paired"] = {}
    for method in args.methods[1:]:
        paired = paired_comparison(per_prompt(outcomes[method], len(prompts)), per_prompt(outcomes["fixed"], len(prompts)))
        results["paired"][method] = {"mean_diff": paired.mean_diff, "ci95": [paired.low, paired.high],
                                     **mcnemar(outcomes["fixed"], outcomes[method])}
    results["settings"] = {k: getattr(args, k) for k in ("prompts", "seeds", "steps", "w", "skip_freq", "lr_upt_prompt",
                                                         "num_upt_prompt", "reference_images", "model", "clip_model", "x0_decoder",
                                                         "methods", "device")}
    command = "python evaluation/toy_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)

    def write_json(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)

    def write_md(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(markdown(results, command))

    atomic_write(os.path.join(args.out, "results.json"), write_json)
    atomic_write(os.path.join(args.out, "results.md"), write_md)
    print(markdown(results, command))
    return results


if __name__ == "__main__":
    main()
