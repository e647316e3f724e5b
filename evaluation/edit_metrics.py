"""Editing metrics: faithfulness to the source image (LPIPS, lower is closer) and following the target prompt (CLIP
score), per image and averaged with bootstrap intervals, as on the paper's LPIPS-vs-CLIP curve.

    python evaluation/edit_metrics.py FOLDER --edits FILE.csv          # -> FOLDER/edit_metrics.json
    python evaluation/edit_metrics.py --sweep PARENT --edits FILE.csv  # every edit folder in PARENT -> the plot

FOLDER is an output folder of `edit_date.py` (`<k>.png` for row k of the edits file). LPIPS is the `lpips` package's
(AlexNet, version 0.1) between the source image, prepared as the edit prepared it (the central square, resized to
the edited image's size), and the edited image; its AlexNet
backbone comes from `--lpips_weights` (torchvision's `alexnet-owt-7be5be79.pth`, for offline use) or from torchvision's
download. CLIP score is the cosine similarity of the edited image and the target prompt under OpenCLIP (the same model
as `evaluation/clip_score.py`). On the toy world, `--clip_model toy` is the toy CLIP and `--lpips_model toy` a
perceptual distance on the toy feature network (LPIPS's formula, uncalibrated: unit-normalized activations of each
stage, squared differences averaged over positions, summed over stages), reported under the same keys.

`edit_metrics.json`: `{"lpips": {"per_image": [...], "mean", "low", "high"}, "clip": {...}, "images": [k, ...],
"models": {...}}`. `--sweep` computes (or reads back) the metrics of every edit folder under PARENT and draws mean LPIPS
against mean CLIP score, baseline folders (`FIXED`) against DATE's, each point labelled by what differs between
the runs (ρ, skip, cfg_tar, ...): `PARENT/edit_sweep.png` and `PARENT/edit_sweep.json`.
"""
import json
import os
import sys
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from date.editing import square
from date.io.atomic import write_text
from date.io.devices import add_threads_flag, pick_device
from date.io.edits import check_image, read_edits
from date.io.errors import UserInputError, exit_on_user_error
from date.io.flags import Parser, non_negative_int, positive_int
from date.io.loading import ASSETS
from evaluation.stats import mean_with_ci

METRICS_FILE = "edit_metrics.json"
SWEEP_PLOT, SWEEP_TABLE = "edit_sweep.png", "edit_sweep.json"
TOY_CLIP, TOY_FEATURES = os.path.join(ASSETS, "toy", "clip"), os.path.join(ASSETS, "toy", "fid_net")


# --- the two distances ---------------------------------------------------------------------------------------------

def load_alexnet_lpips(weights: Optional[str] = None, random_backbone: bool = False):
    """The `lpips` package's LPIPS (AlexNet, v0.1; its calibrated linear layers ship with the package). The AlexNet
    backbone: torchvision's pretrained weights from the local file `weights`, random weights (`random_backbone`, for
    tests), or torchvision's own download."""
    import lpips

    if weights is not None and not os.path.isfile(weights):
        raise UserInputError(f"--lpips_weights: file not found: {weights}")
    offline = weights is not None or random_backbone
    try:
        with warnings.catch_warnings():  # lpips still calls torchvision's deprecated `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=offline, verbose=False)
    except (OSError, RuntimeError) as e:  # the backbone download, offline
        raise UserInputError(f"cannot load LPIPS's AlexNet backbone ({str(e).splitlines()[0]}); give the weights "
                             "file with --lpips_weights (torchvision's alexnet-owt-7be5be79.pth)") from None
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        slices = {name.split(".")[1]: name.split(".")[0] for name in model.net.state_dict()}  # "0" -> "slice1"
        mapped = {f"{slices[key.split('.')[1]]}.{key.removeprefix('features.')}": value
                  for key, value in state.items() if key.startswith("features.") and key.split(".")[1] in slices}
        missing = set(model.net.state_dict()) - set(mapped)
        if missing:
            raise UserInputError(f"--lpips_weights {weights} is not torchvision's AlexNet (missing {sorted(missing)[0]})")
        model.net.load_state_dict(mapped)
    return model.eval().requires_grad_(False)


