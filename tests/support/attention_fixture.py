"""The cases on which Attend-and-Excite and CONFORM are compared with their official code (tools/make_*_fixture.py
record them; tests/date/methods/test_attend_excite.py and test_conform.py replay them with ours).

Only plain torch here, and the diffusers/transformers of whichever environment imports it: the tools run it beside the
old libraries the official code needs (diffusers 0.12.1 / 0.21.4), the tests beside ours.
"""
import json
import os

import torch

# Two captions of the Attend-and-Excite grammar; the token index is the concept word's (one CLIP token each).
CASES = [{"prompt": "a cat and a frog", "concepts": ["cat", "frog"], "tokens": [2, 5]},
         {"prompt": "a red car and a blue bow", "concepts": ["car", "bow"], "tokens": [3, 7]}]
STEPS = 12
GUIDANCE = 7.5
SEED = 0
ATTENTION_RES = 8  # the tiny UNet's largest cross-attention maps (latents 8×8)


def reference_components(root: str) -> dict:
    """The tiny pipeline saved by `tests.support.tiny_models.save_tiny_models(root)`, loaded into the classes of the
    diffusers/transformers on the path (old ones: their formats differ, so the text encoder's keys are renamed and the
    tokenizer rebuilt from its vocabulary; the VAE is a random one of the same shape, as only latents are compared)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sd = os.path.join(root, "sd")
    with open(os.path.join(sd, "text_encoder", "config.json")) as f:
        text_encoder = CLIPTextModel(CLIPTextConfig(**json.load(f)))
    weights = load_file(os.path.join(sd, "text_encoder", "model.safetensors"))
    text_encoder.load_state_dict({k if k.startswith("text_model.") else "text_model." + k: v for k, v in weights.items()},
                                 strict=False)
    tokenizer = CLIPTokenizer(os.path.join(root, "tokenizer", "vocab.json"), os.path.join(root, "tokenizer", "merges.txt"),
                              pad_token="<|endoftext|>", model_max_length=77)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32), layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=32, sample_size=16)
    return {"vae": vae, "text_encoder": text_encoder.eval(), "tokenizer": tokenizer,
            "unet": UNet2DConditionModel.from_pretrained(sd, subfolder="unet").eval(),
            "scheduler": DDIMScheduler.from_pretrained(sd, subfolder="scheduler"),
            "safety_checker": None, "feature_extractor": None}


def fingerprint(unet: torch.nn.Module) -> float:
    """Sum of the UNet's weights: the fixture's and the test's tiny model are the same one."""
    with torch.no_grad():
        return float(sum(p.double().sum() for p in unet.parameters()))


def replay(pipe, make_update, cases: list, attention_res: int = 16):
    """Ours (`date.methods.latent_steering.generate` with `make_update`) on `cases` as one batch: the latents after
    every step (batch, step, values) and the first batch's gradient steps [(losses, step size)]."""
    from date.methods.latent_steering import generate

    seen, updates = [], []

    def make(*args):
        updates.append(make_update(*args))

        def recorded(latents, i, t):  # x_t entering step i is the latents after step i − 1
            if i > 0:
                seen.append(latents.clone())
            return updates[-1](latents, i, t)
        return recorded

    out = generate(pipe, [c["prompt"] for c in cases], None, [c["concepts"] for c in cases], make, attention_res,
                   num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                   generator=[torch.Generator().manual_seed(SEED) for _ in cases], output_type="latent")
    return torch.stack(seen + [out.images], dim=1).flatten(2), updates[0].trace


def trace_matches(ours: list, official: list) -> bool:
    """The same gradient steps: losses within 1e-5, the same step sizes."""
    return len(ours) == len(official) and torch.allclose(
        torch.tensor([[float(loss), size] for loss, size in ours]), torch.tensor(official), atol=1e-5, rtol=1e-7)


def latents_match(ours: torch.Tensor, official: list) -> bool:
    """Within 1e-5 of the latents' own scale per step (they grow to about 30 on the tiny model, where float32
    resolves 2e-6, and a step of thousands × the gradient carries its rounding along)."""
    official = torch.tensor(official)
    return bool(((ours - official).abs().amax(-1) <= 1e-5 * official.abs().amax(-1)).all())


def plain_latents(pipe, cases: list) -> torch.Tensor:
    """The stock pipeline's final latents for `cases` (what the methods must move away from)."""
    return pipe([c["prompt"] for c in cases], num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                generator=[torch.Generator().manual_seed(SEED) for _ in cases], output_type="latent").images.flatten(1)
