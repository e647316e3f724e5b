"""Architectures of the toy models: Stable Diffusion's and CLIP's, shrunk until they train on two CPU cores.

The text towers keep the real CLIP tokenizer's 49,408-token vocabulary (so real SD code paths run unchanged); a 32-wide
hidden size keeps each embedding table at 6 MB. The VAE downsamples 32 px images by 4 to 8×8×8 latents (8 channels
rather than SD's 4: the tiny VAE then learns all six colors several times faster).
"""
import math

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig

from date.toy.captions import SIZE

VOCAB_SIZE = 49408
TEXT_LENGTH = 77
TEXT_WIDTH = 32
LATENT_CHANNELS = 8
LATENT_SIZE = SIZE // 4
CLIP_PATCH = 28  # 224 / 28 = 8: one CLIP patch per 4×4 block of the 32 px image


def text_config(layers: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=TEXT_LENGTH,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def new_vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=SIZE,
    )


def new_tiny_autoencoder() -> AutoencoderTiny:
    """The toy counterpart of TAESD (`madebyollin/taesd`): diffusers' `AutoencoderTiny` (plain conv blocks, no
    attention, no normalization) for the toy latents, distilled from the toy VAE. Like TAESD it reads the latents the
    UNet sees (scaling_factor 1), so `decode(x / scaling_factor)` is the same call for it and for the VAE."""
    return AutoencoderTiny(
        latent_channels=LATENT_CHANNELS,
        encoder_block_out_channels=(16, 16, 16),  # AutoencoderTiny keeps one width through its blocks
        decoder_block_out_channels=(16, 16, 16),
        num_encoder_blocks=(1, 1, 1),
        num_decoder_blocks=(1, 1, 1),
        scaling_factor=1.0,
    )


def new_unet() -> UNet2DConditionModel:
    """Three levels (8×8, 4×4, 2×2), cross-attention in the upper two and in the 2×2 middle block. Convolutions and
    attention have no position embeddings, yet "on the left" is about absolute position: zero padding is what tells
    positions apart, and on the 2×2 level every position is a corner with its own stretch of padding, so the four
    quadrants are told apart by one convolution."""
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def new_text_encoder() -> CLIPTextModel:
    return CLIPTextModel(text_config(layers=3))


def new_scheduler() -> DDIMScheduler:
    """DDIM with SD 1.5's noise schedule (scaled-linear betas 0.00085 to 0.012, 1,000 steps, no clipping), rescaled to
    zero terminal SNR with trailing timesteps and v-prediction, the fix of Lin et al. 2024 ("Common Diffusion Noise
    Schedules and Sample Steps are Flawed"). With SD 1.5's own schedule, ᾱ at t = 999 is still 0.0047: on these tiny
    latents a training input there still shows where the object is at 1.4 noise standard deviations, so the UNet
    learned to read the layout from the noise instead of the caption and placed objects at random when sampling from
    pure noise (measured: position words followed at chance after 4,000 steps)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        prediction_type="v_prediction",
    )


def new_clip() -> CLIPModel:
    """A tiny CLIP whose vision position embeddings start as a 2-D sine-cosine grid as large as the patch embeddings.
    With the usual 0.02-std start they are 1% of a patch embedding and the tower stays blind to where things are
    (measured: left vs right at chance after 300 supervised steps; with this start, 99% after 150)."""
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=224,
        patch_size=CLIP_PATCH,
    )
    clip = CLIPModel(CLIPConfig(text_config=text_config(layers=3).to_dict(), vision_config=vision.to_dict(), projection_dim=32))
    embeddings = clip.vision_model.embeddings
    with torch.no_grad():
        embeddings.position_embedding.weight[0] = 0  # the class token
        embeddings.position_embedding.weight[1:] = grid_position_embedding(224 // CLIP_PATCH, vision.hidden_size, scale=2.0)
    return clip


def grid_position_embedding(side: int, width: int, scale: float) -> torch.Tensor:
    """(side², width) sines and cosines of x in the first half of the channels and of y in the second, row-major."""
    frequencies = 10.0 ** (-torch.arange(width // 4) / (width // 4))
    rows, columns = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")

    def encode(coordinate: torch.Tensor) -> torch.Tensor:
        angle = (coordinate.flatten()[:, None] + 0.5) / side * 4 * math.pi * frequencies
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    return scale * torch.cat([encode(columns), encode(rows)], dim=1)


def assemble_pipeline(
    vae: AutoencoderKL, unet: UNet2DConditionModel, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer
) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=new_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tokenize(tokenizer: CLIPTokenizer, captions: list[str], pad_to_max: bool = True) -> torch.Tensor:
    """Token ids as StableDiffusionPipeline makes them: padded to 77 with the end token.

    `pad_to_max=False` pads to the longest caption only, which is enough for CLIP's pooled output (read at the first
    end token, which causal attention keeps blind to what follows) and five times cheaper.
    """
    padding = "max_length" if pad_to_max else "longest"
    return tokenizer(
        captions, padding=padding, max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
