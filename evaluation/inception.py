"""pytorch-fid's InceptionV3 (TF-FID weights, pool3, 2048 dims) and its features for a list of images.

The network is pytorch-fid's own class, so FID values are comparable with the paper's (computed with pytorch-fid
against its `coco.npz`). pytorch-fid always downloads its weights from GitHub while building the network; the single
download call is swapped for a local file (offline users) or for the network's own random initialization (tests).
"""
import contextlib
import functools
import os
from typing import Callable, Iterator, List, Sequence
from unittest import mock

import numpy as np
import pytorch_fid.inception as pytorch_fid_inception
import torch
import torchvision.transforms.functional as TF
from pytorch_fid.inception import InceptionV3

from date.io.errors import UserInputError

from evaluation.image_folder import image_batches

FEATURE_DIM = 2048
FID_WEIGHTS_FILE = os.path.basename(pytorch_fid_inception.FID_WEIGHTS_URL)
RANDOM_WEIGHTS = "random"  # weights_path value for tests: same architecture, untrained


@contextlib.contextmanager
def _fid_weights_from(fetch: Callable[..., dict]) -> Iterator[None]:
    """Within the block, pytorch-fid gets its state dict from `fetch(url, ...)` instead of downloading it."""
    with mock.patch.object(pytorch_fid_inception, "load_state_dict_from_url", fetch):
        yield


def _check_weights_path(path: str | None) -> None:
    if path not in (None, RANDOM_WEIGHTS) and not os.path.isfile(path):
        raise UserInputError(f"inception weights not found: {path} (expected a copy of {FID_WEIGHTS_FILE})")


def _read_weights_file(path: str) -> Callable[..., dict]:
    _check_weights_path(path)

    def fetch(*args, **kwargs) -> dict:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a wrong or corrupt file: torch raises many types
            raise UserInputError(f"cannot load inception weights {path}: {e}") from None

    return fetch


def _signal_preserving_init(network: torch.nn.Module) -> dict:
    """He-normal convolutions: untrained features stay of order 1 through the 90-odd layers (PyTorch's default
    initialization shrinks them to ~1e-8), so tests can tell images apart. Returns the network's state dict."""
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return network.state_dict()


@contextlib.contextmanager
def _keep_random_initialization() -> Iterator[None]:
    """pytorch-fid builds torchvision's Inception3, patches FID blocks into it, then loads weights into it: hand it
    back its own randomly initialized state dict, so the result is exactly the FID architecture, untrained. The
    draw is seeded (without touching the caller's random state): every process gets the same network, so saved
    statistics and cached features stay comparable."""
    built = []
    build_torchvision_inception = pytorch_fid_inception._inception_v3

    def build_and_remember(*args, **kwargs):
        built.append(build_torchvision_inception(*args, **kwargs))
        return built[-1]

    with torch.random.fork_rng(devices=[]), \
            mock.patch.object(pytorch_fid_inception, "_inception_v3", build_and_remember), \
            _fid_weights_from(lambda *args, **kwargs: _signal_preserving_init(built[-1])):
        torch.manual_seed(0)
        yield


def fid_inception(weights_path: str | None = None) -> InceptionV3:
    """pytorch-fid's InceptionV3 in eval mode, returning pool3 features. Weights: downloaded by pytorch-fid (None),
    read from a local copy of `pt_inception-2015-12-05-6726825d.pth` (a path), or untrained ("random", for tests)."""
    if weights_path is None:
        source = contextlib.nullcontext()
    elif weights_path == RANDOM_WEIGHTS:
        source = _keep_random_initialization()
    else:
        source = _fid_weights_from(_read_weights_file(weights_path))
    try:
        with source:
            network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]], use_fid_inception=True)
    except OSError as e:  # the download failed (offline machine)
        raise UserInputError(f"cannot download pytorch-fid's Inception weights ({e}); pass --inception_weights with "
                             f"a local copy of {FID_WEIGHTS_FILE}") from None
    return network.eval()


@torch.no_grad()
def _pool3(network: InceptionV3, images: List[torch.Tensor], device: torch.device) -> np.ndarray:
    """Features of a batch; images of different sizes (e.g. COCO photos) go through the network one by one, which
    gives what a batch would, since the network resizes every input to 299×299 itself."""
    if all(image.shape == images[0].shape for image in images):
        groups = [torch.stack(images)]
    else:
        groups = [image[None] for image in images]
    features = [network(group.to(device))[0].flatten(1).cpu() for group in groups]
    return torch.cat(features).numpy()


def inception_features(network: InceptionV3, paths: Sequence[str], batch_size: int = 50, num_workers: int = 0,
                       desc: str = "inception features") -> np.ndarray:
    """pool3 features (N × 2048, float32) of image files fed as pytorch-fid feeds them: RGB in [0, 1], native size."""
    device = next(network.parameters()).device
    features = np.empty((len(paths), FEATURE_DIM), dtype=np.float32)
    start = 0
    for batch in image_batches(paths, TF.to_tensor, batch_size, num_workers, desc=desc):
        features[start:start + len(batch)] = _pool3(network, batch, device)
        start += len(batch)
    return features


class InceptionFeatures:
    """Features of image files, with the network built on first use: a run whose features are all cached (or whose
    inputs are wrong) never loads it."""

    def __init__(self, weights_path: str | None = None, device: torch.device = torch.device("cpu"),
                 batch_size: int = 50, num_workers: int = 0):
        _check_weights_path(weights_path)
        self.weights_path = weights_path
        # names the weights in cache fingerprints; a local copy of the FID weights counts as the same weights
        self.weights_id = "random" if weights_path == RANDOM_WEIGHTS else FID_WEIGHTS_FILE
        self.device = device
        self.batch_size = batch_size
        self.num_workers = num_workers

    @functools.cached_property
    def network(self) -> InceptionV3:
        return fid_inception(self.weights_path).to(self.device)

    def __call__(self, paths: Sequence[str], desc: str = "inception features") -> np.ndarray:
        return inception_features(self.network, paths, self.batch_size, self.num_workers, desc)
