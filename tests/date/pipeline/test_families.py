"""DATE on every supported pipeline family, with tiny random-weight pipelines in the real diffusers classes."""
import pytest
import torch
from transformers import CLIPModel, CLIPTokenizer

import date
from date.io.errors import UserInputError
from date.pipeline.families import family_of
from date import sampling
from tests.support import reference_families as ref
from tests.support.tiny_families import tiny_flux, tiny_pixart, tiny_sd3, tiny_sdxl

PROMPTS = ["a red circle on the left", "a dog on the beach"]
SIZE, STEPS, ITRS, RHO, T5_LENGTH = 16, 4, [0, 2], 0.5, 24
FAMILIES = {
    "sdxl": (lambda d: tiny_sdxl(d["tokenizer"]), {}),
    "sd3": (lambda d: tiny_sd3(d["tokenizer"]), {"max_sequence_length": T5_LENGTH}),
    "flux-dev": (lambda d: tiny_flux(d["tokenizer"]), {"max_sequence_length": T5_LENGTH}),
    "flux-schnell": (lambda d: tiny_flux(d["tokenizer"], guidance_embeds=False), {"max_sequence_length": T5_LENGTH}),
    "pixart-alpha": (lambda d: tiny_pixart(), {"max_sequence_length": T5_LENGTH, "use_resolution_binning": False,
                                               "clean_caption": False}),
    "pixart-sigma": (lambda d: tiny_pixart(sigma=True), {"max_sequence_length": T5_LENGTH,
                                                         "use_resolution_binning": False, "clean_caption": False}),
}
POOLED = {"sdxl", "sd3", "flux-dev", "flux-schnell"}


@pytest.fixture(scope="module")
def scorer(tiny_dirs):
    return date.CLIPScorer.from_pretrained(tiny_dirs["clip"])


def generators(n=2, first=0):
    return [torch.Generator().manual_seed(100 + first + k) for k in range(n)]


def run(name, tiny_dirs, scorer, prompts=PROMPTS, first=0, **kwargs):
    make, pipeline_kwargs = FAMILIES[name]
    kwargs = {"num_inference_steps": STEPS, "skip_itrs": ITRS, "lr_upt_prompt": RHO, "height": SIZE, "width": SIZE,
              "output_type": "latent", "generator": generators(len(prompts), first), **pipeline_kwargs, **kwargs}
    return date.generate(make(tiny_dirs), prompts, scorer, **kwargs).images


def relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_no_update_is_the_stock_pipeline(name, tiny_dirs, scorer):
    make, pipeline_kwargs = FAMILIES[name]
    stock = make(tiny_dirs)(PROMPTS, num_inference_steps=STEPS, height=SIZE, width=SIZE, output_type="latent",
                            generator=generators(), **pipeline_kwargs).images
    assert torch.equal(run(name, tiny_dirs, scorer, lr_upt_prompt=0.0), stock)
    assert torch.equal(run(name, tiny_dirs, None), stock)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_matches_an_independent_plain_loop(name, tiny_dirs, scorer):
    pipe = FAMILIES[name][0](tiny_dirs)
    clip, tokenizer = CLIPModel.from_pretrained(tiny_dirs["clip"]), CLIPTokenizer.from_pretrained(tiny_dirs["clip"])
    w = {"sdxl": 5.0, "sd3": 7.0, "flux-dev": 3.5, "flux-schnell": 3.5}.get(name, 4.5)  # each pipeline's default
    latents = torch.randn(2, 4, SIZE // pipe.vae_scale_factor, SIZE // pipe.vae_scale_factor,
                          generator=torch.Generator().manual_seed(0))
    family = name.split("-")[0]
    if family == "flux":
        reference = ref.reference_flux(pipe, clip, tokenizer, PROMPTS, generators(), STEPS, w, ITRS, RHO, SIZE, T5_LENGTH)
        ours = run(name, tiny_dirs, scorer)
    else:
        if family == "sdxl":
            reference = ref.reference_sdxl(pipe, clip, tokenizer, PROMPTS, latents, STEPS, w, ITRS, RHO, SIZE)
        elif family == "sd3":
            reference = ref.reference_sd3(pipe, clip, tokenizer, PROMPTS, latents, STEPS, w, ITRS, RHO, T5_LENGTH)
        else:
            reference = ref.reference_pixart(pipe, clip, tokenizer, PROMPTS, latents, STEPS, w, ITRS, RHO, T5_LENGTH)
        ours = run(name, tiny_dirs, scorer, latents=latents)
    fixed = run(name, tiny_dirs, None, latents=None if family == "flux" else latents)
    assert relative(ours, fixed) > 3e-4, "the update must change the result (30× the tolerance below)"
    assert relative(ours, reference) <= 1e-5


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("update_pooled", [False, True])
def test_each_update_moves_each_sample_by_rho_and_never_padding(name, update_pooled, tiny_dirs, scorer, monkeypatch):
    if update_pooled and name not in POOLED:
        pytest.skip("no pooled embedding")
    moves = []
    update = sampling.date_step

    def recorded(objective, embeds, call, uncond_call, step_index, **kwargs):
        updated, uncond = update(objective, embeds, call, uncond_call, step_index, **kwargs)
        moves.append((updated - embeds, objective.movable, objective.condition))
        return updated, uncond

    monkeypatch.setattr(sampling, "date_step", recorded)
    run(name, tiny_dirs, scorer, update_pooled=update_pooled)
    assert len(moves) == len(ITRS)
    for move, movable, condition in moves:
        assert torch.allclose(move.norm(dim=1), torch.full((2,), RHO), atol=1e-4)
        assert len(condition.paths) == (2 if update_pooled else 1)
        if name.startswith("pixart") or name == "sd3":
            assert (movable == 0).any() and move[movable == 0].abs().max() == 0  # padding stays (tokens, CLIP width)
        else:
            assert movable is None
        if update_pooled:  # the pooled part moves too, in the same normalized step
            assert move[:, -condition.shapes[-1].numel():].abs().max() > 0


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_prompts_together_equal_prompts_one_at_a_time(name, tiny_dirs, scorer):
    together = run(name, tiny_dirs, scorer)
    alone = torch.cat([run(name, tiny_dirs, scorer, prompts=[p], first=k) for k, p in enumerate(PROMPTS)])
    assert relative(together, alone) <= 1e-5


def test_unknown_pipeline_is_refused(tiny_dirs):
    class OtherPipeline:
        pass

    with pytest.raises(UserInputError, match="does not support OtherPipeline"):
        family_of(OtherPipeline())
