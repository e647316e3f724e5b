"""DATE, fixed embeddings and the competing test-time methods in the toy world, where following the caption is checked exactly.

    python evaluation/toy_bench.py --text_path assets/toy/prompts.csv --seeds 2 --out runs/toy_bench

Methods (`--methods`, any subset): `fixed` embeddings (`--steps`), `fixed70` (fixed with 1.4 × `--steps`, 70 at the
default 50: the paper's row time-matched to DATE, which costs about 40% more), `ebca` (energy-based cross-attention, `--gamma_attn`, `--gamma_norm`), `ug` (Universal Guidance by
h = the toy CLIP, `--optim_forward_guidance_wt`, `--optim_num_steps`), `ae` and `conform` (Attend-and-Excite, CONFORM:
latent steps on the objects' attention maps, `--ae_scale_factor`, `--conform_scale_factor`), `date` (DATE ascending
h = the toy CLIP), `date_fast` (the same, x̂0 decoded inside updates by the tiny decoder `--x0_decoder`) and `ae+date`
(Attend-and-Excite's latent steps and DATE's embedding steps). All start from the same initial
noise for each (prompt, seed) and use the same toy Stable Diffusion. Each image is judged by `date.toy.check` (never
used for guidance). Writes `<out>/results.json` (keyed by method) and `<out>/results.md`: exact accuracy with a 95%
bootstrap interval over prompts, accuracy per part and per caption template, the mean toy-CLIP score, toy FID against
freshly rendered world images, the wall time per image, and paired comparisons on the same (prompt, seed) against
`fixed` and against `date` (exact McNemar test). Images go to `<out>/<method>/seed_<k>/<index>.png`; a rerun with the
same settings reuses the images already there (resume), other settings are refused. The tables keep the methods of
an earlier run in `<out>` with the same settings: a rerun with fewer `--methods` judges theirs again from the images
already there (nothing is generated for them) rather than dropping their rows.
"""
import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
from PIL import Image
from scipy import stats as scipy_stats
from tqdm import tqdm

import date
from date.io import flags
from date.io.errors import UserInputError, exit_on_user_error
from date.io.loading import loading, model_path
from date.io.atomic import atomic_write, write_text
from date.io.outputs import check_resumable, image_path, pending, save_image, write_config
from date.io.captions import read_captions, write_captions
from date.io.devices import add_threads_flag, pick_device
from date.io.seeding import RULE as SEEDING_RULE, image_generator
from date.run.loading import quiet_loading
from date.toy import SIZE, check
from evaluation.plots import save_figure
from evaluation.stats import paired_comparison
from evaluation.toy.methods import (AE_SCALE, BASELINES, CONFORM_SCALE, GAMMA_ATTN, GAMMA_NORM, IMAGE_SETTINGS,
                                    METHODS, UG_RECURRENCE, UG_WEIGHT, sampler)
from evaluation.toy.measures import (ASSETS, Judged, clip_scores, load_feature_net, per_prompt, reference_features,
                                     require_toy_captions, summarize)
from evaluation.toy.report import accuracy_figure, grid_rows, markdown, summarize_runs, write_grid


def initial_noise(pipe, prompt_count: int, seed: int) -> tuple[torch.Tensor, List[torch.Generator]]:
    """The same x_T for every method, drawn from the one seeding rule's generator of each (seed, prompt index); the
    generators go on to draw any per-step noise (Universal Guidance's), as in the generation scripts."""
    shape = (pipe.unet.config.in_channels, SIZE // pipe.vae_scale_factor, SIZE // pipe.vae_scale_factor)
    generators = [image_generator(seed, i) for i in range(prompt_count)]
    return torch.stack([torch.randn(shape, generator=g) for g in generators]), generators


def generate_all(sample: Callable, pipe, prompts: Sequence[str], seeds: int, method: str, batch_size: int,
                 out: str) -> List[Image.Image]:
    """Images in (seed, prompt) order; those already in `out` are read back, so a killed run resumes where it stopped.
    The seconds spent per image made are added up in `<out>/<method>/timing.json`."""
    bar = tqdm(total=seeds * len(prompts), desc=method, file=sys.stdout, mininterval=5)
    timing = Timing.read(os.path.join(out, method))
    for seed in range(seeds):
        folder = os.path.join(out, method, f"seed_{seed}")
        os.makedirs(folder, exist_ok=True)
        latents, generators = initial_noise(pipe, len(prompts), seed)
        todo = pending(folder, range(len(prompts)))
        bar.update(len(prompts) - len(todo))
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            began = time.perf_counter()
            images = sample([prompts[i] for i in batch], latents[batch].to(pipe.device), [generators[i] for i in batch])
            timing.add(time.perf_counter() - began, len(batch))
            for index, image in zip(batch, images):
                save_image(image, image_path(folder, index))
            bar.update(len(batch))
    bar.close()
    return [Image.open(image_path(os.path.join(out, method, f"seed_{seed}"), i)).convert("RGB")
            for seed in range(seeds) for i in range(len(prompts))]


@dataclass
class Timing:
    """Wall seconds over images generated, kept beside a method's images so that a resumed run still reports it."""

    folder: str
    seconds: float = 0.0
    images: int = 0

    @classmethod
    def read(cls, folder: str) -> "Timing":
        path = os.path.join(folder, "timing.json")
        if not os.path.isfile(path):
            return cls(folder)
        with open(path, encoding="utf-8") as f:
            return cls(folder, **json.load(f))

    def add(self, seconds: float, images: int) -> None:
        self.seconds, self.images = self.seconds + seconds, self.images + images

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"seconds": self.seconds, "images": self.images}, f)

        atomic_write(os.path.join(self.folder, "timing.json"), write)

    @property
    def seconds_per_image(self) -> float | None:
        return self.seconds / self.images if self.images else None


