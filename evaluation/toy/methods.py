"""The methods the toy benchmark compares, and the settings that define their images.

Every method samples the same toy Stable Diffusion from the same initial noise; they differ only in what they do
during sampling. The baselines' settings below were tuned on the tuning prompts (`evaluation/toy_tune.py`), never on
the benchmark's.
"""
from typing import Callable, List, Tuple

import torch
from PIL import Image

import date
from date.toy import parse

METHODS = ("fixed", "fixed70", "ebca", "ug", "ae", "conform", "date", "date_fast", "ae+date")
LABELS = {"fixed": "fixed", "fixed70": "fixed, 1.4 × steps", "ebca": "EBCA", "ug": "UG (h = toy CLIP)",
          "ae": "Attend-and-Excite", "conform": "CONFORM", "date": "DATE (h = toy CLIP)",
          "date_fast": "DATE fast (tiny x̂0 decoder)", "ae+date": "A&E + DATE (h = toy CLIP)"}
# the baselines' settings, tuned on the toy world's tuning prompts (assets/toy/tuning_prompts.csv; README, "Toy world")
GAMMA_ATTN, GAMMA_NORM = 0.001, 0.3  # official text-to-image values: 0.01, 0.02
UG_WEIGHT, UG_RECURRENCE = 30.0, 2  # official defaults: 5, 1
AE_SCALE, CONFORM_SCALE = 10.0, 2.0  # official scale_factor of both: 20
TIME_MATCHED = 70 / 50  # fixed70's steps per --steps: the paper's 70 against 50, DATE's extra time (about 40%)
BASELINES = ("fixed", "date")  # every other method is compared with these, paired
IMAGE_SETTINGS = ("steps", "w", "skip_freq", "lr_upt_prompt", "num_upt_prompt", "model", "clip_model", "x0_decoder",
                  "gamma_attn", "gamma_norm", "optim_forward_guidance_wt", "optim_num_steps", "ae_scale_factor",
                  "conform_scale_factor")


def toy_concepts(caption: str) -> Tuple[str, ...]:
    """The concept words of a toy caption for the attention methods: each named object's shape, the noun as in
    Attend-and-Excite's prompts ("a blue circle and a white circle": circle twice, one token each)."""
    return tuple(shape for _, shape in parse(caption).objects)


def _steered_sampler(method: str, pipe, scorer, common: dict, update: dict, args) -> Callable:
    """Attend-and-Excite or CONFORM (with DATE for `ae+date`), each at its official settings but the step size.
    Captions of one and of two objects are sampled apart (a batch has one number of concepts per image); each image
    is updated on its own, so this changes no image."""
    from date.methods import attend_excite, conform

    module, settings = ((conform, conform.Settings(scale_factor=args.conform_scale_factor)) if method == "conform" else
                        (attend_excite, attend_excite.Settings(scale_factor=args.ae_scale_factor)))
    h, extra = (scorer, update) if method == "ae+date" else (None, {})

    def sample(prompts: List[str], latents: torch.Tensor, generators: List[torch.Generator]) -> List[Image.Image]:
        concepts = [toy_concepts(prompt) for prompt in prompts]
        images: List[Image.Image] = [None] * len(prompts)
        for count in sorted({len(c) for c in concepts}):
            rows = [i for i, c in enumerate(concepts) if len(c) == count]
            out = module.generate(pipe, [prompts[i] for i in rows], h, concepts=[concepts[i] for i in rows],
                                  settings=settings, latents=latents[rows], generator=[generators[i] for i in rows],
                                  **common, **extra).images
            for i, image in zip(rows, out):
                images[i] = image
        return images

    return sample


def sampler(method: str, pipe, scorer, args, x0_decoder=None) -> Callable[[List[str], torch.Tensor, List[torch.Generator]], List[Image.Image]]:
    """(prompts, initial noise, generators) -> images of one method; every method shares the pipeline, w and noise."""
    from date.methods import ebca, universal_guidance

    steps = round(args.steps * TIME_MATCHED) if method == "fixed70" else args.steps
    common = {"num_inference_steps": steps, "guidance_scale": args.w}
    if method == "ug":
        return lambda prompts, latents, generators: universal_guidance.generate(
            pipe, prompts, scorer, guidance_weight=args.optim_forward_guidance_wt, recurrence=args.optim_num_steps,
            latents=latents, generator=generators, **common).images
    if method == "ebca":
        return lambda prompts, latents, generators: ebca.generate(
            pipe, prompts, gamma_attn=args.gamma_attn, gamma_norm=args.gamma_norm, latents=latents, **common).images
    update = {"skip_freq": args.skip_freq, "lr_upt_prompt": args.lr_upt_prompt, "num_upt_prompt": args.num_upt_prompt,
              "x0_decoder": x0_decoder if method == "date_fast" else None}
    if method in ("ae", "conform", "ae+date"):
        return _steered_sampler(method, pipe, scorer, common, update, args)
    h = None if method.startswith("fixed") else scorer
    return lambda prompts, latents, generators: date.generate(pipe, prompts, h, latents=latents, **common, **update).images
