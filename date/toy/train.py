"""Reproduce every toy model from scratch on CPU: `python -m date.toy.train [--out DIR] [--quick]`.

Stages: render the training pairs; the VAE; the text encoder and UNet together on cached latents (10% of captions
dropped so that classifier-free guidance works); the CLIP scorer h, contrastively with one-edit hard negatives; the
toy-FID feature network; a tiny autoencoder distilled from the VAE (DATE's fast mode decodes x̂0 with it). Every stage is seeded, so a run on the same library versions reproduces the weights.
"""
import copy
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from date.io import flags
from date.toy.clip_tokenizer import save_clip_tokenizer
from date.io.errors import UserInputError, exit_on_user_error
from date.io.captions import write_captions
from date.io.loading import ASSETS
from date.scorers.preprocess import to_clip_input
from date.toy import models
from date.toy.data import Pairs, hard_negative, make_pairs, spatial_negative, to_unit, truth_matrix
from date.toy.fid import FeatureNet, attribute_targets
from date.toy.world import benchmark_captions, tuning_captions


@dataclass(frozen=True)
class Budget:
    """How much of everything a run trains on; the defaults make the bundled weights."""

    pairs: int = 40_000
    vae_steps: int = 1_000
    vae_batch: int = 32
    unet_steps: int = 4_000
    unet_batch: int = 128
    clip_steps: int = 1_000
    clip_batch: int = 128
    fid_steps: int = 400
    fid_batch: int = 128
    tiny_pool: int = 8_000
    tiny_steps: int = 2_000
    tiny_batch: int = 64
    lr: float = 1e-3


QUICK = Budget(pairs=64, vae_steps=2, vae_batch=8, unet_steps=2, unet_batch=8, clip_steps=2, clip_batch=8, fid_steps=2,
               fid_batch=8, tiny_pool=16, tiny_steps=2, tiny_batch=8)
CAPTION_DROPOUT = 0.1
TOP_NOISE_SHARE = 0.25
TOP_NOISE_FROM = 900
SEED = 0


class Ema:
    """Exponential moving average of a module's weights, warmed up so that early steps are not frozen in."""

    def __init__(self, module: torch.nn.Module, decay: float = 0.999) -> None:
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema, live in zip(self.module.parameters(), module.parameters()):
            ema.lerp_(live, 1 - decay)


