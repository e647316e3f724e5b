"""A run as a plan: computed once from the flags, frozen, then read by the loop (`date.run.loop`).

`plan_run` makes every check that needs no model weights (flags, the caption file, model names, the pipeline class)
and is all that `--dry_run` does. `RunPlan.for_pipeline` then fills in what only the loaded pipeline tells (its default
steps, guidance and size, its sampler's name) together with everything derived from them: the update steps, the output
folder and the config record.
"""
import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from date.io import outputs
from date.io.captions import read_captions
from date.io.devices import pick_device
from date.io.errors import UserInputError
from date.io.loading import model_path
from date.io.seeding import RULE as SEEDING_RULE
from date.pipeline.families import Family, family_of
from date.pipeline.schedulers import ONE_CALL_PER_STEP
from date.run.loading import MODELS, pipeline_class, resolve_model, versions
from date.run.methods import Method
from date.sampling import update_steps


@dataclass(frozen=True)
class RunPlan:
    flags: argparse.Namespace  # a copy of the parsed flags, never written
    method: Method
    captions: Tuple[str, ...]
    model: str  # hub id or local folder
    class_name: str  # the pipeline class its model_index.json names
    family: Family
    x0_decoder: Optional[str]  # fast mode's tiny decoder
    dtype: str  # fp32, fp16 or bf16
    update_itrs: Optional[Tuple[int, ...]]  # --skip_itrs / --skip_intervals; None: every skip_freq-th step
    # known once the pipeline is loaded (`for_pipeline`)
    steps: Optional[int] = None
    w: Optional[float] = None
    size: Optional[int] = None
    scheduler: Optional[str] = None
    update_steps: Tuple[int, ...] = ()
    folder: Optional[str] = None

    @property
    def with_h(self) -> bool:
        """The run loads an evaluation function (DATE or UG, not the fixed-embedding baseline or EBCA)."""
        return not self.flags.baseline and self.method.load_scorer is not None

    @property
    def updates_embedding(self) -> bool:
        """DATE's own embedding updates run (not a baseline's sampling)."""
        return self.with_h and self.method.sample is None

    @property
    def prefix(self) -> str:
        return "FIXED" if self.flags.baseline else self.method.prefix

    def summary(self) -> str:
        """What the run would do, in one line (`--dry_run`)."""
        flags = self.flags
        todo = len(self.captions) - flags.num_skip
        method = "fixed embeddings" if flags.baseline else self.method.name
        return (f"would generate {todo} images ({len(self.captions)} captions from {flags.text_path}, first "
                f"{flags.num_skip} skipped) with {self.class_name} from {self.model}, method {method}"
                + (f", h from {self.method.scorer_model}" if self.with_h and self.method.scorer_model else "")
                + f", under {flags.save_path}")

    def for_pipeline(self, pipe) -> "RunPlan":
        """The plan completed with what the loaded pipeline tells: defaults, sampler, update steps, folder."""
        flags = self.flags
        defaults = self.family.defaults(pipe)
        steps = flags.steps or defaults.steps
        w = defaults.guidance_scale if flags.w is None else flags.w
        scheduler = flags.scheduler or self.family.default_scheduler or type(pipe.scheduler).__name__
        if self.updates_embedding:
            _check_update_itrs(self.update_itrs, steps, flags)
        model_tag = None
        if self.family.name != "sd":
            model_tag = flags.ver_sd if flags.model is None else os.path.basename(os.path.normpath(self.model))
        folder = os.path.join(flags.save_path, outputs.folder_name(self.prefix, scheduler, steps, w, flags.generate_seed,
                                                                   flags.name, self.x0_decoder, model_tag))
        return dataclasses.replace(self, steps=steps, w=w, size=flags.size or defaults.size, scheduler=scheduler,
                                   update_steps=tuple(sorted(update_steps(steps, flags.skip_freq, self.update_itrs))),
                                   folder=folder)

    def record(self, device, world_size: int) -> dict:
        """config.json: the settings that make the images (a folder is resumed only with the same ones), all flags,
        library versions and where it ran."""
        flags, method = self.flags, self.method
        update = None
        if self.updates_embedding:
            update = {"update_steps": list(self.update_steps), "num_upt_prompt": flags.num_upt_prompt,
                      "lr_upt_prompt": flags.lr_upt_prompt, "weight_prior": flags.weight_prior,
                      "init_org": flags.init_org, **({"x0_decoder": self.x0_decoder} if self.x0_decoder else {}),
                      **({"update_pooled": True} if flags.update_pooled else {})}
        settings = {"mode": self.prefix, "model": self.model, "scorer_model": method.scorer_model if self.with_h else None,
                    "steps": self.steps, "scheduler": self.scheduler, "w": self.w, "generate_seed": flags.generate_seed,
                    "seeding": SEEDING_RULE, "fp16": self.dtype == "fp16",
                    "fp16_scorer": None if flags.baseline else method.scorer_half, "update": update,
                    "pipeline": self.class_name, "dtype": self.dtype, "size": self.size,
                    **({"method": dict(method.settings)} if method.settings and not flags.baseline else {})}
        return {"settings": settings, "args": {**vars(flags), "steps": self.steps, "w": self.w},
                "versions": versions(), "device": str(device), "world_size": world_size}


