"""Tiny random-weight models in the real diffusers/transformers formats, built offline for the tests."""
import os

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig

from date.toy.clip_tokenizer import save_clip_tokenizer

TEXT_DIM = 32


def _text_config() -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=49408, hidden_size=TEXT_DIM, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
                          bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)


def tiny_pipeline(tokenizer_dir: str, prediction_type: str = "epsilon", seed: int = 0) -> StableDiffusionPipeline:
    """A 16×16-pixel Stable Diffusion v1 lookalike (latents 4×8×8) with SD 1.5's DDIM configuration."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32,
        sample_size=16,
    )
    text_encoder = CLIPTextModel(_text_config())
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    from transformers import CLIPTokenizer

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_clip(tokenizer_dir: str, seed: int = 0) -> CLIPModel:
    """A CLIP model with the real tokenizer's vocabulary and a 224-pixel vision tower of 49 patches."""
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=224, patch_size=32, projection_dim=32)
    return CLIPModel(CLIPConfig(text_config=_text_config().to_dict(), vision_config=vision.to_dict(), projection_dim=32))


def tiny_x0_decoder(seed: int = 0) -> AutoencoderTiny:
    """A TAESD-shaped `AutoencoderTiny` for the tiny pipeline's latents (4×8×8 → 16×16 pixels)."""
    torch.manual_seed(seed)
    return AutoencoderTiny(latent_channels=4, encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                           num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1))


def save_tiny_models(root: str) -> dict:
    """Write a tiny pipeline, a tiny CLIP scorer (with tokenizer) and a tiny x̂0 decoder to `root`; return their
    directories."""
    tokenizer_dir = os.path.join(root, "tokenizer")
    tokenizer = save_clip_tokenizer(tokenizer_dir)
    dirs = {"tokenizer": tokenizer_dir, "sd": os.path.join(root, "sd"), "clip": os.path.join(root, "clip"),
            "taesd": os.path.join(root, "taesd")}
    tiny_pipeline(tokenizer_dir).save_pretrained(dirs["sd"])
    tiny_x0_decoder().save_pretrained(dirs["taesd"])
    tiny_clip(tokenizer_dir).save_pretrained(dirs["clip"])
    tokenizer.save_pretrained(dirs["clip"])
    CLIPImageProcessor().save_pretrained(dirs["clip"])  # a complete CLIP folder: CLIP's own image preprocessing too
    return dirs
