"""h = Universal Guidance's official CLIP loss (`--h ugclip`) against a plain transcription of
`stable-diffusion-guided/scripts/clip_guided.py`'s `Clip.forward` on a tiny random OpenAI-style ResNet CLIP, and
`generate_date.py --method ug --h ugclip` end to end."""
import copy
import json
import math

import numpy as np
import open_clip
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode
from transformers import CLIPTokenizer

from date.io.errors import UserInputError
from date.scorers import H_MODELS, load_scorer
from date.scorers.preprocess import to_clip_input

TINY_RN_CLIP = "tiny-ug-rn-clip"
TINY_RN_CONFIG = {  # OpenAI's RN50 layout (ModifiedResNet, attention pooling, QuickGELU text tower), shrunken
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
PROMPTS = ["a red circle on the left", "a photo of a dog on a beach", "two dogs playing in the snow"]


@pytest.fixture(scope="module")
def tiny_rn_clip(tmp_path_factory):
    """The tiny architecture registered with open_clip, its weights as a checkpoint file and as a self-contained
    open_clip folder; random BatchNorm statistics and RN50's logit scale (ln 100)."""
    root = tmp_path_factory.mktemp("tiny_rn_clip")
    with open(root / f"{TINY_RN_CLIP}.json", "w") as f:
        json.dump(TINY_RN_CONFIG, f)
    open_clip.add_model_config(str(root))
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_RN_CLIP)
    with torch.no_grad():
        for module in model.visual.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        model.logit_scale.fill_(math.log(100))
    checkpoint = root / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    folder = root / "folder"
    folder.mkdir()
    with open(folder / "open_clip_config.json", "w") as f:
        json.dump({"model_cfg": TINY_RN_CONFIG, "preprocess_cfg": {}}, f)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return {"file": str(checkpoint), "folder": str(folder), "model": model.eval()}


def openai_tokens(tokenizer: CLIPTokenizer, prompt: str) -> torch.Tensor:
    """OpenAI's `clip.tokenize([prompt])`: start, BPE tokens, end, zero padding to 77."""
    ids = tokenizer(prompt).input_ids
    return torch.tensor([ids + [0] * (77 - len(ids))])