def mcnemar(baseline: np.ndarray, method: np.ndarray) -> Dict:
    """Exact McNemar test on paired 0/1 outcomes: only the pairs where the two methods disagree carry information."""
    gained = int(np.sum((method == 1) & (baseline == 0)))
    lost = int(np.sum((method == 0) & (baseline == 1)))
    p = 1.0 if gained + lost == 0 else float(scipy_stats.binomtest(gained, gained + lost, 0.5).pvalue)
    return {"gained": gained, "lost": lost, "mcnemar_p": p}


RESULT_SETTINGS = ("text_path", "seeds", "reference_images", *IMAGE_SETTINGS)  # what every number of a table depends on


def earlier_methods(out: str, settings: Dict) -> List[str]:
    """The methods of `<out>/results.json` when it was made with the same `settings` (else none): a rerun with fewer
    `--methods` keeps them in its tables, judged again from their images, instead of overwriting their rows."""
    path = os.path.join(out, "results.json")
    if not os.path.isfile(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            earlier = json.load(f)
    except (OSError, ValueError) as e:
        print(f"warning: {path} is unreadable ({e}); its methods are left out of the new tables", file=sys.stderr)
        return []
    same = all(earlier.get("settings", {}).get(k) == v for k, v in json.loads(json.dumps(settings)).items())
    return [m for m in METHODS if m in earlier] if same else []


def parse_args(argv: List[str] | None):
    parser = flags.Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--text_path", "--prompts", default=os.path.join(ASSETS, "prompts.csv"),
                        help="CSV with a `caption` column")
    parser.add_argument("--seeds", type=flags.positive_int, default=1, help="initial noises per prompt")
    parser.add_argument("--out", help="output folder (required, except with --summarize)")
    parser.add_argument("--summarize", metavar="PARENT", help="only draw PARENT/summary.png and .md from the benchmark "
                        "folders in PARENT (runs over several settings: ρ, update frequency, ...)")
    parser.add_argument("--steps", type=flags.positive_int, default=50, help="DDIM steps")
    parser.add_argument("--w", type=flags.finite_float, default=8.0, help="classifier-free guidance scale")
    parser.add_argument("--skip_freq", type=flags.positive_int, default=10, help="update the embedding every k steps")
    parser.add_argument("--lr_upt_prompt", type=flags.non_negative_float, default=0.5, help="ρ, the DATE step size")
    parser.add_argument("--num_upt_prompt", type=flags.positive_int, default=1, help="gradient steps per update")
    parser.add_argument("--bs", "--batch_size", type=flags.positive_int, default=100, help="prompts per sampling batch")
    parser.add_argument("--reference_images", type=flags.positive_int, default=2000, help="rendered images for toy FID")
    parser.add_argument("--model", default=os.path.join(ASSETS, "sd"), help="toy Stable Diffusion folder")
    parser.add_argument("--clip_model", default=os.path.join(ASSETS, "clip"), help="toy CLIP folder (h)")
    parser.add_argument("--fid_net", default=os.path.join(ASSETS, "fid_net"), help="toy FID feature network folder")
    parser.add_argument("--x0_decoder", default=os.path.join(ASSETS, "taesd"), help="tiny x̂0 decoder of date_fast")
    parser.add_argument("--gamma_attn", type=flags.finite_float, default=GAMMA_ATTN, help="EBCA: attention energy step")
    parser.add_argument("--gamma_norm", type=flags.finite_float, default=GAMMA_NORM, help="EBCA: context norm energy step")
    parser.add_argument("--optim_forward_guidance_wt", type=flags.finite_float, default=UG_WEIGHT,
                        help="Universal Guidance: forward guidance weight s")
    parser.add_argument("--optim_num_steps", type=flags.positive_int, default=UG_RECURRENCE,
                        help="Universal Guidance: self-recurrence k")
    parser.add_argument("--ae_scale_factor", type=flags.finite_float, default=AE_SCALE,
                        help="Attend-and-Excite: latent step size (official 20)")
    parser.add_argument("--conform_scale_factor", type=flags.finite_float, default=CONFORM_SCALE,
                        help="CONFORM: latent step size (official 20)")
    parser.add_argument("--methods", type=_methods, default=",".join(METHODS), help=f"comma-separated, any of {','.join(METHODS)}")
    parser.add_argument("--grid", type=flags.positive_int, default=12, help="prompts in grid.png (spread over the file)")
    parser.add_argument("--grid_indices", type=flags.index_list, default=None, help="grid.png's prompts instead, e.g. 3,17,42")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    add_threads_flag(parser)
    args = parser.parse_args(argv)
    if (args.out is None) == (args.summarize is None):
        parser.error("give --out (run the benchmark) or --summarize PARENT (draw earlier runs), not both")
    args.device = str(pick_device(args.device))
    return args


