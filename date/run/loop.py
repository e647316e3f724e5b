"""The batch job behind every generation script: plan, load, then generate the pending images batch by batch.

A folder is resumable: images already there are skipped; each image is written atomically; image k's noise depends
on (seed, k) only (`date.io.seeding`), so files do not depend on the batch size or the number of processes.
"""
import contextlib
import os
import sys
from typing import List, Optional

import torch
from tqdm import tqdm

from date.io import outputs
from date.io.claims import Claims
from date.io.errors import StoppedRun
from date.io.seeding import ImageKey, image_generator
from date.io.sheets import trajectory_strip
from date.run import distributed
from date.run.loading import DTYPES, load_pipeline, load_x0_decoder, quiet_loading
from date.run.methods import Method
from date.run.plan import RunPlan, plan_run
from date.sampling import generate


def run(args, method: Method) -> Optional[str]:
    """Generate (or resume generating) the images of one output folder; return its path (None for `--dry_run`)."""
    # 1. The plan: every check that needs no weights.
    plan = plan_run(args, method)
    if args.dry_run:
        print(plan.summary())
        return None

    # 2. Models, then what only they tell (the default image size).
    quiet_loading()
    device = distributed.init(args.device)
    dtype = DTYPES[plan.dtype]
    pipe = load_pipeline(plan.model, plan.class_name, args.scheduler, dtype, device)
    plan = plan.for_pipeline(pipe)
    scorer = method.load_scorer().to(device) if plan.with_h else None
    decoder = load_x0_decoder(plan.x0_decoder, dtype, device) if plan.x0_decoder else None
    around = contextlib.nullcontext() if args.baseline or method.around is None else method.around(pipe, plan.w)

    # 3. The folder: refuse one made with other settings, else record this run (its caption record only grows).
    record = plan.record(device, distributed.world_size())
    outputs.check_resumable(plan.folder, record, list(plan.captions))
    if distributed.rank() == 0:
        _warn_long_captions(pipe.tokenizer, plan.captions)
        os.makedirs(plan.folder, exist_ok=True)
        outputs.write_config(plan.folder, record)
        outputs.record_captions(plan.folder, plan.captions)
        print(f"saving images to {plan.folder} ({plan.caption_source()})", file=sys.stderr)
    distributed.barrier()

    # 4. The images this process owns and has not written yet, a batch at a time, each claimed first so that other
    #    runs on the same folder take the others (`date.io.claims`).
    mine = plan.images()[distributed.rank()::distributed.world_size()]
    queue = outputs.pending(plan.folder, mine)
    try:
        with around, Claims(plan.folder) as claims, tqdm(total=len(queue), unit="img", desc=plan.prefix,
                                                         disable=distributed.rank() != 0) as bar:
            while queue:
                batch, queue = claims.take(queue, args.bs)
                if not batch:
                    break
                output = _generate_batch(plan, pipe, scorer, decoder, batch)
                _save_batch(plan, batch, output)
                claims.release(batch)
                bar.update(len(batch))
        if claims.elsewhere:
            first = os.path.basename(outputs.image_path(plan.folder, min(claims.elsewhere)))
            print(f"{len(claims.elsewhere)} images (first: {first}) are being made by another run "
                  f"in {plan.folder}; run the same command again once it ends to check the folder is complete",
                  file=sys.stderr)
    except KeyboardInterrupt:
        done = len(mine) - len(outputs.pending(plan.folder, mine))
        raise StoppedRun(f"interrupted: {done} of {len(mine)} images are in {plan.folder}; run the same command again "
                         "to resume", 130) from None
    except torch.cuda.OutOfMemoryError:
        raise StoppedRun(f"error: out of GPU memory at --bs {args.bs} on {device}; use a smaller --bs, --update_bs 1 "
                         "or --lean (same images, less memory)", 1) from None
    distributed.barrier()
    distributed.shutdown()
    return plan.folder


def _generate_batch(plan: RunPlan, pipe, scorer, decoder, batch: List[ImageKey]):
    """The pipeline's output for captions `batch`: a baseline's own sampling, or `date.generate` (fixed embeddings
    when the plan makes no update), with a method's latent update riding on it (`Method.steer`)."""
    flags = plan.flags
    prompts = [plan.caption_of(key) for key in batch]
    common = dict(num_inference_steps=plan.steps, guidance_scale=plan.w, height=plan.size, width=plan.size,
                  generator=[image_generator(flags.generate_seed, key) for key in batch],
                  **(dict(plan.family.exact_size) if flags.size else {}))
    if plan.method.sample is not None and not flags.baseline:
        return plan.method.sample(pipe, prompts, scorer, **common)
    steer = plan.method.steer if plan.method.steer is not None and not flags.baseline else None
    with steer(pipe, prompts, **common) if steer else contextlib.nullcontext({}) as steering:  # A&E's latent update
        return generate(pipe, prompts, scorer, skip_itrs=plan.update_steps, num_upt_prompt=flags.num_upt_prompt,
                        lr_upt_prompt=flags.lr_upt_prompt, weight_prior=flags.weight_prior, init_org=flags.init_org,
                        update_batch_size=1 if flags.lean else flags.update_bs,
                        gradient_checkpointing=flags.grad_ckpt or flags.lean, x0_decoder=decoder,
                        update_pooled=flags.update_pooled, trajectory=flags.save_trajectory, **common, **steering)


def _save_batch(plan: RunPlan, batch: List[ImageKey], output) -> None:
    """Each image (and its trajectory strip) written atomically: an interrupted run leaves whole files only."""
    prompts = [plan.caption_of(key) for key in batch]
    for k, key in enumerate(batch):
        path = outputs.image_path(plan.folder, key)
        if plan.flags.save_trajectory:
            title = f"{os.path.basename(path)} ({prompts[k]!r})"
            outputs.save_image(trajectory_strip(output.trajectory, k, title=title),
                               path.removesuffix(".png") + "_trajectory.png")
        outputs.save_image(output.images[k], path)


def _warn_long_captions(tokenizer, captions) -> None:
    for index, caption in enumerate(captions):
        if len(tokenizer(caption, verbose=False).input_ids) > tokenizer.model_max_length:  # ours only, not transformers'
            print(f"warning: caption {index} is longer than {tokenizer.model_max_length} tokens and is truncated",
                  file=sys.stderr)
