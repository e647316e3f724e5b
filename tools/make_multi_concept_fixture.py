"""Record what Attend-and-Excite's own metric scripts compute on the recipe CLIP (tests/support/clip_b16_recipe.py):
the fixture that proves `evaluation/multi_concept.py` exact (tests/evaluation/test_multi_concept.py converts the same
weights to transformers, scores the same images and must agree to 1e-5).

The reference is yuval-alaluf/Attend-and-Excite at commit 163efdf (`metrics/compute_clip_similarity.py`,
`metrics/blip_captioning_and_clip_similarity.py`, `metrics/imagenet_utils.py`), run unmodified through their `run()`
entry points, with OpenAI's `clip` package as the PyPI distribution `openai-clip` 1.0.1 (the code of openai/CLIP,
which the authors installed from git; git is not reachable here). Nothing is downloaded at run time:

    mkdir -p /tmp/ref_mc/ae
    git --git-dir=<Attend-and-Excite clone>/.git archive 163efdf metrics | tar -x -C /tmp/ref_mc/ae
    pip install --target /tmp/ref_mc/deps --no-deps openai-clip==1.0.1 pyrallis==0.3.1 typing_inspect mypy_extensions \
        setuptools==69.5.1          # openai-clip imports pkg_resources.packaging, gone from newer setuptools
    PYTHONPATH=/tmp/ref_mc/ae:/tmp/ref_mc/deps python tools/make_multi_concept_fixture.py

Three things stand in for what this machine lacks, none of them inside the reference code:
- `clip.load("ViT-B/16", device)` would download OpenAI's TorchScript archive; it gets the recipe's weights saved as
  a TorchScript archive of `clip.model.CLIP` instead (OpenAI's releases are such archives), and `clip.load` itself
  rebuilds the model from it with `build_model`, as it does for the real file;
- `imagenet_utils.get_embedding_for_prompt` and the BLIP script move tokens with `.cuda()`; without a GPU,
  `Tensor.cuda` returns the tensor itself (the scripts pick the CPU, where `clip.load` keeps fp32);
- the BLIP script's captioner (LAVIS `blip_caption`/`base_coco`) is replaced by a stub answering the recipe's fixed
  captions (`BLIP_CAPTIONS`): LAVIS does not install beside current libraries, and what the fixture pins is the
  text-text similarity of given captions; our captioner's decoding settings are tested separately.
"""
import json
import os
import sys
import tempfile
import types
from importlib import metadata

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support import clip_b16_recipe as recipe  # noqa: E402
from tests.support.paths import FIXTURES  # noqa: E402

FIXTURE = os.path.join(FIXTURES, "multi_concept_reference.json")
REFERENCE_COMMIT = "163efdfd341bf3590df3c0c2b582935fbc8e8343"


def save_torchscript_checkpoint(clip_module, path: str) -> None:
    """The recipe weights in a traced `clip.model.CLIP`, saved as OpenAI saves its checkpoints (TorchScript)."""
    model = clip_module.model.CLIP(recipe.EMBED_DIM, recipe.IMAGE_SIZE, recipe.VISION_LAYERS, recipe.VISION_WIDTH,
                                   recipe.PATCH, recipe.CONTEXT, recipe.VOCAB, recipe.TEXT_WIDTH,
                                   recipe.TEXT_WIDTH // 64, recipe.TEXT_LAYERS).eval()
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes == recipe.openai_shapes(), set(shapes.items()) ^ set(recipe.openai_shapes().items())
    model.load_state_dict(recipe.openai_state_dict())
    example = (torch.zeros(1, 3, recipe.IMAGE_SIZE, recipe.IMAGE_SIZE),
               torch.zeros(1, recipe.CONTEXT, dtype=torch.long))
    torch.jit.save(torch.jit.trace(model, example), path)


def stub_lavis(captions_by_file: dict) -> None:
    """`lavis.models.load_model_and_preprocess` returning a captioner that answers the recipe's captions per file."""

    class Captioner:
        def generate(self, samples):
            return [answers[int(samples["image"][0])]]

    answers = list(captions_by_file.values())
    index = {path: i for i, path in enumerate(captions_by_file)}
    processors = {"eval": lambda image: torch.tensor([index[os.path.realpath(image.filename)]])}
    models = types.ModuleType("lavis.models")
    models.load_model_and_preprocess = lambda **kwargs: (Captioner(), processors, None)
    sys.modules["lavis"] = types.ModuleType("lavis")
    sys.modules["lavis.models"] = models


def run_reference(module, outputs: str, metrics: str) -> None:
    """Call a metric script's pyrallis `run()` as its command line would."""
    sys.argv = [module.__file__, "--output_path", outputs, "--metrics_save_path", metrics]
    module.run()


def main() -> None:
    import clip

    work = tempfile.mkdtemp(prefix="ref_mc_")
    checkpoint = os.path.join(work, "ViT-B-16-recipe.pt")
    save_torchscript_checkpoint(clip, checkpoint)
    load = clip.load
    clip.load = lambda name, device="cpu", **kwargs: load(checkpoint, device, **kwargs)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    outputs, metrics = os.path.join(work, "outputs"), os.path.join(work, "metrics")
    saved = recipe.save_images(outputs, layout="prompt_dirs")
    stub_lavis({os.path.realpath(path): recipe.BLIP_CAPTIONS[k][j] for k, j, path in saved})

    from metrics import blip_captioning_and_clip_similarity, compute_clip_similarity, imagenet_utils

    run_reference(compute_clip_similarity, outputs, metrics)
    run_reference(blip_captioning_and_clip_similarity, outputs, metrics)
    with open(os.path.join(metrics, "clip_raw_metrics.json")) as f:
        clip_raw = json.load(f)
    with open(os.path.join(metrics, "blip_raw_metrics.json")) as f:
        blip_raw = json.load(f)
    with open(os.path.join(metrics, "clip_aggregated_metrics.json")) as f:
        clip_aggregated = json.load(f)
    images = []
    for k, j, path in saved:
        prompt, name = recipe.PROMPTS[k], os.path.basename(path)
        at = clip_raw[prompt]["image_names"].index(name)
        blip_at = blip_raw[prompt]["image_names"].index(name)
        images.append({"prompt": k, "copy": j, "full_text": clip_raw[prompt]["full_text"][at],
                       "first_half": clip_raw[prompt]["first_half"][at],
                       "second_half": clip_raw[prompt]["second_half"][at],
                       "caption": blip_raw[prompt]["captions"][blip_at],
                       "text_similarity": blip_raw[prompt]["text_similarities"][blip_at]})
    record = {
        "reference": f"yuval-alaluf/Attend-and-Excite@{REFERENCE_COMMIT} metrics/compute_clip_similarity.py and "
                     "metrics/blip_captioning_and_clip_similarity.py (BLIP stubbed), openai-clip "
                     f"{metadata.version('openai-clip')}",
        "torch": torch.__version__, "prompts": recipe.PROMPTS, "images_per_prompt": recipe.IMAGES_PER_PROMPT,
        "checkpoint_fingerprint": recipe.fingerprint(recipe.openai_state_dict()),
        "imagenet_templates": list(imagenet_utils.imagenet_templates), "images": images,
        "aggregated": clip_aggregated,
    }
    with open(FIXTURE, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"wrote {FIXTURE}: {len(images)} images, aggregated {clip_aggregated}")


if __name__ == "__main__":
    main()
