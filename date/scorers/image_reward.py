"""h = ImageReward (Xu et al., NeurIPS 2023), the paper's second evaluation function, rebuilt on transformers' BLIP
modules: the `image-reward` package no longer imports beside today's libraries, but its checkpoint (hub repo
THUDM/ImageReward) loads here unchanged.

The reward model is BLIP: a ViT (ViT-L/16 at 224 px) encodes the image; BLIP's BERT-base text encoder reads the
prompt, attending to all image tokens in every layer; an MLP maps the hidden state of the first ([CLS]) token to a
number, standardized by the mean and std of the rewards seen in training. tests/date/scorers/test_image_reward.py checks this
module against the reference implementation to 1e-5.
"""
import json
import os
import re
from typing import Dict, Optional, Sequence, Union

import torch
from huggingface_hub.errors import StrictDataclassError
from PIL import Image
from torch import nn
from torchvision.transforms import CenterCrop, InterpolationMode, Resize
from torchvision.transforms.functional import normalize, to_tensor
from transformers import BertConfig, BertTokenizer, BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

try:
    from transformers.initialization import no_init_weights  # transformers 5
except ImportError:
    from transformers.modeling_utils import no_init_weights  # transformers 4

from date.io.errors import UserInputError
from date.io.loading import loading, model_path
from date.scorers.preprocess import CLIP_MEAN, CLIP_SIZE, CLIP_STD
from date.scorers.base import Scorer
from date.scorers.checkpoints import model_file, read_state_dict

DEFAULT_MODEL = "THUDM/ImageReward"
DEFAULT_TOKENIZER = "bert-base-uncased"
CHECKPOINT_FILE = "ImageReward.pt"
MED_CONFIG_FILE = "med_config.json"
VISION_CONFIG_FILE = "vision_config.json"  # optional: the official repo has none, its ViT is VIT_L16_224

VIT_L16_224 = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
               "image_size": 224, "patch_size": 16}
MAX_PROMPT_TOKENS = 35
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072

ImageInput = Union[Image.Image, str, os.PathLike]


def vision_config(sizes: Dict[str, int]) -> BlipVisionConfig:
    """BLIP's timm-style ViT: LayerNorm eps 1e-6, exact GELU, fused qkv with bias (as in BlipVisionModel)."""
    unknown = set(sizes) - set(VIT_L16_224)
    if unknown:
        raise UserInputError(f"{VISION_CONFIG_FILE}: unknown fields {sorted(unknown)} (allowed: {sorted(VIT_L16_224)})")
    return BlipVisionConfig(**{**VIT_L16_224, **sizes}, layer_norm_eps=1e-6, hidden_act="gelu", attention_dropout=0.0)


def text_config(med: BertConfig, image_width: int) -> BlipTextConfig:
    """BLIP's "med" BERT with cross-attention to `image_width`-wide image tokens in every layer.

    `is_decoder=True` is how transformers builds the cross-attention modules; the reward model is still called
    bidirectionally (`is_decoder=False` in `forward`). med_config's `encoder_width` is ignored, as BLIP overrides
    it with the ViT width.
    """
    if not getattr(med, "add_cross_attention", False):
        raise UserInputError(f"{MED_CONFIG_FILE}: ImageReward's text encoder needs add_cross_attention=true")
    if getattr(med, "position_embedding_type", "absolute") != "absolute":
        raise UserInputError(f"{MED_CONFIG_FILE}: only absolute position embeddings are supported")
    return BlipTextConfig(
        vocab_size=med.vocab_size, hidden_size=med.hidden_size, encoder_hidden_size=image_width,
        intermediate_size=med.intermediate_size, num_hidden_layers=med.num_hidden_layers,
        num_attention_heads=med.num_attention_heads, max_position_embeddings=med.max_position_embeddings,
        hidden_act=med.hidden_act, layer_norm_eps=med.layer_norm_eps, hidden_dropout_prob=med.hidden_dropout_prob,
        attention_probs_dropout_prob=med.attention_probs_dropout_prob, pad_token_id=med.pad_token_id, is_decoder=True,
    )


def reward_head(width: int) -> nn.Sequential:
    """ImageReward's MLP: linear layers only (its ReLUs are commented out upstream), indices as in the checkpoint."""
    return nn.Sequential(nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                         nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))


