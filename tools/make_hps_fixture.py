"""Record what the reference HPS v2.1 scorer computes on the recipe checkpoint (tests/support/hps_recipe.py): the fixture that
proves `date.scorers.hps` exact (tests/date/scorers/test_scorers.py rebuilds the checkpoint, loads it with our loader and must
agree to 1e-5).

The reference is the PyPI package `hpsv2` 1.2.0, its `img_score.score` run unmodified, with its own vendored open_clip,
preprocessing and tokenizer. It needs a few packages of its own; nothing is downloaded at run time:

    mkdir /tmp/ref_hps && cd /tmp/ref_hps
    pip download --no-deps hpsv2==1.2.0 && unzip -q hpsv2-1.2.0-py3-none-any.whl -d site
    cp <open_clip>/bpe_simple_vocab_16e6.txt.gz site/hpsv2/src/open_clip/   # missing from that wheel
    pip install --target deps ftfy einops clint braceexpand
    PYTHONPATH=/tmp/ref_hps/site:/tmp/ref_hps/deps python tools/make_hps_fixture.py [--full]

The reference's `initialize_model` would download the LAION ViT-H-14 weights; instead its model dictionary is filled
with the same `create_model_and_transforms` call (same arguments, the recipe architecture, no pretrained tag), and
`score(..., cp=<recipe checkpoint>)` then loads the checkpoint itself. `--full` uses the real ViT-H-14 sizes (slow;
not committed).
"""
import argparse
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support import hps_recipe as recipe  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures",
                       "hps_reference.json")


def reference_model(open_clip, architecture: str):
    """The reference's own `initialize_model` call, but for `architecture` and with no pretrained weights."""
    return open_clip.create_model_and_transforms(
        architecture, None, precision="amp", device="cpu", jit=False, force_quick_gelu=False, force_custom_text=False,
        force_patch_dropout=False, force_image_size=None, pretrained_image=False, image_mean=None, image_std=None,
        light_augmentation=True, aug_cfg={}, output_dict=True, with_score_predictor=False, with_region_predictor=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the real ViT-H-14 sizes (the result is printed only)")
    parser.add_argument("--keep", default=None, help="also save the recipe checkpoint here (to score it with ours)")
    args = parser.parse_args()
    import hpsv2.img_score as img_score
    from hpsv2.src import open_clip

    architecture = "ViT-H-14" if args.full else recipe.ARCHITECTURE
    if not args.full:
        recipe.register(open_clip)
    model, _, preprocess_val = reference_model(open_clip, architecture)
    checkpoint = recipe.make_checkpoint({k: tuple(v.shape) for k, v in model.state_dict().items()})
    img_score.model_dict.update(model=model, preprocess_val=preprocess_val)
    images = recipe.rgb_images()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "HPS_v2.1_compressed.pt")
        torch.save(checkpoint, path)
        if args.keep:
            torch.save(checkpoint, args.keep)
        pil_scores = [float(img_score.score([images[i]], recipe.PROMPTS[p], cp=path)[0]) for i, p in recipe.PIL_CASES]
    tokenizer = open_clip.get_tokenizer("ViT-H-14")
    with torch.no_grad():  # the raw pixel path: the reference's model on normalized pixels, its scoring formula
        outputs = [model(pixels[None], tokenizer([recipe.PROMPTS[p]]))
                   for pixels, p in zip(recipe.pixel_values(), recipe.PIXEL_CASES)]
        pixel_scores = [float(torch.diagonal(o["image_features"] @ o["text_features"].T)[0]) for o in outputs]
    record = {"reference": "hpsv2 1.2.0 img_score.score", "architecture": architecture, "config": recipe.config(),
              "checkpoint_fingerprint": recipe.fingerprint(checkpoint["state_dict"]), "pil_cases": recipe.PIL_CASES,
              "pil_scores": pil_scores, "pixel_cases": recipe.PIXEL_CASES, "pixel_scores": pixel_scores,
              "torch": torch.__version__}
    if args.full:
        print(json.dumps({k: record[k] for k in ("architecture", "pil_scores", "pixel_scores")}))
        return
    with open(FIXTURE, "w") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {FIXTURE}: {pil_scores} {pixel_scores}")


if __name__ == "__main__":
    main()
