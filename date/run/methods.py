"""What a generation script runs: DATE with an evaluation function h, or a baseline under the same harness.

Every script reaches its scorer by one route, `h_method`: the paper scripts name their h and its model by their own
flags (`--clip_model`, `--ir_model`), `generate_date.py` by `--h` and `--h_model`.
"""
import functools
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch

from date.io.errors import UserInputError
from date.run.loading import TOY_MODELS
from date.scorers.base import Scorer


@dataclass(frozen=True)
class Method:
    """What differs between methods: the output folder's prefix, what config.json records, how h is loaded, and for a
    baseline how it samples."""

    prefix: str  # DATE_CLIP, DATE_CLIP1_IR0.5, UG_CLIP, EBCA, ...
    scorer_model: Optional[str] = None  # recorded as the scorer model
    scorer_half: bool = False  # h in half precision
    load_scorer: Optional[Callable[[], Scorer]] = None  # None: a method without h (EBCA)
    sources: Tuple[str, ...] = ()  # model paths checked before anything loads
    settings: Optional[Mapping] = None  # a baseline's name and settings, recorded in config.json
    around: Optional[Callable] = None  # (pipe, guidance scale) -> context manager the sampling runs in
    check: Optional[Callable] = None  # (family, sampler name, guidance scale) -> None; raises what it cannot run
    sample: Optional[Callable] = None  # a baseline's sampling function in place of DATE's (pipe, prompts, scorer, ...)
    name: str = field(default="date")  # what the dry run calls it

    @property
    def updates_embedding(self) -> bool:
        """DATE's own embedding updates (not a baseline's sampling)."""
        return self.load_scorer is not None and self.sample is None


def h_method(h: str, sources: Dict[str, str], half: Dict[str, bool]) -> Method:
    """DATE with h = `h`, a name or `name:weight,...` (Σ weight·h_name). `sources` maps source names (`date.scorers.H_MODELS`) to hub ids or local paths
    ('toy' for clip: the toy CLIP), `half` h names to half precision. One term of weight 1 is that h itself (same
    images, folder and record as its own script); anything else is `date.scorers.Weighted`."""
    from date.scorers import H_MODELS, Weighted, load_scorer, parse_h

    weights = parse_h(h)
    sources = {key: TOY_MODELS["clip"] if key == "clip" and path == "toy" else path for key, path in sources.items()}

    def load_one(name: str) -> Scorer:
        return load_scorer(name, sources, torch.float16 if half.get(name) else torch.float32)

    checked = tuple(path for key, path in sources.items() if key.split("_")[0] in weights)
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        (name,) = weights
        return Method(prefix=f"DATE_{name.upper()}", scorer_model=sources.get(name, H_MODELS[name][0]),
                      scorer_half=bool(half.get(name)), load_scorer=functools.partial(load_one, name), sources=checked)
    return Method(prefix="DATE_" + "_".join(f"{name.upper()}{weight:g}" for name, weight in weights.items()),
                  scorer_model=h, load_scorer=lambda: Weighted(weights, {n: load_one(n) for n in weights}),
                  sources=checked)


def method_from_flags(args) -> Method:
    """`generate_date.py`'s `--method`, `--h`, `--h_model` and the baselines' own flags."""
    from date.scorers import parse_sources

    if args.method == "ebca":
        return ebca_method(args)
    half = {"clip": args.fp16_clip, "ir": args.fp16 or args.dtype == "fp16"}
    method = h_method(args.h or "clip", parse_sources(args.h_model), half)
    return ug_method(args, method) if args.method == "ug" else method


def ebca_method(args) -> Method:
    """EBCA: no h; the pipeline's cross-attention layers update their context (`date.methods.ebca`)."""
    from date.methods.ebca import energy_cross_attention

    if args.h is not None or args.h_model:
        raise UserInputError("--method ebca uses no evaluation function: leave out --h and --h_model")

    def check(family, scheduler: str, guidance_scale: float) -> None:
        if family.name not in ("sd", "sdxl"):
            raise UserInputError(f"--method ebca needs a UNet pipeline (SD 1.x/2.x, SDXL), not {family.pipelines[0]}")

    def around(pipe, guidance_scale: float):
        return energy_cross_attention(pipe.unet, args.gamma_attn, args.gamma_norm)

    return Method(prefix="EBCA", name="ebca", around=around, check=check,
                  settings={"name": "ebca", "gamma_attn": args.gamma_attn, "gamma_norm": args.gamma_norm})


def ug_method(args, method: Method) -> Method:
    """Universal Guidance by the same h (`date.methods.universal_guidance`), flags named as in the official code."""
    from date.methods import universal_guidance

    backward = args.optim_max_iters if args.optim_backward_guidance else 0
    settings = {"name": "ug", "optim_forward_guidance_wt": args.optim_forward_guidance_wt,
                "optim_num_steps": args.optim_num_steps, "optim_backward_guidance": args.optim_backward_guidance,
                "optim_max_iters": backward, "optim_lr": args.optim_lr}
    sample = functools.partial(universal_guidance.generate, guidance_weight=args.optim_forward_guidance_wt,
                               recurrence=args.optim_num_steps, backward_steps=backward, backward_lr=args.optim_lr)

    def check(family, scheduler: str, guidance_scale: float) -> None:
        try:
            universal_guidance.check_settings(family.name, scheduler == "DDIM", guidance_scale)
        except ValueError as e:
            raise UserInputError(f"--method ug: {e}") from None

    return Method(prefix="UG_" + method.prefix.removeprefix("DATE_"), name="ug", scorer_model=method.scorer_model,
                  scorer_half=method.scorer_half, load_scorer=method.load_scorer, sources=method.sources,
                  settings=settings, check=check, sample=sample)