def official_loss(model, x: torch.Tensor, tokens: torch.Tensor, size: int) -> torch.Tensor:
    """clip_guided.py's `Clip.forward(x, y)` with OpenAI CLIP's `forward` written out: x is the decoded image in
    [−1, 1], one image and one prompt as in the script (batch_size = 1); 224 is `size` for the tiny model."""
    x = (x + 1) * 0.5
    x = TF.resize(x, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=False)  # torchvision 0.12's
    x = TF.normalize(x, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    image_features = model.encode_image(x)
    text_features = model.encode_text(tokens)
    image_features = image_features / image_features.norm(dim=1, keepdim=True)
    text_features = text_features / text_features.norm(dim=1, keepdim=True)
    logits_per_image = model.logit_scale.exp() * image_features @ text_features.t()
    return -1 * logits_per_image


def decoded_images(seed: int = 0) -> torch.Tensor:
    """What the VAE decodes: about [−1, 1], a little beyond (neither the official code nor ours clamps)."""
    return (torch.rand(len(PROMPTS), 3, 96, 80, generator=torch.Generator().manual_seed(seed)) * 2.2 - 1.1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_the_official_loss_and_its_gradient(tiny_rn_clip, tiny_dirs, dtype):
    """h within 1e-5 in float64, in float32 within 1e-5 of the scale of h (the official runs one image at a time, we
    a batch: the convolutions round differently, measured 8.6e-6 on h ≈ 10); ∇h within 1e-5 of its largest entry."""
    scorer = load_scorer("ugclip", {"ugclip": tiny_rn_clip["folder"]}, torch_dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(tiny_dirs["tokenizer"])
    model, size = copy.deepcopy(tiny_rn_clip["model"]).to(dtype), scorer.input_size
    x = decoded_images().to(dtype).requires_grad_(True)
    reference = torch.cat([official_loss(model, x[i : i + 1], openai_tokens(tokenizer, p), size)[0]
                           for i, p in enumerate(PROMPTS)])
    (reference_grad,) = torch.autograd.grad(reference.sum(), x)
    x = x.detach().requires_grad_(True)
    ours = scorer.score(x / 2 + 0.5, PROMPTS)  # UG's h(decode(ẑ0)): the decoded image / 2 + 0.5
    (our_grad,) = torch.autograd.grad(-ours.sum(), x)
    assert size == 64 and ours.shape == (3,)
    scale = 1.0 if dtype == torch.float64 else float(reference.detach().abs().max())
    error = float((ours.detach().double() + reference.detach().double()).abs().max())  # h = −loss
    assert error <= 1e-5 * scale, (error, ours, -reference)
    gradient_scale = float(reference_grad.abs().max())  # ≈ 1.6e-3: relative to it, stricter than 1e-5 absolute
    assert float((our_grad - reference_grad).abs().max()) <= 1e-5 * gradient_scale
    assert gradient_scale > 1e-3  # no vanishing gradient that any code would match
    # the test tells the official preprocessing from the other h's (bilinear resize, CLIP normalization)
    with torch.no_grad():
        other = scorer.score_pixels(to_clip_input(x / 2 + 0.5, size), scorer._encoded_prompts(PROMPTS))
    assert float((other - ours.detach()).abs().max()) > 1e-2


def test_loading_routes_and_mistakes(tiny_rn_clip, tmp_path):
    x = decoded_images(1) / 2 + 0.5
    from_folder = load_scorer("ugclip", {"ugclip": tiny_rn_clip["folder"]}).score(x, PROMPTS)
    from_file = load_scorer("ugclip", {"ugclip": tiny_rn_clip["file"], "ugclip_arch": TINY_RN_CLIP})
    assert torch.equal(from_file.score(x, PROMPTS), from_folder)
    pil = Image.fromarray((x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())
    assert torch.allclose(from_file.score_pil([pil], PROMPTS[:1]),
                          from_file.score(TF.to_tensor(pil)[None], PROMPTS[:1]), atol=1e-6)
    (tmp_path / "empty").mkdir()
    for sources, message in [({"ugclip": str(tmp_path / "empty")}, "holds no open_clip weights"),
                             ({"ugclip": "laion9000"}, "cannot load the UG CLIP loss's model"),
                             ({"ugclip": tiny_rn_clip["file"], "ugclip_arch": "RN50-quickgelu"}, "cannot load")]:
        with pytest.raises(UserInputError, match=message):
            load_scorer("ugclip", sources)


def test_default_is_openai_rn50_with_quick_gelu():
    """`open_clip.create_model('RN50', pretrained='openai')` would run OpenAI's text tower with GELU; the default is
    the QuickGELU config that the `openai` tag was trained with (checked without downloading)."""
    weights, extra = H_MODELS["ugclip"]
    architecture = extra["ugclip_arch"]
    assert weights in open_clip.list_pretrained_tags_by_model(architecture)
    assert open_clip.get_model_config(architecture)["quick_gelu"] is True
    assert open_clip.get_pretrained_cfg(architecture, weights)["quick_gelu"] is True
    assert open_clip.get_model_config(architecture)["vision_cfg"]["image_size"] == 224


def test_generate_date_ug_and_date_with_ugclip(tiny_rn_clip, tiny_dirs, tmp_path, capsys, generate_date_cli):
    from diffusers import StableDiffusionPipeline

    from date.io.seeding import image_generator
    from date.methods import universal_guidance as ug
    from date.pipeline.schedulers import make_scheduler

    prompts = ["a red circle on the left", "a photo of a dog on a beach"]  # the fixture's captions
    source = ["--h", "ugclip", "--h_model", f"ugclip={tiny_rn_clip['folder']}"]
    generate_date_cli("--method", "ug", *source, "--optim_forward_guidance_wt", "5")
    folder = tmp_path / "out" / "UG_UGCLIP_scheduler_DDIM_steps_3_w_8.0_seed_6"
    settings = json.load(open(folder / "config.json"))["settings"]
    assert settings["method"]["name"] == "ug" and settings["method"]["optim_forward_guidance_wt"] == 5.0
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["sd"], safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DDIM", pipe.scheduler.config)
    scorer = load_scorer("ugclip", {"ugclip": tiny_rn_clip["folder"]})
    kwargs = dict(num_inference_steps=3, guidance_scale=8.0)
    expected = ug.generate(pipe, prompts, scorer, guidance_weight=5.0, recurrence=1,
                           generator=[image_generator(6, k) for k in range(2)], **kwargs).images
    unguided = ug.generate(pipe, prompts, scorer, guidance_weight=0.0, recurrence=1,
                           generator=[image_generator(6, k) for k in range(2)], **kwargs).images
    for k in range(2):
        ours = np.asarray(Image.open(folder / f"{k}.png"))
        assert np.array_equal(ours, np.asarray(expected[k]))
        assert not np.array_equal(ours, np.asarray(unguided[k])), "s = 5 on 100·cos must move the image"
    generate_date_cli(*source)  # the same h for DATE
    date_folder = tmp_path / "out" / "DATE_UGCLIP_scheduler_DDIM_steps_3_w_8.0_seed_6"
    assert json.load(open(date_folder / "config.json"))["settings"]["update"] is not None
    assert (date_folder / "0.png").exists() and (date_folder / "1.png").exists()
