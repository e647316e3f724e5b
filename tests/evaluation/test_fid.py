"""FID: the Fréchet distance against float64 references, pytorch-fid's network offline, and the fid.py script."""
import os

import numpy as np
import pytest
import pytorch_fid.inception as pytorch_fid_inception
import torch
from scipy import linalg

from evaluation import fid, inception
from evaluation.score_files import save_npz
from tests.support.evaluation_helpers import assert_one_line_error, make_folder


def _reference_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula with scipy's general matrix square root, in float64 (fine for well-conditioned input)."""
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(linalg.sqrtm(sigma1 @ sigma2).real))


def _gaussian_statistics(rng, samples: int, dims: int, scale: float = 1.0, shift: float = 0.0):
    mixing = rng.normal(size=(dims, dims)) / np.sqrt(dims)
    data = rng.normal(size=(samples, dims)) @ mixing * scale + shift
    return data.mean(axis=0), np.atleast_2d(np.cov(data, rowvar=False))


@pytest.mark.parametrize("dims", [1, 3, 64])
def test_frechet_distance_matches_float64_reference(dims):
    rng = np.random.default_rng(dims)
    stats1 = _gaussian_statistics(rng, 4 * dims + 10, dims)
    stats2 = _gaussian_statistics(rng, 5 * dims + 10, dims, scale=1.3, shift=0.2)
    expected = _reference_distance(*stats1, *stats2)
    assert expected > 0.1
    assert fid.frechet_distance(*stats1, *stats2) == pytest.approx(expected, rel=1e-9)
    assert fid.frechet_distance(*stats2, *stats1) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_near_singular_commuting_covariances():
    """Covariances with a shared eigenbasis and mostly zero (or 1e-14) eigenvalues, as with fewer images than
    dimensions: the distance has the closed form |Δmu|² + Σ (√a - √b)²."""
    rng = np.random.default_rng(0)
    dims = 200
    basis, _ = np.linalg.qr(rng.normal(size=(dims, dims)))
    a = np.where(rng.random(dims) < 0.1, rng.uniform(0.5, 2, dims), 1e-14)
    b = np.where(rng.random(dims) < 0.1, rng.uniform(0.5, 2, dims), 0.0)
    mu1, mu2 = rng.normal(size=dims), rng.normal(size=dims)
    sigma1, sigma2 = (basis * a) @ basis.T, (basis * b) @ basis.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-7)


def test_frechet_distance_of_rank_deficient_statistics_with_themselves_is_zero():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(8, 300)) * 5  # rank 7 in 300 dimensions
    mu, sigma = data.mean(axis=0), np.cov(data, rowvar=False)
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-8 * np.trace(sigma))
    # a tiny imaginary part (as scipy's sqrtm can leave in saved statistics) does not matter
    assert fid.frechet_distance(mu, sigma + 1e-12j, mu, sigma) == pytest.approx(0, abs=1e-8 * np.trace(sigma))


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_random_weight_network_is_pytorch_fid_architecture():
    network = inception.fid_inception(inception.RANDOM_WEIGHTS)
    state = torch.random.get_rng_state()
    again = inception.fid_inception(inception.RANDOM_WEIGHTS)
    assert torch.equal(torch.random.get_rng_state(), state)  # seeded privately: the caller's random state is kept
    assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), again.state_dict().values()))
    kinds = {type(m) for m in network.modules()}
    assert {pytorch_fid_inception.FIDInceptionA, pytorch_fid_inception.FIDInceptionC,
            pytorch_fid_inception.FIDInceptionE_1, pytorch_fid_inception.FIDInceptionE_2} <= kinds
    assert network.resize_input and network.normalize_input
    images = torch.rand(2, 3, 32, 32)
    features = network(images)[0]
    assert features.shape == (2, inception.FEATURE_DIM, 1, 1)
    # untrained but not degenerate: different images give clearly different features
    assert (features[0] - features[1]).abs().max() > 1e-3 * features.abs().max()


