import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)  # tiny models: threads cost more than they bring

from tests.tiny_models import save_tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict:
    """Tiny random models saved once per test session, loaded through the real `from_pretrained` paths."""
    return save_tiny_models(str(tmp_path_factory.mktemp("tiny_models")))