def optimize(
    name: str, module: torch.nn.Module, steps: int, lr: float, loss_fn: Callable[[int], torch.Tensor], ema: Ema | None = None
) -> Dict[str, float]:
    """AdamW with linear warm-up and cosine decay; a progress bar with the running loss."""
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    warmup = max(1, min(100, steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.1 + 0.45 * (1 + math.cos(math.pi * s / steps)))
    )
    running, start = None, time.time()
    bar = tqdm(range(steps), desc=name, mininterval=5, file=sys.stdout)
    for step in bar:
        loss = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if ema is not None:
            ema.update(module)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        if (step + 1) % max(1, steps // 10) == 0:
            tqdm.write(f"{name} step {step + 1}/{steps} loss {running:.4f}")
    return {"steps": steps, "final_loss": running, "seconds": round(time.time() - start, 1)}


def batches(count: int, size: int, seed: int) -> Callable[[], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return lambda: torch.randint(count, (size,), generator=generator)


def train_vae(pairs: Pairs, budget: Budget) -> tuple[models.AutoencoderKL, Dict[str, float]]:
    """Reconstruction (L1, object pixels weighted 5× since black fills most of every image) with SD's tiny KL weight;
    then set scaling_factor so that latents have unit variance."""
    torch.manual_seed(SEED)
    vae = models.new_vae()
    draw = batches(len(pairs), budget.vae_batch, SEED)

    def loss_fn(step: int) -> torch.Tensor:
        x = to_unit(pairs.images[draw()]) * 2 - 1
        posterior = vae.encode(x).latent_dist
        error = (vae.decode(posterior.sample()).sample - x).abs()
        weight = 1 + 4 * (x.amax(1, keepdim=True) > -0.9).float()
        return (error * weight).mean() / weight.mean() + 1e-6 * posterior.kl().mean()

    log = optimize("vae", vae, budget.vae_steps, budget.lr, loss_fn)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        sample = vae.encode(to_unit(pairs.images[:2048]) * 2 - 1).latent_dist.sample()
    vae.register_to_config(scaling_factor=float(1 / sample.std()))
    log["scaling_factor"] = vae.config.scaling_factor
    return vae, log


@torch.no_grad()
def encode_all(vae: models.AutoencoderKL, images: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every training image, so the generator stage never runs the encoder again."""
    means, stds = [], []
    for i in tqdm(range(0, len(images), batch), desc="encoding", mininterval=5, file=sys.stdout):
        posterior = vae.encode(to_unit(images[i : i + batch]) * 2 - 1).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def train_generator(
    pairs: Pairs, vae: models.AutoencoderKL, tokenizer, budget: Budget
) -> tuple[models.UNet2DConditionModel, models.CLIPTextModel, Dict[str, float]]:
    """v-prediction on the zero-terminal-SNR schedule (see `models.new_scheduler`), text encoder trained jointly, EMA
    weights kept. A quarter of every batch is drawn from t >= 900, where the latent holds (almost) nothing of the
    image and the caption is the only clue to where objects go: with uniform t alone, position words were still not
    learned after 600 steps, with this share they were after 300 (error of x̂0 from pure noise with the flipped
    position caption 1.2x that with the true one)."""
    torch.manual_seed(SEED + 1)
    means, stds = encode_all(vae, pairs.images)
    scale = vae.config.scaling_factor
    net = torch.nn.ModuleDict({"unet": models.new_unet(), "text_encoder": models.new_text_encoder()})
    ema = Ema(net)
    alphas = models.new_scheduler().alphas_cumprod
    draw = batches(len(pairs), budget.unet_batch, SEED + 1)
    generator = torch.Generator().manual_seed(SEED + 1)

    def loss_fn(step: int) -> torch.Tensor:
        index = draw()
        dropped = torch.rand(len(index), generator=generator) < CAPTION_DROPOUT
        texts = ["" if d else t for d, t in zip(dropped, pairs.texts(index))]
        latents = (means[index] + stds[index] * torch.randn(means[index].shape, generator=generator)) * scale
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.randint(len(alphas), (len(index),), generator=generator)
        top = torch.rand(len(index), generator=generator) < TOP_NOISE_SHARE
        t = torch.where(top, torch.randint(TOP_NOISE_FROM, len(alphas), (len(index),), generator=generator), t)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        velocity = a.sqrt() * noise - (1 - a).sqrt() * latents
        context = net["text_encoder"](models.tokenize(tokenizer, texts))[0]
        return (net["unet"](noisy, t, context).sample - velocity).pow(2).mean()

    log = optimize("unet+text", net, budget.unet_steps, budget.lr, loss_fn, ema)
    return ema.module["unet"], ema.module["text_encoder"], log


def _clip_features(clip: models.CLIPModel, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    image = clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)
    text = clip.text_projection(clip.text_model(input_ids=ids).pooler_output)
    return F.normalize(image, dim=-1), F.normalize(text, dim=-1)


def train_clip(pairs: Pairs, tokenizer, budget: Budget) -> tuple[models.CLIPModel, Dict[str, float]]:
    """Symmetric InfoNCE where captions true of several images in the batch are not counted as negatives, plus two
    hard negative captions per image among the text candidates: one random edit (color, shape, position or order) and
    one spatial edit (position flipped, or the two objects swapped around the relation)."""
    torch.manual_seed(SEED + 2)
    clip = models.new_clip()
    draw = batches(len(pairs), budget.clip_batch, SEED + 2)
    rng = np.random.default_rng(SEED + 2)

    def loss_fn(step: int) -> torch.Tensor:
        index = draw().tolist()
        captions = [pairs.captions[i] for i in index]
        objects = [pairs.objects[i] for i in index]
        candidates = captions + [hard_negative(c, o, rng) for c, o in zip(captions, objects)]
        candidates += [spatial_negative(c, o, rng) for c, o in zip(captions, objects)]
        truth = truth_matrix(candidates, objects)
        pixels = to_clip_input(to_unit(pairs.images[index]))
        image, text = _clip_features(clip, pixels, models.tokenize(tokenizer, [c.text for c in candidates], pad_to_max=False))
        logits = clip.logit_scale.exp() * image @ text.T
        own = torch.eye(len(index), len(candidates), dtype=torch.bool)
        image_to_text = logits.masked_fill(truth & ~own, -torch.inf)
        text_to_image = logits[:, : len(index)].T.masked_fill((truth[:, : len(index)] & ~own[:, : len(index)]).T, -torch.inf)
        target = torch.arange(len(index))
        return (F.cross_entropy(image_to_text, target) + F.cross_entropy(text_to_image, target)) / 2

    log = optimize("clip", clip, budget.clip_steps, budget.lr, loss_fn)
    return clip.eval(), log


def train_feature_net(pairs: Pairs, budget: Budget) -> tuple[FeatureNet, Dict[str, float]]:
    torch.manual_seed(SEED + 3)
    net = FeatureNet()
    targets = attribute_targets(pairs.objects)
    draw = batches(len(pairs), budget.fid_batch, SEED + 3)

    def loss_fn(step: int) -> torch.Tensor:
        index = draw()
        return F.binary_cross_entropy_with_logits(net(to_unit(pairs.images[index])), targets[index])

    log = optimize("fid_net", net, budget.fid_steps, budget.lr, loss_fn)
    return net.eval(), log


@torch.no_grad()
def x0_latents(pipe, pairs: Pairs, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents like those DATE decodes inside updates: half clean (VAE posterior samples), half x̂0 predicted by the
    generator from x_t at a uniform timestep with guidance 8 (off the data manifold, most of all at high noise).
    Also returns the images drawn and their (scaled) posterior means, the encoder's targets."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(len(pairs), (count,), generator=generator)
    means, stds = encode_all(pipe.vae, pairs.images[index])
    scale = pipe.vae.config.scaling_factor
    clean = (means + stds * torch.randn(means.shape, generator=generator)) * scale
    predicted = []
    alphas = pipe.scheduler.alphas_cumprod
    for start in tqdm(range(0, count // 2, 256), desc="x0 latents", mininterval=5, file=sys.stdout):
        part = slice(start, min(start + 256, count // 2))
        x = clean[part]
        t = torch.randint(len(alphas), (len(x),), generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=generator)
        cond, uncond = pipe.encode_prompt(pairs.texts(index[part]), "cpu", 1, True)
        v_uncond, v_text = pipe.unet(torch.cat([noisy, noisy]), torch.cat([t, t]), torch.cat([uncond, cond])).sample.chunk(2)
        predicted.append(a.sqrt() * noisy - (1 - a).sqrt() * (v_uncond + 8.0 * (v_text - v_uncond)))
    return torch.cat([*predicted, clean[count // 2 :]]), index, means * scale


def train_tiny_autoencoder(sd_dir: str, pairs: Pairs, budget: Budget) -> tuple[models.AutoencoderTiny, Dict[str, float]]:
    """Distill the toy VAE into `AutoencoderTiny`, as TAESD was distilled from SD's VAE: the decoder learns the VAE
    decoder's output on latents like those DATE decodes (`x0_latents`), the encoder the VAE's latents of world images.
    L1 + MSE on pixels in [-1, 1]; MSE on latents."""
    torch.manual_seed(SEED + 4)
    pipe = models.StableDiffusionPipeline.from_pretrained(sd_dir, safety_checker=None, requires_safety_checker=False)
    scale = pipe.vae.config.scaling_factor

    @torch.no_grad()
    def vae_decode(latents: torch.Tensor) -> torch.Tensor:
        return torch.cat([pipe.vae.decode(z / scale).sample for z in latents.split(512)])

    latents, image_index, image_latents = x0_latents(pipe, pairs, budget.tiny_pool, SEED + 4)
    targets = vae_decode(latents)
    images = to_unit(pairs.images[image_index]) * 2 - 1
    tiny = models.new_tiny_autoencoder()
    draw = batches(len(latents), budget.tiny_batch, SEED + 4)

    def loss_fn(step: int) -> torch.Tensor:
        index = draw()
        error = tiny.decode(latents[index]).sample - targets[index]
        latent_error = tiny.encode(images[index]).latents - image_latents[index]
        return error.abs().mean() + error.pow(2).mean() + latent_error.pow(2).mean()

    log = optimize("tiny autoencoder", tiny, budget.tiny_steps, budget.lr, loss_fn)
    tiny.eval().requires_grad_(False)
    held_out, _, _ = x0_latents(pipe, make_pairs(256, seed=SEED + 6, progress=False), 256, SEED + 6)
    with torch.no_grad():
        log["held_out_decoder_l1"] = float((tiny.decode(held_out).sample - vae_decode(held_out)).abs().mean())
    return tiny, log


def bytes_on_disk(path: str) -> int:
    """Size of the `*.safetensors` files under `path` (the bundled toy models must stay small)."""
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files if f.endswith(".safetensors")
    )


STAGES = ("vae", "generator", "clip", "fid_net", "tiny_autoencoder")


def train_all(out: str, budget: Budget, stages: Sequence[str] = STAGES) -> Dict[str, object]:
    """Train `stages` and write `out/sd`, `out/clip`, `out/fid_net`, `out/taesd`, `out/training.json` and the
    benchmark's default prompt file `out/prompts.csv` (and `out/tuning_prompts.csv`, disjoint from it). A generator trained without the vae stage uses the VAE already in `out/sd`: every
    stage is seeded on its own, so this gives the same weights as a full run."""
    if "vae" in stages and "generator" not in stages:
        raise UserInputError("a new VAE needs a new generator: add the generator stage")
    vae_dir = os.path.join(out, "sd", "vae")
    if "generator" in stages and "vae" not in stages and not os.path.isdir(vae_dir):
        raise UserInputError(f"no VAE in {vae_dir}: add the vae stage")
    if "tiny_autoencoder" in stages and "generator" not in stages and not os.path.isdir(os.path.join(out, "sd", "unet")):
        raise UserInputError(f"no toy pipeline in {os.path.join(out, 'sd')}: add the vae and generator stages")
    start = time.time()
    os.makedirs(out, exist_ok=True)
    write_captions(os.path.join(out, "prompts.csv"), benchmark_captions())
    write_captions(os.path.join(out, "tuning_prompts.csv"), tuning_captions())
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = save_clip_tokenizer(tmp)
    pairs = make_pairs(budget.pairs, seed=SEED)
    log_path = os.path.join(out, "training.json")
    log: Dict[str, object] = {}
    if os.path.exists(log_path) and set(stages) != set(STAGES):
        with open(log_path) as f:
            log = json.load(f)
    log.update({"budget": asdict(budget), "threads": torch.get_num_threads()})
    if "generator" in stages:
        if "vae" in stages:
            vae, log["vae"] = train_vae(pairs, budget)
        else:
            vae = models.AutoencoderKL.from_pretrained(vae_dir).eval().requires_grad_(False)
        unet, text_encoder, log["generator"] = train_generator(pairs, vae, tokenizer, budget)
        # the UNet is stored in half precision to keep all weights under 20 MB; diffusers loads it as float32
        models.assemble_pipeline(vae, unet.half(), text_encoder, tokenizer).save_pretrained(os.path.join(out, "sd"))
    if "clip" in stages:
        clip, log["clip"] = train_clip(pairs, tokenizer, budget)
        clip.save_pretrained(os.path.join(out, "clip"))
        tokenizer.save_pretrained(os.path.join(out, "clip"))
    if "fid_net" in stages:
        feature_net, log["fid_net"] = train_feature_net(pairs, budget)
        feature_net.save_pretrained(os.path.join(out, "fid_net"))
    if "tiny_autoencoder" in stages:
        tiny, log["tiny_autoencoder"] = train_tiny_autoencoder(os.path.join(out, "sd"), pairs, budget)
        tiny.save_pretrained(os.path.join(out, "taesd"))
    log["last_run_seconds"] = round(time.time() - start, 1)
    log["weight_bytes"] = bytes_on_disk(out)
    with open(log_path, "w") as f:
        json.dump(log, f, indent=2)
    return log


BUNDLED = os.path.join(ASSETS, "toy")


@exit_on_user_error
def main(argv: List[str] | None = None) -> None:
    parser = flags.Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for sd/, clip/, fid_net/, taesd/ (default: the bundled "
                        "assets/toy; with --quick a new temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a few steps of every stage: a smoke test, not usable "
                        "weights, never written over the bundled models")
    parser.add_argument("--threads", type=flags.positive_int, default=2, help="CPU threads (default: 2)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)} (default: all)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise UserInputError("--threads must be at least 1")
    if args.quick and args.out is None:
        args.out = tempfile.mkdtemp(prefix="date-toy-quick-")
    elif args.out is None:
        args.out = BUNDLED
    if args.quick and os.path.realpath(args.out) == os.path.realpath(BUNDLED):
        raise UserInputError(f"--quick weights are a smoke test; they never replace the bundled models in {BUNDLED} "
                             "(leave out --out for a temporary folder)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserInputError(f"--out is a file: {args.out}")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not stages:
        raise UserInputError(f"--stages takes a comma-separated subset of {','.join(STAGES)}, got {args.stages!r}")
    torch.set_num_threads(args.threads)
    log = train_all(args.out, QUICK if args.quick else Budget(), stages)
    print(f"done in {log['last_run_seconds'] / 60:.1f} min; weights {log['weight_bytes'] / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
