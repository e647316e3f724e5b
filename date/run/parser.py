"""The flags every generation script shares (the paper's command is the default), and the generation scripts'
parsers: `generate_date_clip.py`, `generate_date_ir.py`, `generate_date.py`."""
import argparse
import os

from date.io.devices import add_threads_flag, default_device
from date.io.flags import Parser, finite_float, non_negative_float, non_negative_int, positive_float, positive_int
from date.io.loading import ROOT
from date.memory import MicroBatch
from date.pipeline.schedulers import SCHEDULERS
from date.run.loading import DTYPES, MODELS


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
    p.add_argument("--images_per_caption", type=positive_int, default=1,
                   help="images per caption: 1 writes <k>.png, N > 1 writes <k>_<j>.png, j < N, each seeded by (seed, k, j)")
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
    p.add_argument("--device", default=default_device(), help="cuda or cpu")
    add_threads_flag(p)
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




def clip_parser(description: str) -> Parser:
    """`generate_date_clip.py`: h = CLIP similarity, named by OpenAI variant or model."""
    parser = generation_parser(description)
    parser.add_argument("--clip_type", default="clip-vit-large-patch14", help="OpenAI CLIP variant used as h")
    parser.add_argument("--clip_model", default=None, help="CLIP hub id or local dir ('toy'); overrides --clip_type")
    parser.add_argument("--fp16_clip", action="store_true", help="run the CLIP scorer in half precision")
    return parser


def image_reward_parser(description: str) -> Parser:
    """`generate_date_ir.py`: h = ImageReward."""
    parser = generation_parser(description)
    parser.add_argument("--ir_model", default="THUDM/ImageReward", help="hub id or local dir with ImageReward.pt and med_config.json")
    parser.add_argument("--ir_tokenizer", default="bert-base-uncased", help="hub id or local dir of the BERT tokenizer")
    return parser


def any_h_parser(description: str) -> Parser:
    """`generate_date.py`: any h (`--h`), or a baseline (`--method ug|ebca|ae|conform`, `ae+date`, `conform+date`) with
    the official flag names."""
    parser = generation_parser(description)
    parser.add_argument("--method", default="date", choices=["date", "ug", "ebca", "ae", "conform", "ae+date", "conform+date"],
                        help="date (default), ug, ebca, ae (Attend-and-Excite), conform (CONFORM), or ae+date / "
                             "conform+date (their latent update with DATE's embedding update); ae and conform sample "
                             "at w 7.5 unless --w is given")
    parser.add_argument("--h", default=None, help="clip, ir, pickscore, aesthetic, hps, ugclip, or name:weight,... (default clip)")
    parser.add_argument("--h_model", action="append", default=[], metavar="NAME=PATH_OR_ID",
                        help="model of an h (repeatable): clip, ir, ir_tokenizer, pickscore, pickscore_processor, "
                             "aesthetic, aesthetic_clip, hps; clip=toy is the toy CLIP")
    parser.add_argument("--fp16_clip", action="store_true", help="run the CLIP scorer in half precision")
    parser.add_argument("--optim_forward_guidance_wt", type=finite_float, default=5.0, help="UG: forward guidance weight s on L = -h (the official s weighs "
                        "-100*cos for CLIP: official s = 5 is 500 here with --h clip)")
    parser.add_argument("--optim_num_steps", type=positive_int, default=1, help="UG: self-recurrence steps k")
    parser.add_argument("--optim_backward_guidance", action="store_true", help="UG: backward guidance on x0 (latent)")
    parser.add_argument("--optim_max_iters", type=non_negative_int, default=1, help="UG: backward guidance Adam steps m")
    parser.add_argument("--optim_lr", type=positive_float, default=1e-2, help="UG: backward guidance learning rate")
    parser.add_argument("--gamma_attn", type=finite_float, default=0.01, help="EBCA: step of the attention term (official 0.01)")
    parser.add_argument("--gamma_norm", type=finite_float, default=0.02, help="EBCA: step of the norm prior (official 0.02)")
    parser.add_argument("--max_iter_to_alter", type=non_negative_int, default=None,
                        help="AE, CONFORM: update the latents in the first N steps (official: 25 for ae, 30 for conform)")
    parser.add_argument("--scale_factor", type=non_negative_float, default=20.0, help="AE, CONFORM: step size at step 0 "
                        "(then x sqrt of 1 -> 0.5 over the steps; official 20)")
    parser.add_argument("--attention_res", type=positive_int, default=16, help="AE, CONFORM: attention maps at the "
                        "largest resolution up to this (official 16)")
    parser.add_argument("--refinement_steps", type=non_negative_int, default=20, help="AE: at most, CONFORM: exactly "
                        "this many gradient steps at a refinement step (official 20)")
    parser.add_argument("--thresholds", type=_thresholds, default="0:0.05,10:0.5,20:0.8",
                        help="AE: step:threshold,... steps of iterative refinement, until each concept's largest "
                             "attention reaches the threshold (official 0:0.05,10:0.5,20:0.8)")
    parser.add_argument("--iterative_refinement_steps", type=_steps, default="0,10,20",
                        help="CONFORM: the steps with refinement (official 0,10,20)")
    parser.add_argument("--temperature", type=positive_float, default=0.5, help="CONFORM: NT-Xent temperature (official 0.5)")
    parser.add_argument("--softmax_normalize", action="store_true", help="CONFORM: softmax over the text tokens "
                        "(x100) before the loss (off in the official notebook; the pipeline's default)")
    return parser


def _thresholds(text: str) -> dict:
    try:
        pairs = [item.split(":") for item in text.split(",")] if text else []
        thresholds = {int(step): float(value) for step, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected step:threshold,... e.g. 0:0.05,10:0.5, got {text!r}") from None
    if any(step < 0 for step in thresholds) or not all(0 <= value <= 1 for value in thresholds.values()):
        raise argparse.ArgumentTypeError(f"steps must be >= 0 and thresholds in [0, 1], got {text!r}")
    return thresholds


def _steps(text: str) -> tuple:
    try:
        steps = tuple(sorted({int(step) for step in text.split(",")})) if text else ()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected steps separated by commas, e.g. 0,10,20, got {text!r}") from None
    if any(step < 0 for step in steps):
        raise argparse.ArgumentTypeError(f"steps must be >= 0, got {text!r}")
    return steps
