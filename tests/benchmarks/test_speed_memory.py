"""The speed and memory benchmark: the SD 1.5 architecture it builds, and a whole run on the toy model (CPU)."""
import json
import os
import subprocess
import sys

import torch

from tests.support.paths import REPO as ROOT
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import sd15  # noqa: E402


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sd15_architecture_has_the_published_sizes():
    """Built on the meta device (no memory, no time): parameter counts of SD 1.5's UNet, VAE and text encoder, of
    CLIP ViT-L/14 and of TAESD as published."""
    pipe, (clip, tokenizer), tiny = sd15.build(torch.device("meta"), torch.float32, torch.float32)
    assert parameters(pipe.unet) == 859_520_964
    assert parameters(pipe.vae) == 83_653_863
    assert parameters(pipe.text_encoder) == 123_060_480
    assert parameters(clip) == 427_616_513
    assert parameters(tiny) == 2_445_063
    assert len(tokenizer) == 49408 and pipe.vae_scale_factor == 8


def test_benchmark_runs_every_configuration_on_the_toy_model(tmp_path):
    out = tmp_path / "result.json"
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "speed_memory.py"), "--arch", "toy", "--device", "cpu",
           "--bs", "2", "--steps", "4", "--skip_freq", "2", "--dtypes", "fp32", "--json", str(out)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["dtype"], r["config"]) for r in rows] == [("fp32", c) for c in ("fixed", "date", "lean", "fast")]
    assert all(r["seconds"] > 0 and r["peak_gib"] > 0 for r in rows)
    assert "| fp32 | DATE --lean |" in result.stdout
