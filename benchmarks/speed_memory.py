"""Seconds and peak memory of one batch: fixed embeddings, DATE, DATE --lean and DATE fast, in fp32 and fp16.

    python benchmarks/speed_memory.py --arch sd15 --device cuda --bs 8     # SD 1.5's architecture, random weights
    python benchmarks/speed_memory.py --arch toy --device cpu --bs 8       # the bundled toy model

Configurations (as the generation commands run them): `fixed` embeddings; `date`, the default (`--update_bs auto`);
`lean` (`--lean`: checkpointing in UNet and decoder, one image at a time through decoder + scorer); `fast`
(`--x0_decoder` with a tiny decoder and, on a GPU, `--fp16_clip`). The scorer is CLIP (ViT-L/14 for sd15) in fp32,
except in fast on a GPU.
Each configuration runs in a fresh process after one short warm-up batch, so that its peak is its own: on a GPU the
most memory allocated by tensors during the timed batch, on a CPU the process's maximum resident set (weights and
libraries included, so ratios there understate DATE's extra). Prints a markdown table and writes `--json`.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

from date.io import flags
from date.io.loading import ASSETS

TOY = os.path.join(ASSETS, "toy")
CONFIGS = {"fixed": "fixed embedding", "date": "DATE (update_bs auto)", "lean": "DATE --lean",
           "fast": "DATE fast (tiny x̂0 decoder, fp16 CLIP on GPU)"}
PROMPT = "a photograph of an astronaut riding a horse"


def load(arch: str, device, dtype, scorer_dtype):
    """(pipeline, CLIP scorer, tiny decoder) on `device`."""
    from date.scorers.clip import CLIPScorer

    if arch == "sd15":
        import sd15  # beside this script, which is run as `python benchmarks/speed_memory.py`

        pipe, (clip, tokenizer), tiny = sd15.build(device, dtype, scorer_dtype)
        scorer = CLIPScorer(clip, tokenizer)
    else:
        from diffusers import AutoencoderTiny, StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(os.path.join(TOY, "sd"), dtype=dtype)
        scorer = CLIPScorer.from_pretrained(os.path.join(TOY, "clip"), torch_dtype=scorer_dtype)
        tiny = AutoencoderTiny.from_pretrained(os.path.join(TOY, "taesd"), dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), scorer.to(device), tiny.to(device)


def measure(args) -> dict:
    """Generate one batch in configuration `args.config` and return its seconds and peak memory."""
    import torch

    import date

    device = torch.device(args.device)
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    # fast mode's CLIP runs in half precision on a GPU (--fp16_clip); CPUs have no fast fp16 matrix units
    scorer_dtype = torch.float16 if args.config == "fast" and device.type == "cuda" else torch.float32
    pipe, scorer, tiny = load(args.arch, device, dtype, scorer_dtype)
    settings = {
        "fixed": dict(scorer=None),
        "date": dict(scorer=scorer, update_batch_size=args.update_bs),
        "lean": dict(scorer=scorer, update_batch_size=1, gradient_checkpointing=True),
        "fast": dict(scorer=scorer, update_batch_size=args.update_bs, x0_decoder=tiny),
    }[args.config]
    size = args.height or pipe.unet.config.sample_size * pipe.vae_scale_factor

    def run(steps: int, skip_freq: int):
        return date.generate(pipe, [PROMPT] * args.bs, num_inference_steps=steps, skip_freq=skip_freq, guidance_scale=8.0,
                             generator=torch.Generator().manual_seed(0), output_type="pt", height=size, width=size,
                             **settings)

    run(2, 1)  # warm-up: kernels, allocator, caches (both an update and a plain step)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run(args.steps, args.skip_freq)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
        card = torch.cuda.get_device_name(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        card = "CPU"
    return {"config": args.config, "dtype": args.dtype, "seconds": time.perf_counter() - start, "peak_gib": peak,
            "device": card}


def table(rows: list, memory: str) -> str:
    lines = [f"| dtype | configuration | seconds | × fixed | peak GiB ({memory}) | × fixed |", "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        fixed = next(r for r in rows if r["dtype"] == row["dtype"] and r["config"] == "fixed")
        if "error" in row or "error" in fixed:
            lines.append(f"| {row['dtype']} | {CONFIGS[row['config']]} | {row.get('error', 'no fixed row')} | | | |")
            continue
        lines.append(f"| {row['dtype']} | {CONFIGS[row['config']]} | {row['seconds']:.2f} | {row['seconds'] / fixed['seconds']:.2f} "
                     f"| {row['peak_gib']:.2f} | {row['peak_gib'] / fixed['peak_gib']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = flags.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=["sd15", "toy"], default="sd15", help="SD 1.5 architecture (random weights) or the toy model")
    p.add_argument("--device", default="cuda")
    p.add_argument("--bs", type=flags.positive_int, default=8)
    p.add_argument("--steps", type=flags.positive_int, default=50)
    p.add_argument("--skip_freq", type=flags.positive_int, default=10)
    p.add_argument("--height", type=flags.positive_int, default=None, help="image side (default: the model's, 512 for sd15)")
    p.add_argument("--update_bs", default="auto", help="micro-batch of date and fast ('auto' or a number)")
    p.add_argument("--dtypes", default="fp32,fp16", help="comma-separated: fp32, fp16")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)} (fixed first)")
    p.add_argument("--json", default=os.path.join("runs", "speed_memory.json"), help="where to write the results")
    p.add_argument("--config", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    p.add_argument("--dtype", choices=["fp32", "fp16"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.update_bs != "auto":
        args.update_bs = int(args.update_bs)
    if args.config:
        print(json.dumps(measure(args)))
        return
    configs, dtypes = args.configs.split(","), args.dtypes.split(",")
    if configs[0] != "fixed" or set(configs) - set(CONFIGS) or set(dtypes) - {"fp32", "fp16"}:
        sys.exit(f"error: --configs must start with fixed and name only {','.join(CONFIGS)}; --dtypes only fp32, fp16")
    rows = []
    for dtype in dtypes:
        for config in configs:
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--config", config, "--dtype", dtype],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            else:
                last = (out.stderr.strip().splitlines() or ["no output"])[-1]
                rows.append({"config": config, "dtype": dtype, "error": f"failed: {last[:120]}"})
            done = rows[-1].get("error") or f"{rows[-1]['seconds']:.2f} s, {rows[-1]['peak_gib']:.2f} GiB"
            print(f"{dtype} {config}: {done}", file=sys.stderr)
    memory = "max allocated" if args.device.startswith("cuda") else "max resident set"
    device = next((r["device"] for r in rows if "device" in r), args.device)
    header = (f"{args.arch}, batch {args.bs}, {args.steps} steps, update every {args.skip_freq}, "
              f"{args.height or 'default'} px, {device}")
    print(header)
    print(table(rows, memory))
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"setup": header, "args": vars(args), "rows": rows}, f, indent=2)
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
