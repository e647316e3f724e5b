"""A deterministic aesthetic-predictor setup for tools/make_aesthetic_fixture.py (which records what LAION's
`simple_inference.py` steps compute with OpenAI's `clip` package) and tests/date/scorers/test_scorers.py (which must agree).

CLIP: a shrunken OpenAI ViT CLIP whose tensors are drawn by key name (`image_reward_recipe.recipe_tensor`) in OpenAI's
checkpoint layout; `to_transformers` maps them to a transformers `CLIPModel` (what our scorer loads). MLP: the
predictor's checkpoint layout (layers.0/2/4/6/7) at shrunken widths."""
from typing import Dict

import torch

from tests.support.image_reward_recipe import fingerprint, recipe_tensor

OPENAI_CLIP = dict(embed_dim=32, image_resolution=224, vision_layers=2, vision_width=64, vision_patch_size=32,
                   context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=4, transformer_layers=2)
MLP_WIDTHS = (32, 64, 16, 8, 4, 1)  # the real predictor: 768, 1024, 128, 64, 16, 1
PIL_CASES = [0, 1, 2, 3]  # indices of hps_recipe.rgb_images()


def pixel_values() -> torch.Tensor:
    """Two normalized 224×224 inputs of the vision tower."""
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(11))


def openai_state_dict(shapes: Dict[str, tuple]) -> Dict[str, torch.Tensor]:
    """Values rounded to fp16, as OpenAI's released weights are: `clip.model.build_model` casts them to fp16 (and
    `clip.load` back to fp32 on a CPU), so only fp16-exact values are the same on both sides."""
    return {key: recipe_tensor(f"aesthetic.clip.{key}", shape).half().float() for key, shape in sorted(shapes.items())}


def mlp_state_dict(widths=MLP_WIDTHS) -> Dict[str, torch.Tensor]:
    layers = {}
    for index, (fan_in, fan_out) in zip((0, 2, 4, 6, 7), zip(widths, widths[1:])):
        layers[f"layers.{index}.weight"] = recipe_tensor(f"aesthetic.mlp.{index}.weight", (fan_out, fan_in))
        layers[f"layers.{index}.bias"] = recipe_tensor(f"aesthetic.mlp.{index}.bias", (fan_out,))
    return layers


def _layers(openai: Dict[str, torch.Tensor], prefix: str) -> int:
    return len({key.split(".")[len(prefix.split("."))] for key in openai if key.startswith(prefix + ".")})


def to_transformers(openai: Dict[str, torch.Tensor]):
    """The same CLIP as a transformers `CLIPModel` (QuickGELU, eps 1e-5, one head per 64 channels, as OpenAI's
    `build_model`)."""
    from transformers import CLIPConfig, CLIPModel

    vision_width, text_width = openai["visual.conv1.weight"].shape[0], openai["token_embedding.weight"].shape[1]
    text_layers, vision_layers = _layers(openai, "transformer.resblocks"), _layers(openai, "visual.transformer.resblocks")
    config = CLIPConfig(
        text_config=dict(vocab_size=openai["token_embedding.weight"].shape[0], hidden_size=text_width,
                         intermediate_size=4 * text_width, num_hidden_layers=text_layers, num_attention_heads=text_width // 64,
                         max_position_embeddings=openai["positional_embedding"].shape[0], hidden_act="quick_gelu",
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=vision_width, intermediate_size=4 * vision_width, num_hidden_layers=vision_layers,
                           num_attention_heads=vision_width // 64, image_size=224,
                           patch_size=openai["visual.conv1.weight"].shape[-1], hidden_act="quick_gelu"),
        projection_dim=openai["text_projection"].shape[1])
    ours = {"logit_scale": openai["logit_scale"], "text_projection.weight": openai["text_projection"].T,
            "visual_projection.weight": openai["visual.proj"].T,
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
            "vision_model.post_layernorm.bias": openai["visual.ln_post.bias"]}
    for source, target, layers in (("transformer", "text_model.encoder", text_layers),
                                   ("visual.transformer", "vision_model.encoder", vision_layers)):
        for i in range(layers):
            a, b = f"{source}.resblocks.{i}", f"{target}.layers.{i}"
            for proj, chunk in zip(("q_proj", "k_proj", "v_proj"), openai[f"{a}.attn.in_proj_weight"].chunk(3)):
                ours[f"{b}.self_attn.{proj}.weight"] = chunk
            for proj, chunk in zip(("q_proj", "k_proj", "v_proj"), openai[f"{a}.attn.in_proj_bias"].chunk(3)):
                ours[f"{b}.self_attn.{proj}.bias"] = chunk
            for ours_name, theirs in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                                      ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                for p in ("weight", "bias"):
                    ours[f"{b}.{ours_name}.{p}"] = openai[f"{a}.{theirs}.{p}"]
    model = CLIPModel(config)
    missing, unexpected = model.load_state_dict(ours, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    return model.eval()


__all__ = ["MLP_WIDTHS", "OPENAI_CLIP", "PIL_CASES", "fingerprint", "mlp_state_dict", "openai_state_dict",
           "pixel_values", "to_transformers"]
