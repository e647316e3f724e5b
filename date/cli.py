"""The generation command shared by generate_date_clip.py and generate_date_ir.py: flags, validation, the batch loop."""
import argparse
import contextlib
import dataclasses
import functools
import os
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from tqdm import tqdm

from . import distributed, outputs
from .errors import StoppedRun, UserInputError
from .families import PIPELINES
from .flags import Parser, finite_float, non_negative_float, non_negative_int, positive_int
from .loading import loading, model_path
from .memory import MicroBatch
from .prompts import read_captions, write_captions
from .sampling import generate, update_steps
from .schedulers import SCHEDULERS, make_scheduler
from .sheets import trajectory_strip
from .scorers.base import Scorer

MODELS = {  # --ver_sd: the official checkpoints of every supported family
    "1.4": "CompVis/stable-diffusion-v1-4",
    "1.5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "xl": "stabilityai/stable-diffusion-xl-base-1.0",
    "3-medium": "stabilityai/stable-diffusion-3-medium-diffusers",
    "3.5-medium": "stabilityai/stable-diffusion-3.5-medium",
    "3.5-large": "stabilityai/stable-diffusion-3.5-large",
    "flux-dev": "black-forest-labs/FLUX.1-dev",
    "flux-schnell": "black-forest-labs/FLUX.1-schnell",
    "pixart-alpha": "PixArt-alpha/PixArt-XL-2-1024-MS",
    "pixart-sigma": "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "assets")
TOY_MODELS = {"model": os.path.join(ASSETS, "toy", "sd"), "clip": os.path.join(ASSETS, "toy", "clip"),
              "x0_decoder": os.path.join(ASSETS, "toy", "taesd")}


@dataclass
class ScorerSpec:
    """What differs between the evaluation functions h: the folder prefix, what config.json records, how h is loaded."""

    prefix: str
    model: Optional[str]  # recorded as the scorer model
    half: bool
    load: Optional[Callable[[str, torch.dtype], Scorer]]  # None: a method without h (EBCA)
    sources: Optional[List[str]] = None  # model paths checked before anything loads (default: [model])
    method: Optional[dict] = None  # a baseline method's name and settings, recorded in config.json
    around: Optional[Callable] = None  # (pipe) -> context manager the sampling runs in (the method's processors)
    sample: Optional[Callable] = None  # a baseline's sampling function in place of DATE's (pipe, prompts, scorer, ...)


def ebca_spec(args) -> ScorerSpec:
    """EBCA: no h; the pipeline's cross-attention layers update their context (`date.methods.ebca`)."""
    from .methods.ebca import energy_cross_attention

    if args.h is not None or args.h_model:
        raise UserInputError("--method ebca uses no evaluation function: leave out --h and --h_model")
    settings = {"name": "ebca", "gamma_attn": args.gamma_attn, "gamma_norm": args.gamma_norm}

    def around(pipe):
        if not hasattr(pipe, "unet"):
            raise UserInputError(f"--method ebca needs a UNet pipeline (SD 1.x/2.x, SDXL), not {type(pipe).__name__}")
        return energy_cross_attention(pipe.unet, args.gamma_attn, args.gamma_norm)

    return ScorerSpec("EBCA", None, False, None, [], settings, around)


def h_spec(args) -> ScorerSpec:
    """`--h SPEC` and `--h_model NAME=PATH_OR_ID` as a ScorerSpec. One term of weight 1 is that h itself (same images,
    folder and record as its own script); anything else is `date.scorers.Weighted`."""
    from .scorers import H_MODELS, Weighted, load_scorer, parse_h, parse_sources

    if args.method == "ebca":
        return ebca_spec(args)
    weights = parse_h(args.h or "clip")
    sources = parse_sources(args.h_model)
    if sources.get("clip") == "toy":
        sources["clip"] = TOY_MODELS["clip"]
    half = {"clip": args.fp16_clip, "ir": args.fp16 or args.dtype == "fp16"}

    def load_one(name: str) -> Scorer:
        return load_scorer(name, sources, torch.float16 if half.get(name) else torch.float32)

    checked = [path for key, path in sources.items() if key.split("_")[0] in weights]
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        (name,) = weights
        model = sources.get(name, H_MODELS[name][0])
        spec = ScorerSpec(f"DATE_{name.upper()}", model, bool(half.get(name)), lambda model, torch_dtype: load_one(name), checked)
    else:
        prefix = "DATE_" + "_".join(f"{name.upper()}{weight:g}" for name, weight in weights.items())
        spec = ScorerSpec(prefix, args.h, False, lambda model, torch_dtype: Weighted(weights, {n: load_one(n) for n in weights}), checked)
    return ug_spec(args, spec) if args.method == "ug" else spec


def ug_spec(args, spec: ScorerSpec) -> ScorerSpec:
    """Universal Guidance by the same h (`date.methods.universal_guidance`), flags named as in the official code."""
    from .methods import universal_guidance

    backward = args.optim_max_iters if args.optim_backward_guidance else 0
    settings = {"name": "ug", "optim_forward_guidance_wt": args.optim_forward_guidance_wt,
                "optim_num_steps": args.optim_num_steps, "optim_backward_guidance": args.optim_backward_guidance,
                "optim_max_iters": backward, "optim_lr": args.optim_lr}
    sample = functools.partial(universal_guidance.generate, guidance_weight=args.optim_forward_guidance_wt,
                               recurrence=args.optim_num_steps, backward_steps=backward, backward_lr=args.optim_lr)

    def around(pipe):
        try:
            universal_guidance.check(pipe, args.w)
        except ValueError as e:
            raise UserInputError(f"--method ug: {e}") from None
        return contextlib.nullcontext()

    return dataclasses.replace(spec, prefix="UG_" + spec.prefix.removeprefix("DATE_"), method=settings, sample=sample,
                               around=around)


def generation_parser(description: str) -> Parser:
    """Flags common to every DATE generation script; defaults are the paper's command."""
    p = Parser(description=description)
    p.add_argument("--steps", type=positive_int, default=None, help="number of sampling steps (default: 50 for SD 1.x/2.x, else the pipeline's)")
    p.add_argument("--scheduler", default=None, choices=sorted(SCHEDULERS),
                   help="sampler (default: DDIM for SD 1.x/2.x, else the model's own)")
    p.add_argument("--save_path", default="gen_images", help="parent folder of the output folder")
    p.add_argument("--bs", type=positive_int, default=4, help="images per batch (per process)")
    p.add_argument("--w", type=finite_float, default=None, help="guidance scale (default: 8 for SD 1.x/2.x, else the pipeline's)")
    p.add_argument("--size", type=positive_int, default=None, help="image height and width in pixels (default: the model's)")
    p.add_argument("--skip_freq", type=positive_int, default=10, help="update the embedding every skip_freq steps")
    p.add_argument("--num_upt_prompt", type=non_negative_int, default=1, help="gradient steps per update")
    p.add_argument("--lr_upt_prompt", type=non_negative_float, default=0.5, help="update size rho (norm of each step)")
    p.add_argument("--name", default=None, help="suffix of the output folder name")
    p.add_argument("--generate_seed", type=non_negative_int, default=6, help="seed; image k's noise depends on (seed, k) only")
    p.add_argument("--max_cnt", type=non_negative_int, default=5000, help="number of captions to use")
    p.add_argument("--text_path", default=os.path.join(ROOT, "subset.csv"),
                   help="CSV file with a 'caption' column (default: the bundled 5,000 COCO captions)")
    p.add_argument("--num_skip", type=non_negative_int, default=0, help="do not generate the first num_skip images")
    p.add_argument("--fp16", action="store_true", help="the pipeline in half precision (same as --dtype fp16)")
    p.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="the pipeline's precision (default fp32; bf16 for FLUX)")
    p.add_argument("--update_pooled", action="store_true", help="also update the pooled text embedding (SDXL, SD3, FLUX)")
    p.add_argument("--ver_sd", default="1.5", choices=list(MODELS), help="model shortcut (1.4, 1.5, xl, 3.5-large, flux-dev, ...)")
    p.add_argument("--model", default=None, help="pipeline hub id or local dir ('toy': the bundled toy model); overrides --ver_sd")
    p.add_argument("--skip_itrs", default="", help="update exactly at these steps, e.g. 0-10-20")
    p.add_argument("--skip_intervals", default="", help="update at steps a..b-1, e.g. 10-40")
    p.add_argument("--weight_prior", type=non_negative_float, default=0.0, help="weight of the L2 prior to the original embedding")
    p.add_argument("--init_org", action="store_true", help="each update starts from the original embedding")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    p.add_argument("--save_trajectory", action="store_true", help="also save <k>_trajectory.png per image: x̂0 before and "
                   "after every update, with h (one more decode per update; same images)")
    p.add_argument("--dry_run", action="store_true", help="check the flags, caption file and model names, say what "
                   "would run, and stop (loads no model, writes nothing)")
    p.add_argument("--baseline", action="store_true", help="fixed embeddings (no update, no scorer)")
    p.add_argument("--update_bs", type=_micro_batch, default="auto",
                   help="images per decoder + scorer backward in an update: 'auto' (fits 2.5x fixed sampling's peak) or a number (same images)")
    p.add_argument("--grad_ckpt", action="store_true", help="gradient checkpointing in UNet and decoder during updates (less memory, same images)")
    p.add_argument("--lean", action="store_true", help="least memory: --grad_ckpt and --update_bs 1 (same images, slower)")
    p.add_argument("--x0_decoder", default=None,
                   help="decode x0 inside updates with this tiny decoder (AutoencoderTiny hub id or local dir, e.g. "
                        "madebyollin/taesd; 'toy' for the toy model): fast mode; final images still use the pipeline's VAE")
    return p


