"""Tiny random-weight pipelines of every family DATE supports besides SD 1.x/2.x, in the real diffusers classes.

Text encoders: CLIP with the real CLIP tokenizer (rebuilt offline), T5 with a small whole-word Unigram vocabulary
wrapped in `T5TokenizerFast` (no hub). Widths are the smallest the architectures accept, so a pipeline runs in a fraction of a second.
"""
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtAlphaPipeline,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

T5_WORDS = ("a an the red green blue yellow purple white circle square triangle on left right top bottom of to above "
            "and photo dog cat beach in snow two playing very long caption").split()


def t5_tokenizer(max_length: int = 24) -> T5TokenizerFast:
    """A T5-style tokenizer (Unigram over whole words, Metaspace, `</s>` appended) that saves and loads like T5's."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + word, -1.0) for word in T5_WORDS]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=max_length)


def t5_encoder(width: int = 32) -> T5EncoderModel:
    """In eval mode, as `from_pretrained` leaves it: T5's dropout would make every encoding random."""
    return T5EncoderModel(T5Config(vocab_size=len(T5_WORDS) + 3, d_model=width, d_ff=2 * width, d_kv=8, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8)).eval()


def clip_text(hidden: int = 32, projection: bool = False):
    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=77, projection_dim=hidden,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def vae(latent_channels: int = 4, **config) -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(32, 32),
                         layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32, sample_size=16, **config)


def tiny_sdxl(tokenizer_dir: str, seed: int = 0) -> StableDiffusionXLPipeline:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=32,
    )
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae(), text_encoder=clip_text(), text_encoder_2=clip_text(projection=True),
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd3(tokenizer_dir: str, seed: int = 0) -> StableDiffusion3Pipeline:
    """T5 wider (96) than CLIP-L and G side by side (64), as in SD3 (4096 vs 2048): the pipeline pads CLIP's tokens."""
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=96,
                                        pooled_projection_dim=64, out_channels=4)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae(shift_factor=0.0609, scaling_factor=1.5305), text_encoder=clip_text(projection=True),
        text_encoder_2=clip_text(projection=True), text_encoder_3=t5_encoder(96), tokenizer=tokenizer,
        tokenizer_2=tokenizer, tokenizer_3=t5_tokenizer(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_flux(tokenizer_dir: str, guidance_embeds: bool = True, seed: int = 0) -> FluxPipeline:
    """FLUX.1-dev-like (guidance-distilled: a guidance embedding, no unconditional branch); schnell-like without."""
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=(4, 4, 8), guidance_embeds=guidance_embeds)
    pipe = FluxPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                        vae=vae(shift_factor=0.1159, scaling_factor=0.3611), text_encoder=clip_text(),
                        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir), text_encoder_2=t5_encoder(32),
                        tokenizer_2=t5_tokenizer())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pixart(sigma: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3, caption_channels=32,
        in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
    )
    cls = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    pipe = cls(tokenizer=t5_tokenizer(), text_encoder=t5_encoder(32), vae=vae(), transformer=transformer,
               scheduler=DPMSolverMultistepScheduler())  # PixArt's own sampler
    pipe.set_progress_bar_config(disable=True)
    return pipe
