"""Time and peak memory of one batch: fixed embeddings vs DATE, and DATE with its memory savers.

Each configuration runs in a fresh process so that peak memory (GPU: max allocated; CPU: max resident set) belongs to it
alone. Example (the paper's setting, 64 images, A100 in the paper):
    python benchmarks/speed_memory.py --bs 64 --update_bs 8
On a CPU, offline:
    python benchmarks/speed_memory.py --model toy --clip_model toy --bs 8 --device cpu
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(args) -> dict:
    """Generate one batch with the given configuration and return seconds and peak memory."""
    sys.path.insert(0, ROOT)
    import torch
    from diffusers import StableDiffusionPipeline

    import date
    from date.cli import TOY_MODELS, resolve_model

    device = torch.device(args.device)
    dtype = torch.float16 if args.fp16 else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(resolve_model(args.model, args.model, "model"), dtype=dtype,
                                                   safety_checker=None, requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    scorer = None
    if args.config != "fixed":
        scorer = date.CLIPScorer.from_pretrained(resolve_model(args.clip_model, args.clip_model, "clip")).to(device)
    prompts = ["a photograph of an astronaut riding a horse"] * args.bs
    frugal = args.config == "date_frugal"

    def run():
        return date.generate(pipe, prompts, scorer, num_inference_steps=args.steps, skip_freq=args.skip_freq,
                             generator=torch.Generator().manual_seed(0), output_type="latent",
                             update_batch_size=args.update_bs if frugal else None, gradient_checkpointing=frugal)

    run()  # warm-up: kernels, allocator, caches
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"config": args.config, "seconds": time.perf_counter() - start, "peak_gib": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="stable-diffusion-v1-5/stable-diffusion-v1-5")
    p.add_argument("--clip_model", default="openai/clip-vit-large-patch14")
    p.add_argument("--device", default="cuda")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--update_bs", type=int, default=8)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--skip_freq", type=int, default=10)
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--config", choices=["fixed", "date", "date_frugal"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.config:
        print(json.dumps(measure(args)))
        return
    rows = []
    for config in ["fixed", "date", "date_frugal"]:
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--config", config], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"error: {config} failed: {out.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    memory = "GPU max allocated" if args.device.startswith("cuda") else "CPU max resident"
    print(f"batch {args.bs}, {args.steps} steps, update every {args.skip_freq}, device {args.device}, fp16={args.fp16}")
    print(f"| configuration | seconds / batch | time vs fixed | peak memory (GiB, {memory}) |")
    print("|---|---|---|---|")
    names = {"fixed": "fixed embedding", "date": "DATE", "date_frugal": f"DATE, update_bs={args.update_bs} + checkpointing"}
    for row in rows:
        print(f"| {names[row['config']]} | {row['seconds']:.2f} | {row['seconds'] / rows[0]['seconds'] - 1:+.0%} | {row['peak_gib']:.2f} |")


if __name__ == "__main__":
    main()
