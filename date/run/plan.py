"""A run as a plan: computed once from the flags, frozen, then read by the loop (`date.run.loop`).

`plan_run` makes every check that needs no model weights (flags, the caption file, model names and config files, the
output folder and the record of a folder being resumed) and fixes everything they determine: steps, guidance, sampler,
update steps, the output folder. It is all that `--dry_run` does. `RunPlan.for_pipeline` adds the one thing only the
loaded pipeline tells (its default image size).
"""
import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple

from date.io import outputs
from date.io.captions import read_captions
from date.io.devices import pick_device
from date.io.errors import UserInputError
from date.io.loading import model_identity, model_path
from date.io.seeding import RULE as SEEDING_RULE, ImageKey
from date.pipeline.families import Family, family_of
from date.pipeline.schedulers import ONE_CALL_PER_STEP
from date.run.loading import MODELS, describe_model, resolve_model, versions
from date.run.methods import Method
from date.sampling import update_steps


@dataclass(frozen=True)
class RunPlan:
    flags: argparse.Namespace  # a copy of the parsed flags, never written
    method: Method
    captions: Tuple[str, ...]  # the first --max_cnt of the caption file's
    caption_count: int  # how many the caption file holds
    model: str  # hub id or local folder
    class_name: str  # the pipeline class its model_index.json names
    family: Family
    x0_decoder: Optional[str]  # fast mode's tiny decoder
    dtype: str  # fp32, fp16 or bf16
    steps: int
    w: float
    scheduler: str
    update_steps: Tuple[int, ...]
    folder: str
    size: Optional[int] = None  # known once the pipeline is loaded (`for_pipeline`)
    extra_settings: Optional[Mapping] = None  # another command's own settings (editing), recorded with the others

    @property
    def with_h(self) -> bool:
        """The run loads an evaluation function (DATE or UG, not the fixed-embedding baseline or EBCA)."""
        return _with_h(self.flags, self.method)

    @property
    def updates_embedding(self) -> bool:
        """DATE's own embedding updates run (not a baseline's sampling)."""
        return self.with_h and self.method.sample is None

    @property
    def prefix(self) -> str:
        return "FIXED" if self.flags.baseline else self.method.prefix

    def caption_source(self) -> str:
        """Which captions, e.g. `5000 of 10000 captions from subset.csv`."""
        count = len(self.captions)
        of = f"{count} of {self.caption_count}" if count < self.caption_count else f"all {count}"
        return f"{of} captions from {self.flags.text_path}"

    def images(self) -> List[ImageKey]:
        """Every image of the run, in order (captions after --num_skip, each --images_per_caption times)."""
        return outputs.image_keys(range(self.flags.num_skip, len(self.captions)), self.flags.images_per_caption)

    def caption_of(self, key: ImageKey) -> str:
        """The caption image `key` (k, or copy (k, j)) is made from."""
        return self.captions[key if isinstance(key, int) else key[0]]

    def summary(self) -> str:
        """What the run would do, in one line (`--dry_run`)."""
        flags = self.flags
        mine = self.images()
        todo = len(outputs.pending(self.folder, mine))
        method = "fixed embeddings" if flags.baseline else self.method.name
        return (f"would generate {todo} images ({self.caption_source()}, first {flags.num_skip} skipped, "
                f"{len(mine) - todo} already in the folder"
                + (f", {flags.images_per_caption} per caption" if flags.images_per_caption > 1 else "") + ")"
                + f" with {self.class_name} from {self.model}, method {method}"
                + (f", h from {self.method.scorer_model}" if self.with_h and self.method.scorer_model else "")
                + f", {self.steps} steps, w {self.w}, {self.scheduler}"
                + (f", updates at steps {list(self.update_steps)}" if self.updates_embedding else "")
                + f", into {self.folder}")

    def for_pipeline(self, pipe) -> "RunPlan":
        """The plan completed with the image size, which the loaded pipeline tells."""
        return dataclasses.replace(self, size=self.flags.size or self.family.defaults(pipe).size)

    def record(self, device, world_size: int) -> dict:
        """config.json: the settings that make the images (a folder is resumed only with the same ones; models by
        their identity, not their path), all flags, library versions and where it ran."""
        flags, method = self.flags, self.method
        update = None
        if self.updates_embedding:
            update = {"update_steps": list(self.update_steps), "num_upt_prompt": flags.num_upt_prompt,
                      "lr_upt_prompt": flags.lr_upt_prompt, "weight_prior": flags.weight_prior,
                      "init_org": flags.init_org,
                      **({"x0_decoder": model_identity(self.x0_decoder)} if self.x0_decoder else {}),
                      **({"update_pooled": True} if flags.update_pooled else {})}
        scorer_model = model_identity(method.scorer_model) if self.with_h and method.scorer_model else None
        settings = {"mode": self.prefix, "model": model_identity(self.model), "scorer_model": scorer_model,
                    "steps": self.steps, "scheduler": self.scheduler, "w": self.w, "generate_seed": flags.generate_seed,
                    "seeding": SEEDING_RULE, "fp16": self.dtype == "fp16",
                    "fp16_scorer": None if flags.baseline else method.scorer_half, "update": update,
                    "pipeline": self.class_name, "dtype": self.dtype, "size": self.size,
                    "images_per_caption": flags.images_per_caption,
                    **({"method": dict(method.settings)} if method.settings and not flags.baseline else {}),
                    **(dict(self.extra_settings) if self.extra_settings else {})}
        return {"settings": settings, "args": {**vars(flags), "steps": self.steps, "w": self.w},
                "versions": versions(), "device": str(device), "world_size": world_size}


