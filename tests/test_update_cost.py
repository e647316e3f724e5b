"""DATE's cost: extra FLOPs at the floor, memory savers that leave the images as they are, frozen weights."""
import pytest
import torch
from transformers import CLIPModel, CLIPTokenizer

import date
from date.memory import MicroBatchPlan, SavedBytes, frozen, largest_micro_batch
from tests.flops import CountFlops
from tests.reference_date import reference_date
from tests.tiny_models import tiny_pipeline, tiny_x0_decoder

PROMPTS = ["a red circle on the left", "a photo of a dog on a beach", "a yellow triangle above a blue square"]
B = len(PROMPTS)
GiB = 2**30


def noise(seed=0):
    return torch.randn(B, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def scorer(tiny_dirs):
    return date.CLIPScorer.from_pretrained(tiny_dirs["clip"])


def sample(tiny_dirs, scorer, **kwargs):
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    kwargs = {"num_inference_steps": 4, "skip_freq": 2, "latents": noise(), "output_type": "latent", **kwargs}
    return date.generate(pipe, PROMPTS, scorer, **kwargs).images


def reference(tiny_dirs, **kwargs):
    return reference_date(tiny_pipeline(tiny_dirs["tokenizer"]), CLIPModel.from_pretrained(tiny_dirs["clip"]),
                          CLIPTokenizer.from_pretrained(tiny_dirs["clip"]), PROMPTS, noise(), 4, 8.0, [0, 2], 1, 0.5,
                          **kwargs)


def test_extra_flops_are_within_3_percent_of_the_floor(tiny_dirs):
    """Floor of one update: UNet forward + backward to the embedding (conditional half only: the unconditional
    prediction is shared with the sampling step), decoder and scorer forward + backward to their input."""
    pipe, scorer = tiny_pipeline(tiny_dirs["tokenizer"]), date.CLIPScorer.from_pretrained(tiny_dirs["clip"])
    kwargs = dict(num_inference_steps=4, guidance_scale=8.0, output_type="latent")
    with CountFlops() as fixed:
        pipe(PROMPTS, latents=noise(), **kwargs)
    with CountFlops() as with_date:  # a fresh scorer: encoding its prompts counts as DATE's extra too
        date.generate(pipe, PROMPTS, scorer, skip_freq=2, latents=noise(), **kwargs)
    cond, _ = pipe.encode_prompt(PROMPTS, "cpu", 1, False)
    with frozen(pipe.unet, pipe.vae, scorer), CountFlops() as floor:
        embeds = cond.detach().requires_grad_(True)
        x0 = pipe.unet(noise(), 500, encoder_hidden_states=embeds).sample
        h = scorer.score(pipe.vae.decode(x0 / pipe.vae.config.scaling_factor).sample / 2 + 0.5, PROMPTS)
        torch.autograd.grad(h.sum(), embeds)
    updates = 2
    extra = with_date.total - fixed.total
    assert updates * floor.total <= extra <= 1.03 * updates * floor.total, extra / (updates * floor.total)


def test_the_sampling_step_reuses_the_unconditional_prediction_of_the_update(tiny_dirs, scorer):
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    batches = []
    pipe.unet.register_forward_hook(lambda module, args, kwargs, out: batches.append(len(args[0])), with_kwargs=True)
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=4, skip_freq=2, latents=noise(), output_type="latent")
    # update 0: c_u, c | step 0: c only | step 1: c_u + c | update 2: c_u, c | step 2: c only | step 3: c_u + c
    assert batches == [B, B, B, 2 * B, B, B, B, 2 * B]


@pytest.mark.parametrize("micro_batch", [1, 2, B, "auto"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_split_backward_gives_the_images_of_the_unsplit_computation(tiny_dirs, scorer, micro_batch, checkpointing):
    ours = sample(tiny_dirs, scorer, update_batch_size=micro_batch, gradient_checkpointing=checkpointing)
    unsplit = reference(tiny_dirs)  # one backward through UNet, VAE and CLIP together
    fixed = sample(tiny_dirs, None)
    assert relative(fixed, unsplit) > 1e-3, "the update must change the result"
    assert relative(ours, unsplit) <= 1e-5


def test_weights_frozen_during_the_call_and_everything_restored_after(tiny_dirs, scorer):
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    for k, p in enumerate(pipe.unet.parameters()):
        p.requires_grad_(k % 2 == 0)  # the caller's own mix
    before = [p.requires_grad for m in (pipe.unet, pipe.vae, scorer) for p in m.parameters()]
    seen = []
    pipe.vae.decoder.register_forward_pre_hook(
        lambda module, args: seen.append(any(p.requires_grad for m in (pipe.unet, pipe.vae, scorer) for p in m.parameters())))
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=2, skip_freq=1, latents=noise(), output_type="latent",
                  gradient_checkpointing=True)
    assert seen and not any(seen)
    assert [p.requires_grad for m in (pipe.unet, pipe.vae, scorer) for p in m.parameters()] == before
    assert all(p.grad is None for p in pipe.unet.parameters())
    assert not pipe.unet.is_gradient_checkpointing and not pipe.vae.is_gradient_checkpointing
    assert not pipe.unet._forward_hooks and not pipe.unet._forward_pre_hooks


def test_fast_mode_decodes_x0_with_the_tiny_decoder_and_the_image_with_the_vae(tiny_dirs, scorer):
    tiny = tiny_x0_decoder()
    fast = sample(tiny_dirs, scorer, x0_decoder=tiny)
    assert relative(fast, reference(tiny_dirs, x0_decoder=tiny)) <= 1e-5
    assert relative(fast, sample(tiny_dirs, scorer)) > 1e-3  # the tiny decoder's gradient differs from the VAE's
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    images = sample(tiny_dirs, scorer, x0_decoder=tiny, output_type="pt")
    with torch.no_grad():
        by_vae = (pipe.vae.decode(fast / pipe.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    assert torch.allclose(images, by_vae, atol=1e-6)


def test_largest_micro_batch_keeps_both_budgets():
    # fixed sampling holds >= 4 GiB weights + 8 × 0.25 GiB: DATE may hold 2.5 × 6 = 15 GiB; 4 + 1.6 + 6 are taken
    assert largest_micro_batch(8, GiB, 6 * GiB, GiB // 4, 4 * GiB, int(1.6 * GiB), free=None) == 2  # 3.4 / 1.25
    assert largest_micro_batch(8, GiB, 6 * GiB, GiB // 4, 4 * GiB, int(1.6 * GiB), free=2 * GiB) == 1  # 0.8 × 2 / 1.25
    assert largest_micro_batch(8, 2**20, 2**20, 2**20, GiB, 0, free=None) == 8  # small images: the whole batch
    assert largest_micro_batch(8, 100 * GiB, 0, 0, GiB, 0, free=None) == 1  # never below one image


def test_saved_bytes_counts_what_autograd_keeps_for_backward():
    a, b = torch.randn(100, requires_grad=True), torch.randn(100, requires_grad=True)
    with SavedBytes() as saved:
        (a * b).sum()  # mul keeps both factors
    assert saved.total == 800 and saved.largest == 400
    weight = torch.nn.Linear(100, 100, bias=False)
    with SavedBytes(weight) as saved:
        weight(a)  # keeps the input and the weight; the weight is not counted
    assert saved.total == 400
    with SavedBytes(active=False) as saved:
        (a * b).sum()
    assert saved.total == 0


@pytest.mark.parametrize("setting", [0, -1, "big", 1.5])
def test_micro_batch_setting_is_checked(setting):
    with pytest.raises(ValueError, match="update_batch_size"):
        MicroBatchPlan(setting)
