import os
import sys

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)  # tiny models: threads cost more than they bring

from tests.support.tiny_models import save_tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict:
    """Tiny random models saved once per test session, loaded through the real `from_pretrained` paths."""
    return save_tiny_models(str(tmp_path_factory.mktemp("tiny_models")))


@pytest.fixture(scope="session")
def family_dirs(tiny_dirs, tmp_path_factory) -> dict:
    """Tiny pipelines of the other families saved as local model folders (model_index.json names the class)."""
    from tests.support.tiny_families import tiny_flux, tiny_pixart, tiny_sd3, tiny_sdxl

    root = tmp_path_factory.mktemp("tiny_families")
    pipes = {"sdxl": tiny_sdxl(tiny_dirs["tokenizer"]), "sd3": tiny_sd3(tiny_dirs["tokenizer"]),
             "flux": tiny_flux(tiny_dirs["tokenizer"]), "pixart": tiny_pixart()}
    for name, pipe in pipes.items():
        pipe.save_pretrained(str(root / name))
    return {name: str(root / name) for name in pipes}


@pytest.fixture
def generate_date_cli(tiny_dirs, tmp_path, monkeypatch):
    """Run generate_date.py in process on the tiny pipeline and two captions: run(*flags, save=folder)."""
    import generate_date
    from date.io.captions import write_captions

    captions = str(tmp_path / "captions.csv")
    write_captions(captions, ["a red circle on the left", "a photo of a dog on a beach"])

    def run(*flags, save=tmp_path / "out"):
        monkeypatch.setattr(sys, "argv", ["generate_date.py", "--model", tiny_dirs["sd"], "--text_path", captions,
                                          "--steps", "3", "--bs", "2", "--device", "cpu", "--save_path", str(save), *flags])
        generate_date.main()

    return run
