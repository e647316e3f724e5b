"""What a generation script runs: DATE with an evaluation function h, or a baseline under the same harness.

Every script reaches its scorer by one route, `h_method`: the paper scripts name their h and its model by their own
flags (`--clip_model`, `--ir_model`), `generate_date.py` by `--h` and `--h_model`.
"""
import dataclasses
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
    steer: Optional[Callable] = None  # (pipe, prompts, **sampling kwargs) -> context manager giving pipeline kwargs:
    #                                   a latent update before every step, riding on DATE's or fixed sampling (A&E, CONFORM)
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
    if args.method == "ebca":
        return ebca_method(args)
    if args.method.partition("+")[0] in STEERED:
        return steered_method(args)
    return ug_method(args, _date_method(args)) if args.method == "ug" else _date_method(args)


def _date_method(args) -> Method:
    """DATE with the h of `--h` and `--h_model` (default: CLIP)."""
    from date.scorers import parse_sources

    half = {"clip": args.fp16_clip, "ir": args.fp16 or args.dtype == "fp16"}
    return h_method(args.h or "clip", parse_sources(args.h_model), half)


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


STEERED = {"ae": "AE", "conform": "CONFORM"}  # --method: folder prefix
OFFICIAL_W = 7.5  # both official pipelines' guidance scale


def steered_method(args) -> Method:
    """Attend-and-Excite or CONFORM (`--method ae|conform`): the latent update before every step
    (`date.methods.latent_steering`), on fixed sampling, or with `+date` on DATE's (the embedding updated by h as
    `--method date` does). Each caption's concepts come from the caption file (`date.io.concepts`), checked here, so
    that a dry run refuses captions without them. Guidance defaults to the official w = 7.5."""
    from date.methods import latent_steering

    base, _, with_date = args.method.partition("+")
    if not with_date and (args.h is not None or args.h_model):
        raise UserInputError(f"--method {base} uses no evaluation function: leave out --h and --h_model, or use "
                             f"--method {base}+date")
    settings, update = _steering(args, base)
    concepts = caption_concepts(args.text_path, args.max_cnt)
    if args.w is None:
        args.w = OFFICIAL_W

    def check(family, scheduler: str, guidance_scale: float) -> None:
        if family.name != "sd":
            raise UserInputError(f"--method {args.method} needs an SD 1.x/2.x pipeline (a UNet with one text "
                                 f"encoder), not {family.pipelines[0]}")

    def steer(pipe, prompts, **sampling):
        return latent_steering.steered(pipe, prompts, [concepts[prompt] for prompt in prompts],
                                       functools.partial(update, settings), settings.attention_res, **sampling)

    record = {"name": base, **{key: ({str(k): v for k, v in value.items()} if isinstance(value, dict)
                                     else list(value) if isinstance(value, tuple) else value)
                               for key, value in dataclasses.asdict(settings).items()}}
    if not with_date:
        return Method(prefix=STEERED[base], name=base, settings=record, check=check, steer=steer)
    dated = _date_method(args)
    return Method(prefix=f"{STEERED[base]}_{dated.prefix}", name=args.method, scorer_model=dated.scorer_model,
                  scorer_half=dated.scorer_half, load_scorer=dated.load_scorer, sources=dated.sources, settings=record,
                  check=check, steer=steer)


def _steering(args, base: str):
    """The method's settings from its flags (official defaults where a flag is not given) and its update."""
    from date.methods import attend_excite, conform

    given = {key: value for key, value in dict(max_iter_to_alter=args.max_iter_to_alter, scale_factor=args.scale_factor,
                                               attention_res=args.attention_res).items() if value is not None}
    if base == "ae":
        return attend_excite.Settings(**given, thresholds=args.thresholds,
                                      max_refinement_steps=args.refinement_steps), attend_excite.AttendExcite
    return conform.Settings(**given, refinement_steps=args.refinement_steps,
                            iterative_refinement_steps=args.iterative_refinement_steps, temperature=args.temperature,
                            softmax_normalize=args.softmax_normalize), conform.Conform


def caption_concepts(path: str, max_count: int) -> Dict[str, Tuple[str, str]]:
    """caption -> its two concepts, for the first `max_count` captions: the file's `concepts` column where it has
    one, else read off the caption's grammar. A caption listed twice must name the same concepts both times."""
    from date.io.captions import read_captions, read_column
    from date.io.concepts import concepts

    captions = read_captions(path, max_count)
    fields = read_column(path, "concepts", max_count) or [None] * len(captions)
    table: Dict[str, Tuple[str, str]] = {}
    for caption, named in zip(captions, fields):
        pair = concepts(caption, named or None)  # an empty field: read off the caption
        if table.setdefault(caption, pair) != pair:
            raise UserInputError(f"the caption {caption!r} is listed with concepts {table[caption]} and {pair}; "
                                 "one caption, one pair of concepts")
    return table