def _methods(text: str) -> List[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods or set(methods) - set(METHODS):
        raise argparse.ArgumentTypeError(f"must list some of {','.join(METHODS)}, got {text!r}")
    return [m for m in METHODS if m in methods]


def load_models(args):
    from diffusers import AutoencoderTiny, StableDiffusionPipeline

    quiet_loading()
    with loading("toy Stable Diffusion", args.model):
        pipe = StableDiffusionPipeline.from_pretrained(model_path(args.model)).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    scorer = date.CLIPScorer.from_pretrained(args.clip_model).to(args.device)
    feature_net = load_feature_net(args.fid_net)
    x0_decoder = None
    if "date_fast" in args.methods:
        with loading("tiny x̂0 decoder", args.x0_decoder):
            x0_decoder = AutoencoderTiny.from_pretrained(model_path(args.x0_decoder)).to(args.device)
    return pipe, scorer, feature_net, x0_decoder


@exit_on_user_error
def main(argv: List[str] | None = None) -> Dict:
    args = parse_args(argv)
    if args.summarize is not None:
        return summarize_runs(args.summarize)
    prompts = read_captions(args.text_path)
    require_toy_captions(prompts, args.text_path)
    if len(prompts) * args.seeds < 2:
        raise UserInputError("toy FID needs at least 2 images per method: give more captions or --seeds 2")
    grid = grid_rows(args, len(prompts))
    settings = {k: getattr(args, k) for k in RESULT_SETTINGS}
    kept = [m for m in earlier_methods(args.out, settings) if m not in args.methods]
    args.methods = [m for m in METHODS if m in args.methods or m in kept]
    pipe, scorer, feature_net, x0_decoder = load_models(args)
    # what changes the images: a folder made with other values is refused rather than mixed in (prompts: same prefix)
    config = {"settings": {"seeding": SEEDING_RULE, **{k: getattr(args, k) for k in IMAGE_SETTINGS}}}
    check_resumable(args.out, config, prompts)
    os.makedirs(args.out, exist_ok=True)
    write_config(args.out, config)
    write_captions(os.path.join(args.out, "subset.csv"), prompts)
    reference = reference_features(feature_net, args.reference_images)
    all_prompts = list(prompts) * args.seeds
    results: Dict = {}
    outcomes, verdicts = {}, {}
    for method in args.methods:
        sample = sampler(method, pipe, scorer, args, x0_decoder)
        images = generate_all(sample, pipe, prompts, args.seeds, method, args.bs, args.out)
        verdicts[method] = [check(image, prompt) for image, prompt in zip(images, all_prompts)]
        judged = Judged(verdicts[method], clip_scores(scorer, images, all_prompts), images)
        results[method] = summarize(judged, prompts, reference, feature_net)
        results[method]["seconds_per_image"] = Timing.read(os.path.join(args.out, method)).seconds_per_image
        outcomes[method] = np.array([v.ok for v in verdicts[method]], dtype=float)
    results["paired"] = {}
    for baseline in (b for b in BASELINES if b in outcomes):
        results["paired"][baseline] = {}
        for method in (m for m in args.methods if m not in BASELINES[: BASELINES.index(baseline) + 1]):
            paired = paired_comparison(per_prompt(outcomes[method], len(prompts)), per_prompt(outcomes[baseline], len(prompts)))
            results["paired"][baseline][method] = {"mean_diff": paired.mean_diff, "ci95": [paired.low, paired.high],
                                                   **mcnemar(outcomes[baseline], outcomes[method])}
    results["settings"] = {**settings, "bs": args.bs, "methods": args.methods, "kept_methods": kept, "device": args.device}
    command = "python evaluation/toy_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_text(os.path.join(args.out, "results.json"), json.dumps(results, indent=2))
    write_text(os.path.join(args.out, "results.md"), markdown(results, command))
    save_figure(accuracy_figure(results, args.methods), os.path.join(args.out, "accuracy.png"))
    write_grid(args.out, args.methods, prompts, grid, verdicts)
    print(markdown(results, command))
    return results


if __name__ == "__main__":
    main()