def plan_run(args: argparse.Namespace, method: Method, captions: Optional[Sequence[str]] = None,
             extra_settings: Optional[Mapping] = None, folder_prefix: str = "") -> RunPlan:
    """Every check that needs no model weights, and everything they fix: flags, the caption file, model names and
    config files, the defaults, the update steps, the output folder and the record of a folder being resumed.
    Another command (`edit_date.py`) may give the captions itself (else they are read from --text_path), settings of
    its own to record and compare on resume, and a prefix of the output folder's name."""
    # 1. Flags and captions.
    _check_flags(args)
    itrs = _update_itrs(args)
    all_captions = list(captions) if captions is not None else read_captions(args.text_path)
    captions = all_captions[: args.max_cnt]
    if args.num_skip >= len(captions):
        raise UserInputError(f"--num_skip {args.num_skip} skips all {len(captions)} captions: nothing to generate")
    dtype = args.dtype or ("fp16" if args.fp16 else "fp32")
    with_h = _with_h(args, method)
    if args.x0_decoder and not with_h:
        raise UserInputError("--x0_decoder decodes x̂0 inside DATE's updates; this run makes none")
    if args.save_trajectory and not (with_h and method.sample is None):
        raise UserInputError("--save_trajectory shows DATE's embedding updates; this run makes none")

    # 2. Models, by their config files: the family and its defaults.
    model = resolve_model(args.model, MODELS[args.ver_sd], "model")
    x0_decoder = resolve_model(args.x0_decoder, None, "x0_decoder")
    for name in (x0_decoder, *(method.sources if with_h else ())):
        if name and not os.path.isfile(name):
            model_path(name)
    info = describe_model(model)
    family = family_of(info.class_name)
    if family.name == "flux" and dtype == "fp16":
        raise UserInputError("FLUX does not run in fp16; use --dtype bf16")
    if args.size and args.size % family.size_multiple:
        raise UserInputError(f"--size must be a multiple of {family.size_multiple} for {info.class_name}, got {args.size}")
    if args.scheduler and family.flow_matching:
        raise UserInputError(f"--scheduler {args.scheduler} does not fit {info.class_name}, a flow-matching model; "
                             "leave --scheduler out to use its own sampler")
    default_steps, default_w = family.sampling_defaults(info.pipeline, info.denoiser_config)
    steps = args.steps or default_steps
    w = default_w if args.w is None else args.w
    scheduler = args.scheduler or family.default_scheduler or info.scheduler

    # 3. What the method needs of them.
    if with_h and method.sample is None:
        if scheduler not in ONE_CALL_PER_STEP and args.scheduler:
            raise UserInputError(f"--scheduler {scheduler} calls the denoiser more than once per step; DATE needs one "
                                 f"({', '.join(ONE_CALL_PER_STEP)})")
        _check_update_itrs(itrs, steps, args)
    if method.check is not None and not args.baseline:
        method.check(family, scheduler, w)

    # 4. The output folder: writable, and resumable with these settings.
    model_tag = None
    if family.name != "sd":
        model_tag = args.ver_sd if args.model is None else os.path.basename(os.path.normpath(model))
    prefix = "FIXED" if args.baseline else method.prefix
    folder = os.path.join(args.save_path, folder_prefix + outputs.folder_name(
        prefix, scheduler, steps, w, args.generate_seed, args.name, x0_decoder, model_tag))
    plan = RunPlan(flags=argparse.Namespace(**vars(args)), method=method, captions=tuple(captions),
                   caption_count=len(all_captions), model=model, class_name=info.class_name, family=family,
                   x0_decoder=x0_decoder, dtype=dtype, steps=steps, w=w, scheduler=scheduler,
                   update_steps=tuple(sorted(update_steps(steps, args.skip_freq, itrs))), folder=folder,
                   extra_settings=extra_settings)
    outputs.check_writable(folder)
    outputs.check_resumable(folder, plan.record("", 1), list(captions), unknown=("size",))
    return plan


def _with_h(args: argparse.Namespace, method: Method) -> bool:
    return not args.baseline and method.load_scorer is not None


def _check_flags(args: argparse.Namespace) -> None:
    """Checks across flags (each flag's own range is checked by its type when parsed)."""
    if args.max_cnt == 0:
        raise UserInputError("--max_cnt 0 leaves nothing to generate")
    if args.fp16 and args.dtype not in (None, "fp16"):
        raise UserInputError(f"--fp16 and --dtype {args.dtype} disagree; give one of them")
    if args.name and (os.sep in args.name or "/" in args.name or args.name in (".", "..")):
        raise UserInputError(f"--name {args.name!r} is a suffix of the output folder's name, not a path; use "
                             "--save_path for the parent folder")
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
    if text.startswith("-") or "--" in text:
        raise UserInputError(f"{flag} must not contain negative steps, got {text!r}")
    try:
        values = [int(v) for v in text.split("-")]
    except ValueError:
        raise UserInputError(f"{flag} must be integers joined by '-', got {text!r}") from None
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