def test_local_weights_file_is_loaded_through_pytorch_fid(tmp_path):
    """A file in the format of pt_inception-2015-12-05 (torchvision Inception3 keys) feeds pytorch-fid's own loader."""
    with inception._keep_random_initialization():
        torchvision_format = pytorch_fid_inception.fid_inception_v3()
    weights = tmp_path / inception.FID_WEIGHTS_FILE
    torch.save(torchvision_format.state_dict(), weights)
    network = inception.fid_inception(str(weights))
    assert torch.equal(network.state_dict()["blocks.0.0.conv.weight"],
                       torchvision_format.state_dict()["Conv2d_1a_3x3.conv.weight"])
    assert torch.equal(network.state_dict()["blocks.3.2.branch_pool.conv.weight"],
                       torchvision_format.state_dict()["Mixed_7c.branch_pool.conv.weight"])

    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(inception.UserInputError, match="cannot load inception weights"):
        inception.fid_inception(str(tmp_path / "bad.pth"))
    with pytest.raises(inception.UserInputError, match="not found"):
        inception.fid_inception(str(tmp_path / "missing.pth"))


def test_fid_of_a_folder_against_itself_is_zero_and_against_another_is_not(tmp_path, capsys):
    folder, other = str(tmp_path / "gen"), str(tmp_path / "other")
    make_folder(folder, 4, seed=0)
    make_folder(other, 4, seed=1, brightness=60)
    values = []
    for reference in (folder, other):
        fid.main([folder, reference, "--num_eval", "4", "--inception_weights", "random", "--num_workers", "0"])
        values.append(float(capsys.readouterr().out.strip().removeprefix("FID: ")))
    assert values[0] == pytest.approx(0, abs=1e-6)
    assert values[1] > 1e-3


def test_save_stats_writes_the_folders_statistics(tmp_path, capsys):
    """Statistics saved from a folder are the mean and covariance of its features under the same network."""
    reference = str(tmp_path / "reference")
    paths = make_folder(reference, 4, seed=1)
    stats_path = str(tmp_path / "ref.npz")
    fid.main(["--save-stats", reference, stats_path, "--inception_weights", "random", "--num_workers", "0"])
    features = inception.inception_features(inception.fid_inception(inception.RANDOM_WEIGHTS), paths, batch_size=3)
    with np.load(stats_path) as saved:
        assert saved["mu"].shape == (2048,) and saved["sigma"].shape == (2048, 2048)
        np.testing.assert_allclose(saved["mu"], features.mean(axis=0), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(saved["sigma"], np.cov(features.astype(np.float64), rowvar=False), atol=1e-7)
    assert set(os.listdir(tmp_path)) == {"reference", "ref.npz"}  # no temporary file left behind
    capsys.readouterr()
    with pytest.raises(SystemExit) as excinfo:
        fid.main(["--save-stats", reference, stats_path, "--inception_weights", "random"])
    assert_one_line_error(capsys, excinfo, "already exists")


def _bad_reference(tmp_path) -> str:
    path = str(tmp_path / "wrong.npz")
    save_npz(path, {"mean": np.zeros(2048), "cov": np.eye(2048)})
    return path


@pytest.mark.parametrize("case, fragments", [
    ("missing folder", ["image folder not found"]),
    ("too few images", ["fewer than --num_eval 10"]),
    ("unreadable image", ["cannot read image", "2.png"]),
    ("reference without mu/sigma", ["lacks mu and sigma"]),
    ("missing reference", ["reference statistics not found"]),
    ("text file as reference", ["is not an .npz file"]),
    ("bad flag", ["--num_eval"]),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, case, fragments):
    folder = str(tmp_path / "gen")
    make_folder(folder, 4, seed=0)
    reference = folder
    num_eval = "4"
    if case == "missing folder":
        folder = str(tmp_path / "nowhere")
    elif case == "too few images":
        num_eval = "10"
    elif case == "unreadable image":
        (tmp_path / "gen" / "2.png").write_bytes(b"\x89PNG truncated")
    elif case == "reference without mu/sigma":
        reference = _bad_reference(tmp_path)
    elif case == "missing reference":
        reference = str(tmp_path / "coco.npz")
    elif case == "text file as reference":
        reference = str(tmp_path / "captions.txt")
        (tmp_path / "captions.txt").write_text("a red circle\n")
    elif case == "bad flag":
        num_eval = "0"
    with pytest.raises(SystemExit) as excinfo:
        fid.main([folder, reference, "--num_eval", num_eval, "--inception_weights", "random", "--num_workers", "0"])
    assert_one_line_error(capsys, excinfo, *fragments)