def plan_run(args: argparse.Namespace, method: Method) -> RunPlan:
    """Every check that needs no model weights: flags, the caption file, model names, the pipeline class."""
    _check_flags(args)
    itrs = _update_itrs(args)
    captions = read_captions(args.text_path, args.max_cnt)
    if args.num_skip >= len(captions):
        raise UserInputError(f"--num_skip {args.num_skip} skips all {len(captions)} captions: nothing to generate")
    model = resolve_model(args.model, MODELS[args.ver_sd], "model")
    x0_decoder = resolve_model(args.x0_decoder, None, "x0_decoder")
    plan = RunPlan(flags=argparse.Namespace(**vars(args)), method=method, captions=tuple(captions), model=model,
                   class_name="", family=None, x0_decoder=x0_decoder,
                   dtype=args.dtype or ("fp16" if args.fp16 else "fp32"), update_itrs=itrs)
    if args.steps and plan.updates_embedding:
        _check_update_itrs(itrs, args.steps, args)
    if x0_decoder and not plan.with_h:
        raise UserInputError("--x0_decoder decodes x̂0 inside DATE's updates; this run makes none")
    if args.save_trajectory and not plan.updates_embedding:
        raise UserInputError("--save_trajectory shows DATE's embedding updates; this run makes none")
    for name in (model, x0_decoder, *(method.sources if plan.with_h else ())):
        if name and not os.path.isfile(name):
            model_path(name)
    class_name = pipeline_class(model)
    family = family_of(class_name)
    if family.name == "flux" and plan.dtype == "fp16":
        raise UserInputError("FLUX does not run in fp16; use --dtype bf16")
    if args.size and args.size % family.size_multiple:
        raise UserInputError(f"--size must be a multiple of {family.size_multiple} for {class_name}, got {args.size}")
    if args.scheduler and args.scheduler not in ONE_CALL_PER_STEP and plan.updates_embedding:
        raise UserInputError(f"--scheduler {args.scheduler} calls the denoiser more than once per step; DATE needs one "
                             f"({', '.join(ONE_CALL_PER_STEP)})")
    if args.scheduler and family.flow_matching:
        raise UserInputError(f"--scheduler {args.scheduler} does not fit {class_name}, a flow-matching model; "
                             "leave --scheduler out to use its own sampler")
    return dataclasses.replace(plan, class_name=class_name, family=family)


def _check_flags(args: argparse.Namespace) -> None:
    """Checks across flags (each flag's own range is checked by its type when parsed)."""
    if args.max_cnt == 0:
        raise UserInputError("--max_cnt 0 leaves nothing to generate")
    if args.fp16 and args.dtype not in (None, "fp16"):
        raise UserInputError(f"--fp16 and --dtype {args.dtype} disagree; give one of them")
    if args.lean and args.update_bs != "auto":
        raise UserInputError("--lean already sets --update_bs 1; give one of them")
    pick_device(args.device)


def _check_update_itrs(itrs: Optional[Tuple[int, ...]], steps: int, args: argparse.Namespace) -> None:
    """A DATE run whose update steps fall outside the sampling steps would be fixed sampling under DATE's name."""
    if itrs is None:
        return
    flag = "--skip_itrs" if args.skip_itrs else "--skip_intervals"
    outside = [i for i in itrs if i >= steps]
    if outside:
        raise UserInputError(f"{flag} {getattr(args, flag[2:])}: step {outside[0]} is outside the {steps} sampling steps "
                             f"(0 to {steps - 1})")


def _int_list(text: str, flag: str) -> List[int]:
    try:
        values = [int(v) for v in text.split("-")]
    except ValueError:
        raise UserInputError(f"{flag} must be integers joined by '-', got {text!r}") from None
    if any(v < 0 for v in values):
        raise UserInputError(f"{flag} must not contain negative steps, got {text!r}")
    return values


def _update_itrs(args: argparse.Namespace) -> Optional[Tuple[int, ...]]:
    if args.skip_itrs and args.skip_intervals:
        raise UserInputError("give --skip_itrs or --skip_intervals, not both")
    if args.skip_itrs:
        steps = _int_list(args.skip_itrs, "--skip_itrs")
        repeated = sorted({step for step in steps if steps.count(step) > 1})
        if repeated:
            raise UserInputError(f"--skip_itrs lists step {repeated[0]} more than once: {args.skip_itrs!r}")
        return tuple(steps)
    if args.skip_intervals:
        bounds = _int_list(args.skip_intervals, "--skip_intervals")
        if len(bounds) != 2 or bounds[0] >= bounds[1]:
            raise UserInputError(f"--skip_intervals must be 'a-b' with a < b, got {args.skip_intervals!r}")
        return tuple(range(*bounds))
    return None
