"""DATE's cost: extra FLOPs at the floor, memory savers that leave the images as they are, frozen weights."""
import pytest
import torch
from transformers import CLIPModel, CLIPTokenizer

import date
from date import memory
from date.memory import LargestStep, SavedBytes, UpdatePlan, frozen, largest_chunks, weight_bytes
from tests.support.flops import CountFlops
from tests.support.reference_date import reference_date
from tests.support.tiny_models import tiny_pipeline, tiny_x0_decoder

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
    pipe.unet.register_forward_hook(lambda module, args, kwargs, out: batches.append(len(out[0])), with_kwargs=True)
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=4, skip_freq=2, latents=noise(), output_type="latent",
                  update_batch_size=1)  # a forced micro-batch: the UNet takes the whole batch at once
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


def split(n, size):
    return [min(size, n - i) for i in range(0, n, size)]


@pytest.mark.parametrize("free", [1, None])  # no memory free: one image at a time; unknown: the ratio budget alone
def test_auto_measures_the_first_image_then_sizes_the_chunks(tiny_dirs, scorer, monkeypatch, free):
    calls = []
    monkeypatch.setattr(memory, "free_bytes", lambda device: free)
    real = memory.largest_chunks
    monkeypatch.setattr(memory, "largest_chunks", lambda *args: calls.append(args) or real(*args))
    pipe = tiny_pipeline(tiny_dirs["tokenizer"])
    decoded = []
    pipe.vae.decoder.register_forward_pre_hook(lambda module, args: decoded.append(len(args[0])))
    date.generate(pipe, PROMPTS, scorer, num_inference_steps=4, skip_freq=2, latents=noise(), output_type="latent")
    (batch, unet_graph, decoder_graph, decoder_step, pipeline_weights, extra_weights, free_now), = calls  # once a call
    assert batch == B and unet_graph > 0 and decoder_graph > decoder_step > 0 and free_now == free
    assert pipeline_weights == weight_bytes(pipe.unet, pipe.vae, pipe.text_encoder) and extra_weights == weight_bytes(scorer)
    chunk, micro_batch = real(*calls[0])
    assert (chunk, micro_batch) == (1, 1) if free == 1 else 1 <= micro_batch <= chunk <= B
    # update 0: the measured image, then the rest; update 2: the whole batch (latent output: no final decode)
    assert decoded == [1, *[m for c in split(B - 1, chunk) for m in split(c, micro_batch)],
                       *[m for c in split(B, chunk) for m in split(c, micro_batch)]]


def test_largest_chunks_keep_both_budgets():
    # SD 1.5-like, fp32, batch 8: fixed sampling holds >= 4 GiB weights + 8 × 0.5 GiB while decoding, so DATE may
    # hold 2.5 × 8 = 20 GiB; 4 + 1.6 GiB of weights leave 14.4 for 1.5 GiB of UNet graph and 6 × 1.25 of decoder per image
    sizes = dict(unet_per_image=int(1.5 * GiB), decoder_per_image=6 * GiB, decoder_step=GiB // 2,
                 pipeline_weights=4 * GiB, extra_weights=int(1.6 * GiB))
    assert largest_chunks(8, **sizes, free=None) == (4, 1)  # 14.4 - 4 × 1.5 = 8.4 >= 7.5
    assert largest_chunks(8, **sizes, free=10 * GiB) == (1, 1)  # 0.8 × 10 = 8 GiB: even one image needs 9; at least one
    tiny = dict(unet_per_image=2**20, decoder_per_image=2**20, decoder_step=2**20, pipeline_weights=GiB, extra_weights=0)
    assert largest_chunks(8, **tiny, free=None) == (8, 8)  # small images: the whole batch at once
    assert largest_chunks(8, **{**tiny, "decoder_per_image": 2**28}, free=None) == (8, 4)


def test_saved_bytes_counts_what_autograd_keeps_for_backward():
    a, b = torch.randn(100, requires_grad=True), torch.randn(100, requires_grad=True)
    with SavedBytes() as saved:
        (a * b).sum()  # mul keeps both factors
    assert saved.total == 800
    weight = torch.nn.Linear(100, 100, bias=False)
    with SavedBytes(weight) as saved:
        weight(a)  # keeps the input and the weight; the weight is not counted
    assert saved.total == 400
    with SavedBytes(active=False) as saved:
        (a * b).sum()
    assert saved.total == 0


def test_largest_step_is_the_input_and_output_of_the_biggest_leaf_module():
    net = torch.nn.Sequential(torch.nn.Linear(100, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
    with LargestStep(net) as step:
        net(torch.randn(4, 100))
    assert step.bytes == 4 * (100 + 50) * 4  # the first Linear: 4 × 100 in, 4 × 50 out, float32
    assert not net[0]._forward_hooks


@pytest.mark.parametrize("setting", [0, -1, "big", 1.5])
def test_micro_batch_setting_is_checked(setting):
    with pytest.raises(ValueError, match="update_batch_size"):
        UpdatePlan(setting)
