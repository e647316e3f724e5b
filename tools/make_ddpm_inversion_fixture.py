"""Record what the official edit-friendly DDPM inversion computes on the tiny random-weight pipeline: the fixture that
proves `date.editing` exact (tests/date/test_edit.py rebuilds the same pipeline, checks its fingerprint, runs ours and
must agree to 1e-9 in fp64 and 5e-5 in fp32, relative).

The reference is inbarhub/DDPM_inversion at commit 58fc881772d34f0c24be9e34725d213731aa009d, its
`ddm_inversion/inversion_utils.py` imported unmodified: `inversion_forward_process` then `inversion_reverse_process`,
called as its `main_run.py` (mode our_inv) calls them, with the libraries its requirements.txt pins for the models
(diffusers 0.8.0, transformers 4.28.1, huggingface-hub 0.13.4, tokenizers 0.13.3; torch, numpy and tqdm are this
project's). Two steps, because the reference's diffusers cannot import ours:

    # 1. in this project's environment: the tiny pipeline's weights, configs, tokenizer and source latents
    python tools/make_ddpm_inversion_fixture.py prepare /tmp/ref_ddpm/models
    # 2. in a throwaway environment: the official code on them, recorded into tests/fixtures/
    pip install --no-deps --target /tmp/ref_ddpm/site diffusers==0.8.0 transformers==4.28.1 huggingface-hub==0.13.4 \
        tokenizers==0.13.3
    git clone https://github.com/inbarhub/DDPM_inversion /tmp/ref_ddpm/official   # (at the commit above)
    PYTHONPATH=/tmp/ref_ddpm/site:/tmp/ref_ddpm/official python tools/make_ddpm_inversion_fixture.py record \
        /tmp/ref_ddpm/models

`main_run.py` also registers prompt-to-prompt's `AttentionStore` controller, which records attention maps and
returns x_t unchanged; it is left out (`controller=None`). The model object handed to the official functions has the
attributes they read (`unet`, `scheduler`, `tokenizer`, `text_encoder`, `device`); the scheduler is
`DDIMScheduler.from_config(<the tiny pipeline's scheduler config>)` with `set_timesteps(N)`, as in `main_run.py`.
Each case runs twice: in fp64 (models and latents in fp64, torch's default dtype fp64, since the official code makes
its tensors in the default dtype), where ours must agree to far below 1e-5, so that any difference is the method's and
not float rounding; and in fp32 (`main_run.py`'s precision), where guidance 15 amplifies the two libraries' float
rounding to about 1e-5 (the official code itself, run with this project's diffusers, differs from its fp32 record by
as much as ours).
"""
import argparse
import hashlib
import json
import os
import sys
import types

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "ddpm_inversion_reference.json")
OFFICIAL_COMMIT = "58fc881772d34f0c24be9e34725d213731aa009d"
# (source prompt, cfg_src, eta, steps, seed of the x_t draws, [(target prompt, cfg_tar, skip), ...])
CASES = [
    ("a red circle", 3.5, 1.0, 10, 7, [("a blue square", 15.0, 3), ("a red circle", 3.5, 0)]),
    ("", 3.5, 1.0, 8, 11, [("a photo of a dog", 7.5, 2)]),
    ("a photo of a cat", 5.0, 0.6, 8, 13, [("a sketch of a cat", 10.0, 4)]),
]
UNET_KWARGS = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[32, 64],
                   down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                   up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=32, attention_head_dim=8,
                   norm_num_groups=32)  # tests/support/tiny_models.py's UNet


def fingerprint(state_dict: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.removeprefix("text_model.").encode())  # transformers 5 dropped CLIPTextModel's prefix
        digest.update(state_dict[key].detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def source_latents() -> torch.Tensor:
    """The source image's latents (1 × 4 × 8 × 8): a seeded draw (the VAE is not part of the inversion)."""
    return torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(1234))


def prepare(folder: str) -> None:
    sys.path.insert(0, ROOT)
    from date.toy.clip_tokenizer import save_clip_tokenizer
    from tests.support.tiny_models import tiny_pipeline

    os.makedirs(folder, exist_ok=True)
    tokenizer_dir = os.path.join(folder, "tokenizer")
    save_clip_tokenizer(tokenizer_dir)
    pipe = tiny_pipeline(tokenizer_dir)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in pipe.unet.config.items() if k in UNET_KWARGS}
    assert config == UNET_KWARGS, config  # the UNet `record` rebuilds with the reference's diffusers
    torch.save(pipe.unet.state_dict(), os.path.join(folder, "unet.pt"))
    torch.save(pipe.text_encoder.state_dict(), os.path.join(folder, "text_encoder.pt"))
    with open(os.path.join(folder, "models.json"), "w") as f:
        json.dump({"scheduler": dict(pipe.scheduler.config), "text_encoder": pipe.text_encoder.config.to_dict(),
                   "unet_fingerprint": fingerprint(pipe.unet.state_dict()),
                   "text_encoder_fingerprint": fingerprint(pipe.text_encoder.state_dict())}, f, default=str)
    print(f"wrote the tiny pipeline to {folder}")


