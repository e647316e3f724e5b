"""Edit real images with DATE: edit-friendly DDPM inversion of each source image under its source prompt, then
regeneration with the target prompt, DATE updating the target embedding (h = `--h`, CLIP by default) at the update
steps of the regeneration; `--baseline` edits without DATE. `--edits FILE.csv` has the columns
`image,source_prompt,target_prompt` (image paths relative to the CSV); row k is written as `<k>.png`."""
import argparse
import copy
import os
import sys
from typing import List, Optional

from date.io.atomic import write_text
from date.io.edits import EDITS_RECORD, check_edits_record, check_image, edits_record, read_edits
from date.io.errors import StoppedRun, UserInputError, exit_on_user_error
from date.io.flags import non_negative_int, positive_float
from date.run.parser import generation_parser


def edit_parser():
    from date import editing as defaults

    p = generation_parser(__doc__)
    p.description = __doc__
    p.add_argument("--edits", required=True, help="CSV file with columns image,source_prompt,target_prompt "
                   "(image paths relative to the CSV)")
    p.add_argument("--skip", type=non_negative_int, default=defaults.SKIP,
                   help="regenerate the last N - skip of the N inversion steps (--steps)")
    p.add_argument("--cfg_src", type=positive_float, default=defaults.CFG_SRC, help="guidance scale of the inversion "
                   "(source prompt)")
    p.add_argument("--cfg_tar", type=positive_float, default=defaults.CFG_TAR, help="guidance scale of the "
                   "regeneration (target prompt), ≥ 1")
    p.add_argument("--eta", type=positive_float, default=defaults.ETA, help="η of the DDPM steps (1: DDPM)")
    p.add_argument("--zero_final_noise", action="store_true", help="as the official code: no noise map at the last "
                   "step (reconstruction is then not exact; see docs/editing.md)")
    p.add_argument("--h", default=None, help="clip, ir, pickscore, aesthetic, hps, or name:weight,... (default clip)")
    p.add_argument("--h_model", action="append", default=[], metavar="NAME=PATH_OR_ID",
                   help="model of an h (repeatable), e.g. clip=toy for the toy CLIP")
    p.add_argument("--fp16_clip", action="store_true", help="run the CLIP scorer in half precision")
    p.set_defaults(steps=defaults.NUM_STEPS, bs=1, text_path=None, ver_sd="1.4",  # the official model and steps
                   save_path="edit_images")
    p._option_string_actions["--steps"].help = "number of inversion steps N (default: 100, the official)"
    p._option_string_actions["--ver_sd"].help = "model shortcut (default: 1.4, the official code's)"
    p._option_string_actions["--skip_freq"].help = "update the embedding every skip_freq regeneration steps"
    for flag in ("--w", "--scheduler", "--size", "--text_path", "--images_per_caption", "--save_trajectory"):
        p._option_string_actions[flag].help = argparse.SUPPRESS  # generation's, refused here (`plan_edits`)
    return p


def plan_edits(args: argparse.Namespace):
    """The run's plan (`date.run.plan.plan_run`, with the edits' target prompts as its captions and the inversion's
    settings recorded), the edits, and the regeneration's update steps."""
    from date.run.methods import h_method
    from date.run.plan import plan_run
    from date.scorers import parse_sources

    for flag, what in (("w", "--cfg_tar"), ("scheduler", "the edit-friendly DDPM sampler (η = --eta)"),
                       ("size", "the model's image size (images are resized to it)")):
        if getattr(args, flag) not in (None, ""):
            raise UserInputError(f"--{flag} does not apply to editing: it uses {what}")
    if args.text_path is not None:
        raise UserInputError("--text_path does not apply to editing: the prompts come from --edits")
    if args.save_trajectory:
        raise UserInputError("--save_trajectory is not available for editing")
    if args.images_per_caption != 1:
        raise UserInputError("--images_per_caption does not apply to editing: one image per edit")
    if args.cfg_tar < 1:
        raise UserInputError(f"--cfg_tar must be ≥ 1, got {args.cfg_tar}")
    if args.skip >= args.steps:
        raise UserInputError(f"--skip {args.skip} leaves none of the {args.steps} steps to regenerate")
    if args.h is not None and args.baseline:
        raise UserInputError("--baseline edits without DATE: leave out --h")
    edits = read_edits(args.edits)
    limit = edits[: args.max_cnt]
    for index, edit in enumerate(limit[args.num_skip:], start=args.num_skip):
        check_image(edit.image, index)
    half = {"clip": args.fp16_clip, "ir": args.fp16 or args.dtype == "fp16"}
    method = h_method(args.h or "clip", parse_sources(args.h_model), half)
    # The plan's sampling steps are the regeneration's N − skip, so that its update steps (every --skip_freq-th, or
    # --skip_itrs) count regeneration steps and are checked against them; N, skip and the rest are the edit settings.
    regeneration = copy.copy(args)
    regeneration.steps, regeneration.w, regeneration.text_path = args.steps - args.skip, args.cfg_tar, args.edits
    settings = {"edit": {"method": "edit-friendly DDPM inversion", "inversion_steps": args.steps, "skip": args.skip,
                         "cfg_src": args.cfg_src, "cfg_tar": args.cfg_tar, "eta": args.eta,
                         "zero_final_noise": args.zero_final_noise}}
    plan = plan_run(regeneration, method, captions=[e.target_prompt for e in edits], extra_settings=settings,
                    folder_prefix=f"EDIT_N_{args.steps}_skip_{args.skip}_")
    if plan.family.name != "sd":
        raise UserInputError(f"editing supports Stable Diffusion 1.x/2.x models, not {plan.class_name}")
    check_edits_record(plan.folder, limit)
    return plan, limit


