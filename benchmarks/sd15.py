"""Stable Diffusion v1.5 + CLIP ViT-L/14 + TAESD, built from their published configurations with seeded random weights.

Speed and memory do not depend on the weights' values, so the benchmark needs no download. The configurations are those
of `stable-diffusion-v1-5/stable-diffusion-v1-5` (unet/, vae/, text_encoder/, scheduler/), `openai/clip-vit-large-patch14`
and `madebyollin/taesd` (diffusers' `AutoencoderTiny` defaults). The tokenizer is the real CLIP BPE tokenizer bundled
with the toy model (same 49,408 tokens as SD 1.5's).
"""
import os

import diffusers
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

TOKENIZER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "toy", "sd", "tokenizer")

UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, act_fn="silu", center_input_sample=False,
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1, norm_eps=1e-5,
)
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
    act_fn="silu", sample_size=512, scaling_factor=0.18215,
)
CLIP_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=49406, eos_token_id=49407,
    pad_token_id=1,
)
CLIP_VISION = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224,
    patch_size=14, hidden_act="quick_gelu", projection_dim=768,
)
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                 set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000, prediction_type="epsilon")


def build(device: torch.device, dtype: torch.dtype, scorer_dtype: torch.dtype, seed: int = 0):
    """(pipeline, CLIP model + tokenizer of the scorer, tiny decoder), weights drawn on `device` from `seed`."""
    diffusers.utils.logging.set_verbosity_error()  # casting freshly built models warns of nothing useful here
    torch.manual_seed(seed)
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER)
    with torch.device(device):
        pipe = StableDiffusionPipeline(
            vae=AutoencoderKL(**VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_TEXT)), tokenizer=tokenizer,
            unet=UNet2DConditionModel(**UNET), scheduler=DDIMScheduler(**SCHEDULER), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False,
        )
        clip = CLIPModel(CLIPConfig(text_config=CLIP_TEXT, vision_config=CLIP_VISION, projection_dim=768))
        tiny = AutoencoderTiny()
    return pipe.to(dtype=dtype), (clip.to(dtype=scorer_dtype), tokenizer), tiny.to(dtype=dtype)
