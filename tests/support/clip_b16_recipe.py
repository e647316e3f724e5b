"""A deterministic, shrunken CLIP of OpenAI's ViT-B/16 class, in OpenAI's checkpoint format and converted to
transformers' `CLIPModel`, and the inputs Attend-and-Excite's metrics are recorded on.

Shared by `tools/make_multi_concept_fixture.py` (which loads the OpenAI-format state dict with the `clip` package's
own `clip.load` and runs Attend-and-Excite's metric scripts on it) and `tests/evaluation/test_multi_concept.py` (which
converts the same tensors to a transformers folder and must agree with the recording). Every tensor is drawn from a
generator seeded by its key name (`image_reward_recipe.recipe_tensor`), so the weights do not depend on any library
version. The architecture keeps ViT-B/16's patch size, image size, context length and vocabulary; widths are multiples
of 64 because `clip.model.build_model` infers one attention head per 64 channels.
"""
import os
from typing import Dict, List, Tuple

import torch
from PIL import Image

from tests.support.image_reward_recipe import _generator, fingerprint, recipe_tensor

EMBED_DIM = 64
VISION_WIDTH, VISION_LAYERS, PATCH, IMAGE_SIZE = 128, 2, 16, 224
TEXT_WIDTH, TEXT_LAYERS, CONTEXT, VOCAB = 128, 2, 77, 49408

# Attend-and-Excite prompts of each grammar ("and", "with", colors), with the images recorded under each: prompt
# index -> image indices of make_images()
PROMPTS = ["a cat and a frog", "a horse with a glasses", "a pink crown and a purple bow", "a monkey and a red car"]
IMAGES_PER_PROMPT = [[0, 1], [2, 3], [1, 4], [3, 0]]
IMAGE_SIZES = [(224, 224), (300, 200), (160, 256), (512, 512), (97, 131)]  # (width, height)
# what the stand-in captioner answers for image j of prompt k: the text-text metric compares these with the prompt
BLIP_CAPTIONS = [["a cat sitting on the grass next to a green frog", "a small animal in a field"],
                 ["a horse wearing sunglasses in a stable", "a brown horse standing in a field"],
                 ["a pink crown with a purple bow on it", "a close up of a colorful object"],
                 ["a monkey sitting on top of a red car", "a red sports car parked on a street"]]


def _blocks(prefix: str, width: int, layers: int) -> Dict[str, Tuple[int, ...]]:
    shapes: Dict[str, Tuple[int, ...]] = {}
    for i in range(layers):
        block = f"{prefix}transformer.resblocks.{i}."
        shapes.update({
            f"{block}attn.in_proj_weight": (3 * width, width), f"{block}attn.in_proj_bias": (3 * width,),
            f"{block}attn.out_proj.weight": (width, width), f"{block}attn.out_proj.bias": (width,),
            f"{block}ln_1.weight": (width,), f"{block}ln_1.bias": (width,),
            f"{block}mlp.c_fc.weight": (4 * width, width), f"{block}mlp.c_fc.bias": (4 * width,),
            f"{block}mlp.c_proj.weight": (width, 4 * width), f"{block}mlp.c_proj.bias": (width,),
            f"{block}ln_2.weight": (width,), f"{block}ln_2.bias": (width,),
        })
    return shapes