def _micro_batch(text: str) -> MicroBatch:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a positive integer, got {text!r}")
    return value


def _int_list(text: str, flag: str) -> List[int]:
    try:
        values = [int(v) for v in text.split("-")]
    except ValueError:
        raise UserInputError(f"{flag} must be integers joined by '-', got {text!r}") from None
    if any(v < 0 for v in values):
        raise UserInputError(f"{flag} must not contain negative steps, got {text!r}")
    return values


def _update_itrs(args) -> Optional[List[int]]:
    if args.skip_itrs and args.skip_intervals:
        raise UserInputError("give --skip_itrs or --skip_intervals, not both")
    if args.skip_itrs:
        return _int_list(args.skip_itrs, "--skip_itrs")
    if args.skip_intervals:
        bounds = _int_list(args.skip_intervals, "--skip_intervals")
        if len(bounds) != 2 or bounds[0] >= bounds[1]:
            raise UserInputError(f"--skip_intervals must be 'a-b' with a < b, got {args.skip_intervals!r}")
        return list(range(*bounds))
    return None


def _validate(args) -> None:
    """Checks across flags (each flag's own range is checked by its type when parsed)."""
    if args.max_cnt == 0:
        raise UserInputError("--max_cnt 0 leaves nothing to generate")
    if args.fp16 and args.dtype not in (None, "fp16"):
        raise UserInputError(f"--fp16 and --dtype {args.dtype} disagree; give one of them")
    if args.lean and args.update_bs != "auto":
        raise UserInputError("--lean already sets --update_bs 1; give one of them")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UserInputError(f"--device must be cpu, cuda or cuda:<index>, got {args.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda asked for, but no CUDA GPU is available (use --device cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserInputError(f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type not in ("cpu", "cuda"):
        raise UserInputError(f"--device must be cpu, cuda or cuda:<index>, got {args.device!r}")


def resolve_model(name: Optional[str], default: Optional[str], toy_key: str) -> Optional[str]:
    """A hub id or local dir; 'toy' means the bundled toy model."""
    return TOY_MODELS[toy_key] if name == "toy" else (name or default)


def pipeline_class(name: str) -> str:
    """The pipeline class a model folder or hub repo declares in its model_index.json, checked against the families."""
    from diffusers import DiffusionPipeline

    with loading("pipeline", name):
        class_name = DiffusionPipeline.load_config(model_path(name))["_class_name"]
    family_of_class(class_name)
    return class_name


def family_of_class(class_name: str):
    if class_name not in PIPELINES:
        raise UserInputError(f"DATE does not support {class_name}; supported pipelines: {', '.join(sorted(PIPELINES))}")
    return PIPELINES[class_name]


def load_pipeline(name: str, class_name: str, scheduler: Optional[str], dtype: torch.dtype, device: torch.device):
    import diffusers

    family = family_of_class(class_name)
    extra = {"safety_checker": None, "requires_safety_checker": False} if family.name == "sd" else {}
    with loading(f"{class_name}", name):
        pipe = getattr(diffusers, class_name).from_pretrained(model_path(name), dtype=dtype, **extra)
    scheduler = scheduler or family.default_scheduler
    if scheduler:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_x0_decoder(name: str, half: bool, device: torch.device):
    from diffusers import AutoencoderTiny

    with loading("tiny decoder", name):
        decoder = AutoencoderTiny.from_pretrained(model_path(name), dtype=torch.float16 if half else torch.float32)
    return decoder.eval().to(device)


def image_generator(seed: int, index: int) -> torch.Generator:
    """Noise of image `index` depends only on (seed, index): identical files whatever the batch size or process count."""
    return torch.Generator(device="cpu").manual_seed((seed << 32) + index)


def _warn_long_captions(tokenizer, captions: List[str]) -> None:
    for index, caption in enumerate(captions):
        if len(tokenizer(caption).input_ids) > tokenizer.model_max_length:
            print(f"warning: caption {index} is longer than {tokenizer.model_max_length} tokens and is truncated",
                  file=sys.stderr)


@dataclass
class RunPlan:
    """What a run will do, checked before any model is loaded or any file written (all that `--dry_run` does)."""

    captions: List[str]
    model: str
    class_name: str
    x0_decoder: Optional[str]
    update_itrs: Optional[List[int]]
    with_h: bool

    def summary(self, args, spec: ScorerSpec) -> str:
        todo = len(self.captions) - args.num_skip
        method = "fixed embeddings" if args.baseline else (spec.method or {}).get("name", "date")
        return (f"would generate {todo} images ({len(self.captions)} captions from {args.text_path}, first "
                f"{args.num_skip} skipped) with {self.class_name} from {self.model}, method {method}"
                + (f", h from {spec.model}" if self.with_h and spec.model else "") + f", under {args.save_path}")


def plan_run(args, spec: ScorerSpec) -> RunPlan:
    """Every check that needs no model weights: flags, the caption file, model names, the pipeline class."""
    _validate(args)
    itrs = _update_itrs(args)
    captions = read_captions(args.text_path, args.max_cnt)
    if args.num_skip >= len(captions):
        raise UserInputError(f"--num_skip {args.num_skip} skips all {len(captions)} captions: nothing to generate")
    model = resolve_model(args.model, MODELS[args.ver_sd], "model")
    x0_decoder = resolve_model(args.x0_decoder, None, "x0_decoder")
    with_h = not args.baseline and spec.load is not None
    if x0_decoder and not with_h:
        raise UserInputError("--x0_decoder decodes x̂0 inside DATE's updates; this run makes none")
    if args.save_trajectory and (not with_h or spec.sample is not None):
        raise UserInputError("--save_trajectory shows DATE's embedding updates; this run makes none")
    for name in (model, x0_decoder, *(() if not with_h else spec.sources if spec.sources is not None else [spec.model])):
        if name and not os.path.isfile(name):
            model_path(name)
    class_name = pipeline_class(model)
    family = family_of_class(class_name)
    if family.name == "flux" and (args.dtype or ("fp16" if args.fp16 else "fp32")) == "fp16":
        raise UserInputError("FLUX does not run in fp16; use --dtype bf16")
    if args.size and args.size % family.size_multiple:
        raise UserInputError(f"--size must be a multiple of {family.size_multiple} for {class_name}, got {args.size}")
    if args.scheduler and family.flow_matching:
        raise UserInputError(f"--scheduler {args.scheduler} does not fit {class_name}, a flow-matching model; "
                             "leave --scheduler out to use its own sampler")
    return RunPlan(captions, model, class_name, x0_decoder, itrs, with_h)


def run(args, spec: ScorerSpec) -> Optional[str]:
    """Generate (or resume generating) the images of one output folder; return its path (None for `--dry_run`)."""
    plan = plan_run(args, spec)
    if args.dry_run:
        print(plan.summary(args, spec))
        return None
    captions, model, class_name, x0_decoder, itrs, with_h = (plan.captions, plan.model, plan.class_name, plan.x0_decoder,
                                                              plan.update_itrs, plan.with_h)
    _quiet_loading()
    family = family_of_class(class_name)
    dtype_name = args.dtype or ("fp16" if args.fp16 else "fp32")
    device = distributed.init(args.device)
    pipe = load_pipeline(model, class_name, args.scheduler, DTYPES[dtype_name], device)
    default_steps, default_w = family.cli_defaults(pipe)
    args.steps, args.w = args.steps or default_steps, default_w if args.w is None else args.w
    size = args.size or family.default_size(pipe)
    steps = sorted(update_steps(args.steps, args.skip_freq, itrs))
    scorer = None
    if with_h:
        scorer = spec.load(spec.model, torch_dtype=torch.float16 if spec.half else torch.float32).to(device)
    method = contextlib.nullcontext() if args.baseline or spec.around is None else spec.around(pipe)
    decoder = load_x0_decoder(x0_decoder, DTYPES[dtype_name], device) if x0_decoder else None

    prefix = "FIXED" if args.baseline else spec.prefix
    scheduler = args.scheduler or family.default_scheduler or type(pipe.scheduler).__name__
    model_tag = None if family.name == "sd" else (args.ver_sd if args.model is None else os.path.basename(os.path.normpath(model)))
    folder = os.path.join(args.save_path, outputs.folder_name(prefix, scheduler, args.steps, args.w, args.generate_seed,
                                                              args.name, x0_decoder, model_tag))
    update = None if not with_h or spec.sample is not None else {"update_steps": steps, "num_upt_prompt": args.num_upt_prompt,
                                         "lr_upt_prompt": args.lr_upt_prompt, "weight_prior": args.weight_prior,
                                         "init_org": args.init_org, **({"x0_decoder": x0_decoder} if x0_decoder else {}),
                                         **({"update_pooled": True} if args.update_pooled else {})}
    config = {
        "settings": {"mode": prefix, "model": model, "scorer_model": spec.model if with_h else None,
                     "steps": args.steps, "scheduler": scheduler, "w": args.w, "generate_seed": args.generate_seed,
                     "fp16": dtype_name == "fp16", "fp16_scorer": None if args.baseline else spec.half, "update": update,
                     "pipeline": class_name, "dtype": dtype_name, "size": size,
                     **({"method": spec.method} if spec.method and not args.baseline else {})},
        "args": vars(args),
        "versions": _versions(),
        "device": str(device),
        "world_size": distributed.world_size(),
    }
    outputs.check_resumable(folder, config, captions)
    if distributed.rank() == 0:
        _warn_long_captions(pipe.tokenizer, captions)
        os.makedirs(folder, exist_ok=True)
        outputs.write_config(folder, config)
        write_captions(os.path.join(folder, "subset.csv"), captions)
        print(f"saving images to {folder}", file=sys.stderr)
    distributed.barrier()

    mine = list(range(args.num_skip, len(captions)))[distributed.rank()::distributed.world_size()]
    todo = outputs.pending(folder, mine)
    try:
        with method, tqdm(total=len(todo), unit="img", disable=distributed.rank() != 0, desc=prefix) as bar:
            for start in range(0, len(todo), args.bs):
                batch = todo[start : start + args.bs]
                common = dict(num_inference_steps=args.steps, guidance_scale=args.w, height=size, width=size,
                              generator=[image_generator(args.generate_seed, i) for i in batch],
                              **(dict(family.exact_size) if args.size else {}))
                prompts = [captions[i] for i in batch]
                if spec.sample is not None and not args.baseline:
                    output = spec.sample(pipe, prompts, scorer, **common)
                else:
                    output = generate(
                        pipe, prompts, scorer, skip_itrs=steps, num_upt_prompt=args.num_upt_prompt,
                        lr_upt_prompt=args.lr_upt_prompt, weight_prior=args.weight_prior, init_org=args.init_org,
                        update_batch_size=1 if args.lean else args.update_bs, gradient_checkpointing=args.grad_ckpt or args.lean,
                        x0_decoder=decoder, update_pooled=args.update_pooled, trajectory=args.save_trajectory, **common,
                    )
                _save_batch(folder, batch, output, args.save_trajectory)
                bar.update(len(batch))
    except KeyboardInterrupt:
        done = len(mine) - len(outputs.pending(folder, mine))
        raise StoppedRun(f"interrupted: {done} of {len(mine)} images are in {folder}; run the same command again to "
                         "resume", 130) from None
    except torch.cuda.OutOfMemoryError:
        raise StoppedRun(f"error: out of GPU memory at --bs {args.bs} on {device}; use a smaller --bs, --update_bs 1 "
                         "or --lean (same images, less memory)", 1) from None
    distributed.barrier()
    distributed.shutdown()
    return folder


def _save_batch(folder: str, batch: List[int], output, trajectory: bool) -> None:
    """Each image (and its trajectory strip) written atomically: an interrupted run leaves whole files only."""
    for k, index in enumerate(batch):
        if trajectory:
            outputs.save_image(trajectory_strip(output.trajectory, k), os.path.join(folder, f"{index}_trajectory.png"))
        outputs.save_image(output.images[k], outputs.image_path(folder, index))


def _quiet_loading() -> None:
    """One progress bar (ours) rather than one per loaded component."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _versions() -> dict:
    import diffusers
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}