def _rounded(tensor: torch.Tensor, digits: int) -> list:
    return [float(f"{v:.{digits}g}") for v in tensor.detach().double().flatten().tolist()]


def record(folder: str) -> None:
    import diffusers
    import transformers
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from ddm_inversion import inversion_utils  # the official code, unmodified

    with open(os.path.join(folder, "models.json")) as f:
        models = json.load(f)
    unet = UNet2DConditionModel(**UNET_KWARGS)
    state = torch.load(os.path.join(folder, "unet.pt"))
    missing, unexpected = unet.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"UNet weights do not fit diffusers {diffusers.__version__}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    config = {k: v for k, v in models["text_encoder"].items() if k not in ("transformers_version",)}
    text_encoder = CLIPTextModel(CLIPTextConfig(**config))
    weights = torch.load(os.path.join(folder, "text_encoder.pt"))
    prefix = "" if all(k.startswith("text_model.") for k in weights) else "text_model."
    missing, unexpected = text_encoder.load_state_dict({prefix + k: v for k, v in weights.items()}, strict=False)
    if unexpected or set(missing) - {"text_model.embeddings.position_ids"}:  # a buffer: arange(77) in both
        raise SystemExit(f"text encoder weights do not fit transformers {transformers.__version__}: {missing} {unexpected}")
    assert fingerprint(unet.state_dict()) == models["unet_fingerprint"]
    shared = {k: v for k, v in text_encoder.state_dict().items() if k not in missing}
    assert fingerprint(shared) == models["text_encoder_fingerprint"], "text encoder weights differ"
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
    scheduler_config = {k: v for k, v in models["scheduler"].items() if not k.startswith("_")}
    model = types.SimpleNamespace(unet=unet.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                                  device=torch.device("cpu"))
    cases = []
    for source, cfg_src, eta, steps, seed, targets in CASES:
        case = {"source_prompt": source, "cfg_src": cfg_src, "eta": eta, "steps": steps, "seed": seed}
        for dtype, digits in ((torch.float64, 12), (torch.float32, 8)):
            w0 = source_latents().to(dtype)  # drawn in fp32 either way
            torch.set_default_dtype(dtype)  # the official code makes its tensors in the default dtype
            model.unet.to(dtype), model.text_encoder.to(dtype)
            model.scheduler = DDIMScheduler.from_config(scheduler_config)
            model.scheduler.set_timesteps(steps)
            torch.manual_seed(seed)
            _, zs, wts = inversion_utils.inversion_forward_process(model, w0, etas=eta, prompt=source,
                                                                   cfg_scale=cfg_src, prog_bar=False,
                                                                   num_inference_steps=steps)
            outputs = []
            for target, cfg_tar, skip in targets:
                w, _ = inversion_utils.inversion_reverse_process(model, xT=wts[steps - skip], etas=eta,
                                                                 prompts=[target], cfg_scales=[cfg_tar],
                                                                 prog_bar=False, zs=zs[:(steps - skip)],
                                                                 controller=None)
                outputs.append({"target_prompt": target, "cfg_tar": cfg_tar, "skip": skip,
                                "start": _rounded(wts[steps - skip], digits), "latents": _rounded(w, digits)})
            torch.set_default_dtype(torch.float32)
            name = str(dtype).removeprefix("torch.")
            case[name] = {"regenerated": outputs}
            if dtype == torch.float64:  # the noise maps in full once
                case[name].update(timesteps=[int(t) for t in model.scheduler.timesteps], zs=_rounded(zs, digits))
        cases.append(case)
    result = {"reference": f"inbarhub/DDPM_inversion@{OFFICIAL_COMMIT} ddm_inversion/inversion_utils.py",
              "libraries": {"diffusers": diffusers.__version__, "transformers": transformers.__version__,
                            "torch": torch.__version__},
              "unet_fingerprint": models["unet_fingerprint"],
              "text_encoder_fingerprint": models["text_encoder_fingerprint"],
              "source_latents": _rounded(source_latents(), 9), "latent_shape": [1, 4, 8, 8], "cases": cases}
    with open(FIXTURE, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {FIXTURE} ({len(cases)} cases)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["prepare", "record"])
    parser.add_argument("folder")
    args = parser.parse_args()
    (prepare if args.stage == "prepare" else record)(args.folder)


if __name__ == "__main__":
    main()