class AlexLPIPS:
    name = "lpips-alex-v0.1"

    def __init__(self, weights: Optional[str] = None, random_backbone: bool = False, device="cpu") -> None:
        self.model = load_alexnet_lpips(weights, random_backbone).to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        """Distances of image pairs, B × 3 × H × W in [0, 1]."""
        return self.model(a.to(self.device) * 2 - 1, b.to(self.device) * 2 - 1).flatten().cpu().double().numpy()


class ToyPerceptual:
    """LPIPS's formula, uncalibrated, on the toy feature network (`date.toy.fid.FeatureNet`): the activations after
    each stage, unit-normalized over channels; squared differences averaged over positions; summed over stages."""

    name = "toy-perceptual"

    def __init__(self, path: str = TOY_FEATURES, device="cpu") -> None:
        from date.toy.fid import FeatureNet

        self.net = FeatureNet.from_pretrained(path).to(device)
        self.device = device

    def _stages(self, images: torch.Tensor) -> List[torch.Tensor]:
        out, x = [], images.to(self.device) * 2 - 1
        for layer in self.net.trunk:
            if isinstance(layer, (torch.nn.AdaptiveMaxPool2d, torch.nn.Flatten)):
                break
            x = layer(x)
            if isinstance(layer, torch.nn.SiLU):
                out.append(x)
        return out

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        total = 0
        for fa, fb in zip(self._stages(a), self._stages(b)):
            fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
            fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
            total = total + ((fa - fb) ** 2).sum(dim=1).mean(dim=(1, 2))
        return total.cpu().double().numpy()


class ClipScore:
    """Cosine similarity of an image and a prompt: OpenCLIP (as evaluation/clip_score.py), or a transformers CLIP
    folder ('toy': the toy CLIP)."""

    def __init__(self, model: str, pretrained: Optional[str], device) -> None:
        self.device = device
        if model == "toy" or (os.path.isdir(model) and os.path.isfile(os.path.join(model, "config.json"))):
            from date.scorers.clip import CLIPScorer

            self.scorer = CLIPScorer.from_pretrained(TOY_CLIP if model == "toy" else model).to(device)
            self.name = "toy-clip" if model == "toy" else f"clip:{model}"
            self.open_clip = None
        else:
            from evaluation.clip_score import OpenCLIPScore, model_id

            self.open_clip = OpenCLIPScore(model, pretrained, device)
            self.name = model_id(model, pretrained)

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        if self.open_clip is None:
            pixels = to_tensor(images)
            return self.scorer.score(pixels.to(self.device), list(prompts)).cpu().double().numpy()
        transform = self.open_clip.transform
        return self.open_clip.score_batch([transform(im) for im in images], list(prompts)).astype(np.float64)


def to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2).float() / 255


# --- one folder ----------------------------------------------------------------------------------------------------

def folder_images(folder: str, count: int) -> List[int]:
    """The rows k < count whose `<k>.png` is in the folder."""
    if not os.path.isdir(folder):
        raise UserInputError(f"not a folder: {folder}")
    present = [k for k in range(count) if os.path.isfile(os.path.join(folder, f"{k}.png"))]
    if not present:
        raise UserInputError(f"{folder} holds none of the edits' images (0.png … {count - 1}.png)")
    return present


def summary(values: np.ndarray, resamples: int) -> Dict:
    stats = mean_with_ci(values, resamples=resamples)
    return {"per_image": [float(v) for v in values], "mean": stats.mean, "low": stats.low, "high": stats.high}