# Official checkpoint key -> ours. The ViT follows timm's names, the text encoder already has transformers' names.
_VISION_KEYS = [
    (r"cls_token", "embeddings.class_embedding"),
    (r"pos_embed", "embeddings.position_embedding"),
    (r"patch_embed\.proj\.(weight|bias)", r"embeddings.patch_embedding.\1"),
    (r"blocks\.(\d+)\.norm([12])\.(weight|bias)", r"encoder.layers.\1.layer_norm\2.\3"),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"encoder.layers.\1.self_attn.qkv.\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layers.\1.self_attn.projection.\2"),
    (r"blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"encoder.layers.\1.mlp.\2.\3"),
    (r"norm\.(weight|bias)", r"post_layernorm.\1"),
]
# BLIP's contrastive projections (unused by the reward) and a buffer that transformers rebuilds itself.
_UNUSED_KEYS = re.compile(r"blip\.(vision_proj|text_proj)\.(weight|bias)|blip\.text_encoder\.embeddings\.position_ids")


def _our_key(key: str) -> Optional[str]:
    """Our name for an official checkpoint key; None for a key we drop on purpose; KeyError for an unknown key."""
    if _UNUSED_KEYS.fullmatch(key):
        return None
    if key.startswith("blip.visual_encoder."):
        rest = key[len("blip.visual_encoder."):]
        for pattern, replacement in _VISION_KEYS:
            match = re.fullmatch(pattern, rest)
            if match:
                return "vision." + match.expand(replacement)
    elif key.startswith("blip.text_encoder."):
        return "text." + key[len("blip.text_encoder."):]
    elif match := re.fullmatch(r"mlp\.layers\.(\d+)\.(weight|bias)", key):
        return f"head.{match[1]}.{match[2]}"
    raise KeyError(key)


