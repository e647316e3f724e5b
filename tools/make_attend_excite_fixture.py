"""Record what the official Attend-and-Excite pipeline computes on the tiny random-weight pipeline: the fixture that
proves `date.methods.attend_excite` exact (tests/date/methods/test_attend_excite.py must agree to 1e-5).

The reference is github.com/yuval-alaluf/Attend-and-Excite at commit 163efdf (`pipeline_attend_and_excite.py`, `utils/ptp_utils.py`,
`utils/gaussian_smoothing.py`, unmodified) with the libraries it pins (diffusers 0.12.1, transformers 4.26.0; torch as
installed, 2.x: its torch 1.12 has no Python 3.11 wheel). Three shims, none in its computation: `cv2` and `IPython`
(imported for visualization only) are empty modules, `Module.cuda` is the identity (its smoothing calls `.cuda()`;
this runs on the CPU), and `_update_latent` is wrapped to record each gradient step's loss and step size.
The tiny pipeline's VAE is in a format diffusers 0.12.1 cannot read, and only latents are compared, so a random VAE
of the same shape stands in (`tests.support.attention_fixture.reference_components`).

    git clone https://github.com/yuval-alaluf/Attend-and-Excite /tmp/ref_ae/src
    pip install --no-deps --target /tmp/ref_ae/deps diffusers==0.12.1 transformers==4.26.0 huggingface_hub==0.13.4 tokenizers==0.13.3
    python -c "from tests.support.tiny_models import save_tiny_models; save_tiny_models('/tmp/tiny_ref')"
    PYTHONPATH=/tmp/ref_ae/deps:/tmp/ref_ae/src python tools/make_attend_excite_fixture.py --models /tmp/tiny_ref

The settings are the official ones but for the tiny model's size and run length (`SETTINGS`): 12 steps, 8×8 maps,
a larger scale factor, so that the random model's nearly uniform attention moves visibly, and thresholds near
its attention (about 0.014), so that refinement both stops early and runs to its limit.
"""
import argparse
import json
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support.attention_fixture import ATTENTION_RES, CASES, GUIDANCE, SEED, STEPS, fingerprint, reference_components  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures",
                       "attend_excite_reference.json")
SETTINGS = {"max_iter_to_alter": 6, "thresholds": {0: 0.0155, 3: 0.0175, 5: 0.5}, "scale_factor": 20000.0,
            "scale_range": (1.0, 0.5), "smooth_attentions": True, "sigma": 0.5, "kernel_size": 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="folder written by save_tiny_models")
    args = parser.parse_args()
    for name in ("cv2", "IPython", "IPython.display"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["IPython.display"].display = print
    torch.nn.Module.cuda = lambda self, *a, **k: self
    import diffusers
    from pipeline_attend_and_excite import AttendAndExcitePipeline
    from utils.ptp_utils import AttentionStore, register_attention_control

    trace = []
    update = AttendAndExcitePipeline._update_latent

    def recorded(latents, loss, step_size):
        trace.append([float(loss), float(step_size)])
        return update(latents, loss, step_size)

    AttendAndExcitePipeline._update_latent = staticmethod(recorded)
    components = reference_components(args.models)
    pipe = AttendAndExcitePipeline(**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    cases = []
    for case in CASES:
        trace.clear()
        latents = []
        store = AttentionStore()
        register_attention_control(pipe, store)
        pipe(prompt=case["prompt"], attention_store=store, indices_to_alter=case["tokens"], attention_res=ATTENTION_RES,
             guidance_scale=GUIDANCE, generator=torch.Generator().manual_seed(SEED), num_inference_steps=STEPS,
             **SETTINGS, callback=lambda i, t, x: latents.append(x.flatten().tolist()), output_type="np")
        cases.append({**case, "latents": latents, "trace": list(trace)})
        print(case["prompt"], len(trace), "gradient steps, losses", [round(l, 4) for l, _ in trace])
    record = {"reference": "yuval-alaluf/Attend-and-Excite pipeline_attend_and_excite.py",
              "diffusers": diffusers.__version__, "torch": torch.__version__, "steps": STEPS, "guidance": GUIDANCE,
              "seed": SEED, "attention_res": ATTENTION_RES,
              "settings": {**SETTINGS, "thresholds": {str(k): v for k, v in SETTINGS["thresholds"].items()}},
              "unet_fingerprint": fingerprint(pipe.unet), "cases": cases}
    with open(FIXTURE, "w") as f:
        json.dump(record, f)
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