def measure(folder: str, edits, lpips_fn, clip_fn, bs: int = 16, resamples: int = 10_000) -> Dict:
    """LPIPS to the source and CLIP score to the target prompt of every edited image in `folder`."""
    keys = folder_images(folder, len(edits))
    lpips_values, clip_values = [], []
    for start in range(0, len(keys), bs):
        batch = keys[start:start + bs]
        edited = [check_image(os.path.join(folder, f"{k}.png"), k) for k in batch]
        sources = [square(check_image(edits[k].image, k), im.size[0]) for k, im in zip(batch, edited)]
        lpips_values.append(lpips_fn(to_tensor(sources), to_tensor(edited)))
        clip_values.append(clip_fn(edited, [edits[k].target_prompt for k in batch]))
    return {"lpips": summary(np.concatenate(lpips_values), resamples),
            "clip": summary(np.concatenate(clip_values), resamples), "images": keys,
            "models": {"lpips": lpips_fn.name, "clip": clip_fn.name}}


def write_metrics(folder: str, metrics: Dict) -> str:
    path = os.path.join(folder, METRICS_FILE)
    write_text(path, json.dumps(metrics, indent=1) + "\n")
    return path


# --- a sweep -------------------------------------------------------------------------------------------------------

def edit_folders(parent: str) -> List[str]:
    """The subfolders of `parent` made by edit_date.py (their config.json records edit settings)."""
    if not os.path.isdir(parent):
        raise UserInputError(f"--sweep: not a folder: {parent}")
    found = []
    for name in sorted(os.listdir(parent)):
        config = os.path.join(parent, name, "config.json")
        if os.path.isfile(config):
            with open(config, encoding="utf-8") as f:
                if "edit" in json.load(f).get("settings", {}):
                    found.append(os.path.join(parent, name))
    if not found:
        raise UserInputError(f"--sweep: no edit_date.py output folder in {parent}")
    return found


def run_settings(folder: str) -> Dict[str, object]:
    """What a run's point is labelled by: DATE or not, ρ, skip, cfg_tar, cfg_src, η, update steps."""
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        settings = json.load(f)["settings"]
    edit, update = settings["edit"], settings.get("update")
    return {"method": "baseline" if settings["mode"] == "FIXED" else settings["mode"],
            "rho": update["lr_upt_prompt"] if update else None, "skip": edit["skip"], "cfg_tar": edit["cfg_tar"],
            "cfg_src": edit["cfg_src"], "eta": edit["eta"], "steps": edit["inversion_steps"],
            "updates": len(update["update_steps"]) if update else 0}


def point_label(settings: Dict, varying: Sequence[str]) -> str:
    names = {"rho": "ρ", "cfg_tar": "cfg_tar", "skip": "skip", "cfg_src": "cfg_src", "eta": "η", "steps": "N",
             "updates": "updates"}
    parts = [f"{names[key]} {settings[key]:g}" for key in varying
             if key != "method" and settings[key] is not None and not (key == "updates" and not settings[key])]
    return ", ".join(parts)


def sweep_plot(rows: Sequence[Dict], path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from evaluation.plots import save_figure

    keys = [k for k in ("rho", "skip", "cfg_tar", "cfg_src", "eta", "steps", "updates")
            if len({str(r["settings"][k]) for r in rows}) > 1]
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for method in sorted({r["settings"]["method"] for r in rows}, key=lambda m: (m != "baseline", m)):
        points = sorted((r for r in rows if r["settings"]["method"] == method), key=lambda r: r["lpips"]["mean"])
        xs = [r["lpips"]["mean"] for r in points]
        ys = [r["clip"]["mean"] for r in points]
        xerr = [[x - r["lpips"]["low"] for x, r in zip(xs, points)], [r["lpips"]["high"] - x for x, r in zip(xs, points)]]
        yerr = [[y - r["clip"]["low"] for y, r in zip(ys, points)], [r["clip"]["high"] - y for y, r in zip(ys, points)]]
        axes.errorbar(xs, ys, xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr), marker="o" if method == "baseline"
                      else "s", capsize=2, linestyle="-", label=method if method == "baseline" else f"DATE ({method})")
        for x, y, r in zip(xs, ys, points):
            axes.annotate(point_label(r["settings"], keys), (x, y), fontsize=7, xytext=(3, 3),
                          textcoords="offset points")
    axes.set_xlabel("LPIPS to the source ↓ (faithfulness)")
    axes.set_ylabel("CLIP score to the target ↑ (edit)")
    axes.legend(fontsize=8)
    save_figure(figure, path)


