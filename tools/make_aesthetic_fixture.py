"""Record what the LAION improved aesthetic predictor computes on the recipe weights (tests/support/aesthetic_recipe.py): the
fixture that proves `date.scorers.aesthetic` exact (tests/date/scorers/test_scorers.py builds the same CLIP in transformers and
the same MLP checkpoint, loads them with our loader and must agree to 1e-5).

The reference is the predictor's `simple_inference.py`, step for step: OpenAI's `clip` package (`clip-anytorch` 2.6.0,
the same code as openai/CLIP) with its own preprocessing, `encode_image`, the L2 normalization in numpy, and the MLP
(768→1024→128→64→16→1 with dropout, rebuilt here as the repository defines it; shrunken widths in the recipe). The
model comes from `clip.model.build_model` on the recipe's state dict instead of `clip.load` (which downloads):

    mkdir /tmp/ref_aes && pip install --no-deps --target /tmp/ref_aes/site clip-anytorch==2.6.0 "setuptools<81" ftfy
    PYTHONPATH=/tmp/ref_aes/site python tools/make_aesthetic_fixture.py [--full --keep DIR]

`--full` uses the real sizes (CLIP ViT-L/14, MLP 768→…→1) and prints the result instead of writing the fixture;
`--keep DIR` also saves the OpenAI-format CLIP state dict and the MLP checkpoint there, to score them with ours.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support import aesthetic_recipe as recipe  # noqa: E402
from tests.support.hps_recipe import rgb_images  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures",
                       "aesthetic_reference.json")


class MLP(torch.nn.Module):
    """The predictor's head as its repository defines it (layers of an nn.Sequential, dropout between)."""

    def __init__(self, widths):
        super().__init__()
        w = widths
        self.layers = torch.nn.Sequential(torch.nn.Linear(w[0], w[1]), torch.nn.Dropout(0.2), torch.nn.Linear(w[1], w[2]),
                                          torch.nn.Dropout(0.2), torch.nn.Linear(w[2], w[3]), torch.nn.Dropout(0.1),
                                          torch.nn.Linear(w[3], w[4]), torch.nn.Linear(w[4], w[5]))

    def forward(self, x):
        return self.layers(x)


def normalized(a, axis=-1, order=2):
    l2 = np.atleast_1d(np.linalg.norm(a, order, axis))
    l2[l2 == 0] = 1
    return a / np.expand_dims(l2, axis)


FULL_CLIP = dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024, vision_patch_size=14,
                 context_length=77, vocab_size=49408, transformer_width=768, transformer_heads=12, transformer_layers=12)
FULL_MLP = (768, 1024, 128, 64, 16, 1)


def main() -> None:
    import clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the real sizes; the result is printed only")
    parser.add_argument("--keep", default=None, help="folder to save the weights in (to score them with ours)")
    args = parser.parse_args()
    clip_sizes, widths = (FULL_CLIP, FULL_MLP) if args.full else (recipe.OPENAI_CLIP, recipe.MLP_WIDTHS)
    shapes = {k: tuple(v.shape) for k, v in clip.model.CLIP(**clip_sizes).state_dict().items()}
    state_dict = recipe.openai_state_dict(shapes)
    model = clip.model.build_model(dict(state_dict)).float().eval()
    preprocess = clip.clip._transform(model.visual.input_resolution)
    mlp = MLP(widths)
    mlp.load_state_dict(recipe.mlp_state_dict(widths))
    mlp.eval()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        torch.save(state_dict, os.path.join(args.keep, "openai_clip.pt"))
        torch.save(recipe.mlp_state_dict(widths), os.path.join(args.keep, "sac+logos+ava1-l14-linearMSE.pth"))
    images = rgb_images()
    scores = []
    for index in recipe.PIL_CASES:
        image = preprocess(images[index]).unsqueeze(0)
        with torch.no_grad():
            image_features = model.encode_image(image)
        im_emb_arr = normalized(image_features.cpu().detach().numpy())
        scores.append(float(mlp(torch.from_numpy(im_emb_arr).type(torch.FloatTensor))[0, 0]))
    pixel_scores = []  # the raw pixel path: normalized 224×224 inputs straight into the reference's steps
    for pixels in recipe.pixel_values():
        with torch.no_grad():
            im_emb_arr = normalized(model.encode_image(pixels[None]).numpy())
            pixel_scores.append(float(mlp(torch.from_numpy(im_emb_arr).type(torch.FloatTensor))[0, 0]))
    if args.full:
        print(json.dumps({"pil_scores": scores, "pixel_scores": pixel_scores}))
        return
    record = {"reference": "LAION improved-aesthetic-predictor simple_inference.py with clip-anytorch 2.6.0",
              "clip_shapes": {k: list(v) for k, v in shapes.items()}, "clip_fingerprint": recipe.fingerprint(state_dict), "mlp_fingerprint": recipe.fingerprint(recipe.mlp_state_dict()),
              "pil_cases": recipe.PIL_CASES, "pil_scores": scores, "pixel_scores": pixel_scores,
              "torch": torch.__version__}
    with open(FIXTURE, "w") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {FIXTURE}: {scores} {pixel_scores}")


if __name__ == "__main__":
    main()
