"""Record what the official CONFORM pipeline computes on the tiny random-weight pipeline: the fixture that proves
`date.methods.conform` exact (tests/date/methods/test_conform.py must agree to 1e-5).

The reference is github.com/gemlab-vt/CONFORM at commit 4ad0e37 (`pipeline_conform.py`, unmodified) with the libraries of its
`environment.yaml` (diffusers 0.21.4, transformers 4.39.3, pytorch-metric-learning 2.5.0; torch as installed). Two
shims, none in its computation: `Module.cuda` is the identity (this runs on the CPU), and `_update_latent` is wrapped
to record each gradient step's loss and step size.

    git clone https://github.com/gemlab-vt/CONFORM /tmp/ref_conform/src
    pip install --no-deps --target /tmp/ref_conform/deps diffusers==0.21.4 transformers==4.39.3 huggingface_hub==0.19.4 tokenizers==0.15.2 pytorch-metric-learning==2.5.0
    python -c "from tests.support.tiny_models import save_tiny_models; save_tiny_models('/tmp/tiny_ref')"
    PYTHONPATH=/tmp/ref_conform/deps:/tmp/ref_conform/src python tools/make_conform_fixture.py --models /tmp/tiny_ref

Two runs (`RUNS`), the notebook's settings but for the tiny model's size and run length (12 steps, 8×8 maps,
refinement at 0, 4 and 8, updates in the first 8 steps) and a larger scale factor (the random model's attention is
nearly uniform): the notebook's `softmax_normalize=False`, and the pipeline's default `softmax_normalize=True` with
refinement at step 0 only. With refinement at a later step that setting yields NaN in the official code (its
previous-step map is scaled by 100 in place at every use: 22 times at a refinement step, which overflows), so that
case is not recorded; `--show_overflow` prints it happening.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support.attention_fixture import ATTENTION_RES, CASES, GUIDANCE, SEED, STEPS, fingerprint, reference_components  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures",
                       "conform_reference.json")
COMMON = {"max_iter_to_alter": 8, "refinement_steps": 20, "scale_factor": 2000.0, "do_smoothing": True,
          "smoothing_kernel_size": 3, "smoothing_sigma": 0.5, "temperature": 0.5,
          "softmax_normalize_attention_maps": False, "add_previous_attention_maps": True,
          "previous_attention_map_anchor_step": None, "loss_fn": "ntxent"}
RUNS = [{**COMMON, "iterative_refinement_steps": [0, 4, 8], "softmax_normalize": False},
        {**COMMON, "iterative_refinement_steps": [0], "softmax_normalize": True}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="folder written by save_tiny_models")
    parser.add_argument("--show_overflow", action="store_true", help="run softmax_normalize=True with refinement at "
                        "steps 0, 4, 8 and print whether the latents become NaN (nothing is written)")
    args = parser.parse_args()
    torch.nn.Module.cuda = lambda self, *a, **k: self
    import diffusers
    from pipeline_conform import ConformPipeline

    trace = []
    update = ConformPipeline._update_latent

    def recorded(latents, loss, step_size):
        trace.append([float(loss), float(step_size)])
        return update(latents, loss, step_size)

    ConformPipeline._update_latent = staticmethod(recorded)
    pipe = ConformPipeline(**reference_components(args.models), requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def run(settings: dict, case: dict) -> dict:
        trace.clear()
        latents = []
        pipe(prompt=case["prompt"], token_groups=[[token] for token in case["tokens"]], attn_res=(ATTENTION_RES,) * 2,
             guidance_scale=GUIDANCE, generator=torch.Generator().manual_seed(SEED), num_inference_steps=STEPS,
             **settings, callback=lambda i, t, x: latents.append(x.flatten().tolist()), output_type="latent")
        print(case["prompt"], settings["softmax_normalize"], len(trace), "gradient steps, losses",
              [round(l, 4) for l, _ in trace])
        return {**case, "latents": latents, "trace": list(trace)}

    if args.show_overflow:
        result = run({**RUNS[1], "iterative_refinement_steps": [0, 4, 8]}, CASES[0])
        print("NaN after steps:", [i for i, x in enumerate(result["latents"]) if any(v != v for v in x)])
        return
    runs = [{"settings": RUNS[0], "cases": [run(RUNS[0], case) for case in CASES]},
            {"settings": RUNS[1], "cases": [run(RUNS[1], CASES[0])]}]
    record = {"reference": "gemlab-vt/CONFORM pipeline_conform.py", "diffusers": diffusers.__version__,
              "torch": torch.__version__, "steps": STEPS, "guidance": GUIDANCE, "seed": SEED,
              "attention_res": ATTENTION_RES, "unet_fingerprint": fingerprint(pipe.unet), "runs": runs}
    with open(FIXTURE, "w") as f:
        json.dump(record, f)
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