def run(args: argparse.Namespace) -> Optional[str]:
    """Edit (or resume editing) the images of one output folder; return its path (None for `--dry_run`)."""
    import torch
    from tqdm import tqdm

    from date import editing
    from date.io import outputs
    from date.io.claims import Claims
    from date.io.devices import pick_device
    from date.io.seeding import image_generator
    from date.run.loading import DTYPES, load_pipeline, load_x0_decoder, quiet_loading

    # 1. The plan: every check that needs no weights (flags, edits file, images, models, folder).
    plan, edits = plan_edits(args)
    if args.dry_run:
        steps, skip = args.steps, args.skip
        todo = len(outputs.pending(plan.folder, plan.images()))
        print(f"would edit {todo} of {len(plan.images())} images ({len(edits)} edits from {args.edits}) with "
              f"{plan.class_name} from {plan.model}, " + ("no DATE (baseline)" if args.baseline else
                                                          f"DATE {plan.method.prefix}, updates at regeneration steps "
                                                          f"{list(plan.update_steps)}")
              + f", inversion {steps} steps (cfg_src {args.cfg_src}, eta {args.eta}), regeneration of the last "
              f"{steps - skip} (cfg_tar {args.cfg_tar}), into {plan.folder}")
        return None

    # 2. Models.
    quiet_loading()
    device = pick_device(args.device)
    dtype = DTYPES[plan.dtype]
    pipe = load_pipeline(plan.model, plan.class_name, None, dtype, device)
    plan = plan.for_pipeline(pipe)
    scorer = plan.method.load_scorer().to(device) if plan.with_h else None
    decoder = load_x0_decoder(plan.x0_decoder, dtype, device) if plan.x0_decoder else None

    # 3. The folder: refuse one made with other settings or edits, else record this run.
    record = plan.record(device, 1)
    outputs.check_resumable(plan.folder, record, list(plan.captions))
    check_edits_record(plan.folder, edits)
    os.makedirs(plan.folder, exist_ok=True)
    outputs.write_config(plan.folder, record)
    outputs.record_captions(plan.folder, plan.captions)
    record_path = os.path.join(plan.folder, EDITS_RECORD)
    if not os.path.exists(record_path) or len(open(record_path, encoding="utf-8").read().splitlines()) <= len(edits):
        write_text(record_path, edits_record(edits))
    print(f"saving edits to {plan.folder}", file=sys.stderr)

    # 4. The pending edits, a batch at a time, each image written atomically.
    queue = outputs.pending(plan.folder, plan.images())
    size = plan.size
    try:
        with Claims(plan.folder) as claims, tqdm(total=len(queue), unit="img", desc="EDIT") as bar:
            while queue:
                batch, queue = claims.take(queue, args.bs)
                if not batch:
                    break
                images = []
                for k in batch:
                    image = check_image(edits[k].image, k)
                    if image.size != (size, size):
                        crop = "center-cropped to a square and " if image.size[0] != image.size[1] else ""
                        print(f"note: edit {k}: image {os.path.basename(edits[k].image)} is {image.size[0]}×"
                              f"{image.size[1]}, {crop}resized to the model's {size}×{size}", file=sys.stderr)
                    images.append(image)
                output = editing.edit(
                    pipe, images, [edits[k].source_prompt for k in batch], [edits[k].target_prompt for k in batch],
                    scorer, num_inference_steps=args.steps, skip=args.skip, cfg_src=args.cfg_src,
                    cfg_tar=args.cfg_tar, eta=args.eta, zero_final_noise=args.zero_final_noise,
                    generator=[image_generator(args.generate_seed, k) for k in batch],
                    skip_itrs=plan.update_steps, num_upt_prompt=args.num_upt_prompt,
                    lr_upt_prompt=args.lr_upt_prompt, weight_prior=args.weight_prior, init_org=args.init_org,
                    update_batch_size=1 if args.lean else args.update_bs,
                    gradient_checkpointing=args.grad_ckpt or args.lean, x0_decoder=decoder,
                    update_pooled=args.update_pooled)
                for j, k in enumerate(batch):
                    outputs.save_image(output.images[j], outputs.image_path(plan.folder, k))
                claims.release(batch)
                bar.update(len(batch))
    except KeyboardInterrupt:
        done = len(plan.images()) - len(outputs.pending(plan.folder, plan.images()))
        raise StoppedRun(f"interrupted: {done} of {len(plan.images())} edits are in {plan.folder}; run the same "
                         "command again to resume", 130) from None
    except torch.cuda.OutOfMemoryError:
        raise StoppedRun(f"error: out of GPU memory at --bs {args.bs} on {device}; use a smaller --bs, --update_bs 1 "
                         "or --lean (same images, less memory)", 1) from None
    return plan.folder


@exit_on_user_error
def main(argv: Optional[List[str]] = None) -> None:
    run(edit_parser().parse_args(argv))


if __name__ == "__main__":
    main()