# --- the command ---------------------------------------------------------------------------------------------------

def parser() -> Parser:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", help="an edit_date.py output folder")
    p.add_argument("--edits", required=True, help="the edits file the folder was made from")
    p.add_argument("--sweep", default=None, metavar="PARENT", help="measure every edit folder in PARENT and plot "
                   "LPIPS against CLIP score")
    p.add_argument("--clip_model", default="ViT-g-14", help="OpenCLIP architecture or local dir, a transformers CLIP "
                   "folder, or 'toy'")
    p.add_argument("--pretrained", default="laion2b_s12b_b42k", help="OpenCLIP pretrained tag or checkpoint file")
    p.add_argument("--lpips_model", default="alex", choices=["alex", "toy"], help="LPIPS AlexNet, or the toy "
                   "perceptual distance")
    p.add_argument("--lpips_weights", default=None, help="torchvision AlexNet weights file for LPIPS's backbone "
                   "(offline); default: torchvision's download")
    p.add_argument("--max_cnt", type=non_negative_int, default=None, help="only the first rows of the edits file")
    p.add_argument("--bs", type=positive_int, default=16, help="images per forward pass")
    p.add_argument("--resamples", type=positive_int, default=10_000, help="bootstrap resamples")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    add_threads_flag(p)
    return p


@exit_on_user_error
def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parser().parse_args(argv)
    if (args.folder is None) == (args.sweep is None):
        raise UserInputError("give an edit folder, or --sweep PARENT (not both)")
    edits = read_edits(args.edits)[: args.max_cnt]
    folders = edit_folders(args.sweep) if args.sweep else [args.folder]
    for folder in folders:
        folder_images(folder, len(edits))
    device = pick_device(args.device)
    lpips_fn = ToyPerceptual(device=device) if args.lpips_model == "toy" else \
        AlexLPIPS(args.lpips_weights, device=device)
    clip_fn = ClipScore(args.clip_model, args.pretrained, device)
    rows = []
    for folder in folders:
        metrics = measure(folder, edits, lpips_fn, clip_fn, args.bs, args.resamples)
        write_metrics(folder, metrics)
        print(f"{folder}: LPIPS {metrics['lpips']['mean']:.4f} [{metrics['lpips']['low']:.4f}, "
              f"{metrics['lpips']['high']:.4f}], CLIP {metrics['clip']['mean']:.4f} [{metrics['clip']['low']:.4f}, "
              f"{metrics['clip']['high']:.4f}] ({len(metrics['images'])} images)")
        rows.append({"folder": os.path.basename(folder), **metrics})
    if not args.sweep:
        return rows[0]
    for row in rows:
        row["settings"] = run_settings(os.path.join(args.sweep, row["folder"]))
    table = [{k: v for k, v in row.items() if k not in ("lpips", "clip", "images")}
             | {"lpips": {k: row["lpips"][k] for k in ("mean", "low", "high")},
                "clip": {k: row["clip"][k] for k in ("mean", "low", "high")}} for row in rows]
    write_text(os.path.join(args.sweep, SWEEP_TABLE), json.dumps(table, indent=1) + "\n")
    sweep_plot(rows, os.path.join(args.sweep, SWEEP_PLOT))
    print(f"wrote {os.path.join(args.sweep, SWEEP_PLOT)} and {SWEEP_TABLE}", file=sys.stderr)
    return {"rows": table}


if __name__ == "__main__":
    main()