def openai_shapes() -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of `clip.model.CLIP.state_dict()` for this architecture (the tool checks it against the class)."""
    grid = IMAGE_SIZE // PATCH
    shapes = {
        "positional_embedding": (CONTEXT, TEXT_WIDTH), "text_projection": (TEXT_WIDTH, EMBED_DIM), "logit_scale": (),
        "token_embedding.weight": (VOCAB, TEXT_WIDTH), "ln_final.weight": (TEXT_WIDTH,), "ln_final.bias": (TEXT_WIDTH,),
        "visual.class_embedding": (VISION_WIDTH,), "visual.positional_embedding": (grid * grid + 1, VISION_WIDTH),
        "visual.proj": (VISION_WIDTH, EMBED_DIM), "visual.conv1.weight": (VISION_WIDTH, 3, PATCH, PATCH),
        "visual.ln_pre.weight": (VISION_WIDTH,), "visual.ln_pre.bias": (VISION_WIDTH,),
        "visual.ln_post.weight": (VISION_WIDTH,), "visual.ln_post.bias": (VISION_WIDTH,),
    }
    shapes.update(_blocks("visual.", VISION_WIDTH, VISION_LAYERS))
    shapes.update(_blocks("", TEXT_WIDTH, TEXT_LAYERS))
    return shapes


def openai_state_dict() -> Dict[str, torch.Tensor]:
    """The weights `clip.load` reads. Rounded to fp16 values, as OpenAI's released checkpoints hold them:
    `build_model` loads every weight into an fp16 model (then `.float()` on the CPU), which would round them anyway."""
    return {key: recipe_tensor(key, shape).half().float() for key, shape in sorted(openai_shapes().items())}


def hf_config():
    from transformers import CLIPConfig

    common = {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": EMBED_DIM}
    text = dict(common, hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=TEXT_LAYERS,
                num_attention_heads=TEXT_WIDTH // 64, max_position_embeddings=CONTEXT, vocab_size=VOCAB,
                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    vision = dict(common, hidden_size=VISION_WIDTH, intermediate_size=4 * VISION_WIDTH, num_hidden_layers=VISION_LAYERS,
                  num_attention_heads=VISION_WIDTH // 64, image_size=IMAGE_SIZE, patch_size=PATCH)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=EMBED_DIM)


def _hf_blocks(openai: Dict[str, torch.Tensor], source: str, target: str, layers: int) -> Dict[str, torch.Tensor]:
    out = {}
    for i in range(layers):
        src, dst = f"{source}transformer.resblocks.{i}.", f"{target}encoder.layers.{i}."
        for name, chunk_w, chunk_b in zip(("q_proj", "k_proj", "v_proj"), openai[f"{src}attn.in_proj_weight"].chunk(3),
                                          openai[f"{src}attn.in_proj_bias"].chunk(3)):
            out[f"{dst}self_attn.{name}.weight"], out[f"{dst}self_attn.{name}.bias"] = chunk_w, chunk_b
        for ours, theirs in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("mlp.fc1", "mlp.c_fc"),
                             ("mlp.fc2", "mlp.c_proj"), ("layer_norm2", "ln_2")):
            for suffix in ("weight", "bias"):
                out[f"{dst}{ours}.{suffix}"] = openai[f"{src}{theirs}.{suffix}"]
    return out


def hf_state_dict(openai: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The same weights under transformers' names (q/k/v split from in_proj; projections transposed)."""
    out = {
        "logit_scale": openai["logit_scale"],
        "text_projection.weight": openai["text_projection"].t(), "visual_projection.weight": openai["visual.proj"].t(),
        "text_model.embeddings.token_embedding.weight": openai["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": openai["positional_embedding"],
        "text_model.final_layer_norm.weight": openai["ln_final.weight"],
        "text_model.final_layer_norm.bias": openai["ln_final.bias"],
        "vision_model.embeddings.class_embedding": openai["visual.class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": openai["visual.conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": openai["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": openai["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": openai["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": openai["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": openai["visual.ln_post.bias"],
    }
    out.update(_hf_blocks(openai, "", "text_model.", TEXT_LAYERS))
    out.update(_hf_blocks(openai, "visual.", "vision_model.", VISION_LAYERS))
    return {key: value.contiguous() for key, value in out.items()}


def save_hf_dir(out_dir: str) -> str:
    """The recipe as a local transformers folder (model + the real CLIP tokenizer), as `--clip_model DIR` takes it."""
    from transformers import CLIPModel

    from date.toy.clip_tokenizer import save_clip_tokenizer

    model = CLIPModel(hf_config())
    missing, unexpected = model.load_state_dict(hf_state_dict(openai_state_dict()), strict=False)
    missing = [key for key in missing if not key.endswith("position_ids")]
    assert not missing and not unexpected, (missing, unexpected)
    model.save_pretrained(out_dir)
    save_clip_tokenizer(out_dir)
    return out_dir


def make_images() -> List[Image.Image]:
    """RGB images of several sizes and aspect ratios, smooth gradients plus fine noise (so resizing matters)."""
    images = []
    for index, (width, height) in enumerate(IMAGE_SIZES):
        noise = torch.rand(height, width, 3, generator=_generator(f"multi_concept_image.{index}"))
        ys, xs = torch.linspace(0, 1, height).view(-1, 1, 1), torch.linspace(0, 1, width).view(1, -1, 1)
        phase = torch.arange(3).view(1, 1, 3)
        smooth = 0.5 + 0.5 * torch.sin(5.0 * xs + 3.0 * ys * (phase + 1) + phase)
        images.append(Image.fromarray((255 * (0.6 * smooth + 0.4 * noise)).round().clamp(0, 255).byte().numpy()))
    return images


def save_images(folder: str, layout: str) -> List[Tuple[int, int, str]]:
    """The recorded images: `<k>_<j>.png` (layout "copies"), or under folders named by the prompt as
    Attend-and-Excite's scripts read them (layout "prompt_dirs"). Returns (prompt k, copy j, path)."""
    images, saved = make_images(), []
    for k, indices in enumerate(IMAGES_PER_PROMPT):
        for j, index in enumerate(indices):
            if layout == "copies":
                path = os.path.join(folder, f"{k}_{j}.png")
            else:
                path = os.path.join(folder, PROMPTS[k], f"{j}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            images[index].save(path)
            saved.append((k, j, path))
    return saved


__all__ = ["BLIP_CAPTIONS", "IMAGES_PER_PROMPT", "PROMPTS", "fingerprint", "hf_config", "hf_state_dict", "make_images",
           "openai_shapes", "openai_state_dict", "save_hf_dir", "save_images"]