def convert_checkpoint(official: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The official `ImageReward.pt` state dict renamed to ImageRewardScorer's parameter names."""
    converted, unknown = {}, []
    for key, value in official.items():
        try:
            ours = _our_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if ours is not None:
            converted[ours] = value
    if unknown:
        raise UserInputError(f"{len(unknown)} checkpoint keys are not ImageReward's, e.g. {unknown[:3]}")
    return converted


def _resize_and_crop(image: Image.Image) -> Image.Image:
    return CenterCrop(CLIP_SIZE)(Resize(CLIP_SIZE, interpolation=InterpolationMode.BICUBIC)(image))


def pil_to_pixels(image: Image.Image) -> torch.Tensor:
    """The reference's evaluation preprocessing: shorter side to 224 (bicubic), center crop, RGB, CLIP mean/std.

    A module-level function, so that DataLoader workers can run it.
    """
    return normalize(to_tensor(_resize_and_crop(image).convert("RGB")), CLIP_MEAN, CLIP_STD)


def _open_pixels(image: ImageInput) -> torch.Tensor:
    if isinstance(image, Image.Image):
        return pil_to_pixels(image)
    try:
        with Image.open(image) as opened:
            return pil_to_pixels(opened)
    except (OSError, ValueError, SyntaxError) as e:  # PIL reports missing or corrupt files with any of these
        raise UserInputError(f"cannot read image {image}: {e}") from None


class ImageRewardScorer(Scorer):
    """ImageReward as h: differentiable in the image; prompts are tokenized once and cached."""

    def __init__(self, vision: BlipVisionConfig, text: BlipTextConfig, tokenizer: BertTokenizer) -> None:
        super().__init__()
        if len(tokenizer) != text.vocab_size:
            raise UserInputError(f"the tokenizer has {len(tokenizer)} tokens but the text encoder {text.vocab_size} "
                                 "(ImageReward uses bert-base-uncased plus [DEC] and [ENC])")
        self.vision = BlipVisionModel(vision)
        self.text = BlipTextModel(text, add_pooling_layer=False)
        self.head = reward_head(text.hidden_size)
        self.tokenizer = tokenizer
        self.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, name_or_dir: str = DEFAULT_MODEL, tokenizer: str = DEFAULT_TOKENIZER,
                        torch_dtype: torch.dtype = torch.float32) -> "ImageRewardScorer":
        """Load `ImageReward.pt` and `med_config.json` from a hub repo or a local directory, unchanged.

        `tokenizer` is a hub id or local directory of the bert-base-uncased tokenizer. A `vision_config.json` beside
        the checkpoint may give other ViT sizes (the tests use that for a small model); ViT-L/16 at 224 otherwise.
        """
        source = model_path(name_or_dir)
        with loading("ImageReward", name_or_dir):
            hint = f"an ImageReward folder holds {CHECKPOINT_FILE} and {MED_CONFIG_FILE}, as the hub repo {DEFAULT_MODEL}"
            checkpoint_file = model_file(source, CHECKPOINT_FILE, hint)
            med_file = model_file(source, MED_CONFIG_FILE, hint)
            vision_file = model_file(source, VISION_CONFIG_FILE, hint, required=False)
            try:
                med = BertConfig.from_json_file(med_file)
            except StrictDataclassError as e:
                raise UserInputError(f"{med_file}: {str(e).splitlines()[0]}") from None
            vision = vision_config(_read_json(vision_file) if vision_file else {})
            state_dict = read_state_dict(checkpoint_file, f"the official {CHECKPOINT_FILE}")
        with loading("tokenizer", tokenizer):
            text_tokenizer = blip_tokenizer(model_path(tokenizer))
        with no_init_weights():  # skips seconds of random init: the strict load below overwrites every weight
            scorer = cls(vision, text_config(med, vision.hidden_size), text_tokenizer)
        scorer.load_official_state_dict(state_dict)
        return scorer.to(dtype=torch_dtype)

    def load_official_state_dict(self, official: Dict[str, torch.Tensor]) -> None:
        """Load a state dict in the official layout; any key left over or missing on either side is an error."""
        try:
            missing, unexpected = self.load_state_dict(convert_checkpoint(official), strict=False)
        except RuntimeError as e:  # shape mismatches
            detail = " ".join(str(e).split())
            raise UserInputError(f"the checkpoint does not fit {MED_CONFIG_FILE}/{VISION_CONFIG_FILE}: "
                                 f"{detail[:300]}") from None
        if missing or unexpected:
            raise UserInputError(f"the checkpoint does not fit {MED_CONFIG_FILE}/{VISION_CONFIG_FILE}: "
                                 f"{len(missing)} weights missing (e.g. {missing[:3]}), "
                                 f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """Token ids and attention mask, stacked: (2, 35). The first token stays [CLS], as in ImageReward."""
        tokens = self.tokenizer(prompt, padding="max_length", truncation=True, max_length=MAX_PROMPT_TOKENS,
                                return_tensors="pt")
        return torch.cat([tokens.input_ids, tokens.attention_mask]).to(self.device)

    def score_pixels(self, pixel_values: torch.Tensor, prompt_encodings: torch.Tensor) -> torch.Tensor:
        image_tokens = self.vision(pixel_values=pixel_values).last_hidden_state  # all tokens, after the final norm
        text = self.text(input_ids=prompt_encodings[:, 0], attention_mask=prompt_encodings[:, 1],
                         encoder_hidden_states=image_tokens, is_decoder=False)  # no image mask: all tokens attended
        reward = self.head(text.last_hidden_state[:, 0]).squeeze(-1)
        return (reward - REWARD_MEAN) / REWARD_STD

    def score_normalized(self, pixel_values: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Rewards of already preprocessed inputs (B×3×224×224, CLIP-normalized, e.g. from `pil_to_pixels`): (B,)."""
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        return self.score_pixels(pixel_values, self._encoded_prompts(prompts)).float()

    @torch.no_grad()
    def score_pil(self, images: Sequence[ImageInput], prompts: Sequence[str]) -> torch.Tensor:
        """Rewards of PIL images or image files, preprocessed like the reference's evaluation: (B,) float32."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        return self.score_normalized(torch.stack([_open_pixels(image) for image in images]), prompts)


def blip_tokenizer(name_or_dir: str) -> BertTokenizer:
    """bert-base-uncased with BLIP's two extra tokens, [DEC] (as bos) and [ENC]: 30,524 ids, as the checkpoint."""
    tokenizer = BertTokenizer.from_pretrained(name_or_dir)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise UserInputError(f"{path} should hold a JSON object")
    return value


