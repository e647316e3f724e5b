"""Zero-shot FID of generated images against reference statistics (the paper's `coco.npz`) or a reference folder.

    python evaluation/fid.py <generated_dir> <coco.npz | reference_dir> [--num_eval 5000]
    python evaluation/fid.py --save_stats <reference_dir> <out.npz>

Features are pytorch-fid's (TF-FID InceptionV3, pool3, images fed as RGB in [0, 1] at their own size), as in the
paper. The generated folder contributes `0.png .. <num_eval-1>.png`; a reference folder contributes all its images.
"""
import os
from typing import Callable, Sequence, Tuple

import numpy as np
from scipy.linalg import lapack

from date.io import flags
from date.io.devices import pick_device
from date.io.errors import UserInputError, exit_on_user_error
from evaluation import cli
from evaluation.image_folder import all_image_paths, generated_image_paths
from evaluation.inception import FEATURE_DIM, RANDOM_WEIGHTS, InceptionFeatures
from evaluation.score_files import save_npz

Statistics = Tuple[np.ndarray, np.ndarray]


def _psd_factor(matrix: np.ndarray) -> np.ndarray:
    """R (d × rank) with R Rᵀ = matrix, for a symmetric positive semi-definite matrix, by pivoted Cholesky (LAPACK
    pstrf). It stops at the numerical rank (remaining pivots below d·eps·max diagonal), so covariances of fewer
    images than dimensions give thin factors, and it costs a fraction of an eigendecomposition."""
    factor, pivots, rank, info = lapack.dpstrf(matrix, tol=-1, lower=1)
    if info < 0:
        raise ValueError(f"LAPACK dpstrf rejected argument {-info}")
    columns = np.tril(factor)[:, :rank]  # past `rank`, LAPACK leaves the unfactored remainder
    result = np.empty_like(columns)
    result[pivots - 1] = columns  # Pᵀ A P = L Lᵀ, so A = (P L)(P L)ᵀ: row i of L is row pivots[i] of R
    return result


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|² + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^½).

    With sigma1 = R Rᵀ, the eigenvalues of sigma1 sigma2 are those of the symmetric PSD matrix Rᵀ sigma2 R, so
    Tr((sigma1 sigma2)^½) is the sum of the square roots of its eigenvalues (R is taken from whichever covariance has
    the lower rank). Unlike scipy's general `sqrtm` (pytorch-fid), this stays real and accurate for singular or
    near-singular covariances (fewer images than 2048 dimensions): there is no imaginary part to discard and no
    diagonal offset to add. Everything is float64; a rounding-level negative result (identical statistics) is
    reported as 0.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.real(np.asarray(s)).astype(np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    factor1, factor2 = _psd_factor(sigma1), _psd_factor(sigma2)
    factor, other = (factor1, sigma2) if factor1.shape[1] <= factor2.shape[1] else (factor2, sigma1)
    product = factor.T @ other @ factor
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2) if product.size else np.zeros(0)
    trace_sqrt_product = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product))


def feature_statistics(features: np.ndarray) -> Statistics:
    """Mean and (unbiased) covariance of features, in float64 as pytorch-fid computes them."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def load_statistics(path: str) -> Statistics:
    """`mu` and `sigma` from a reference .npz (pytorch-fid format, e.g. the paper's coco.npz)."""
    if not os.path.isfile(path):
        raise UserInputError(f"reference statistics not found: {path}")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # an .npz is a zip archive
            raise UserInputError(f"{path} is not an .npz file; expected pytorch-fid statistics (mu and sigma) or a "
                                 "folder of reference images")
    try:
        with np.load(path) as stats:
            arrays = {key: stats[key] for key in stats.files if key in ("mu", "sigma")}
            keys = stats.files
    except (OSError, ValueError) as e:
        raise UserInputError(f"cannot read reference statistics {path}: {e}") from None
    missing = [key for key in ("mu", "sigma") if key not in arrays]
    if missing:
        raise UserInputError(f"{path} lacks {' and '.join(missing)} (keys: {', '.join(keys)}); "
                             f"expected pytorch-fid statistics")
    mu, sigma = arrays["mu"], arrays["sigma"]
    if mu.shape != (FEATURE_DIM,) or sigma.shape != (FEATURE_DIM, FEATURE_DIM):
        raise UserInputError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not {FEATURE_DIM}-dimensional "
                             f"pool3 statistics")
    return mu, sigma


class Reference:
    """What FID compares against: fixed statistics (an .npz file) or all images of a folder, checked on opening so
    that a wrong reference fails before any feature is computed."""

    def __init__(self, path: str):
        self.path = path
        is_file = path.endswith(".npz") or os.path.isfile(path)
        self._statistics = load_statistics(path) if is_file else None
        self.image_paths = None if is_file else all_image_paths(path)

    def statistics(self, features: Callable[[Sequence[str], str], np.ndarray]) -> Statistics:
        if self._statistics is None:
            self._statistics = feature_statistics(features(self.image_paths, "reference features"))
        return self._statistics


def _parse_args(argv: Sequence[str] | None):
    parser = flags.Parser(description="Zero-shot FID with pytorch-fid's InceptionV3 (as in the DATE paper).")
    parser.add_argument("paths", nargs=2, metavar="PATH",
                        help="<generated_dir> <reference.npz | reference_dir>, or with --save_stats <dir> <out.npz>")
    parser.add_argument("--save_stats", "--save-stats", action="store_true",
                        help="write mu/sigma of all images of the first folder to the second path (.npz)")
    parser.add_argument("--num_eval", type=flags.positive_int, default=5000,
                        help="evaluate generated images 0.png .. <num_eval-1>.png")
    parser.add_argument("--inception_weights", default=None,
                        help=f"local copy of pytorch-fid's weights (pt_inception-2015-12-05-6726825d.pth) instead of "
                             f"downloading them; '{RANDOM_WEIGHTS}' builds an untrained network (smoke tests only)")
    cli.add_loader_args(parser, default_bs=50)
    return parser.parse_args(argv)


def _save_stats(image_dir: str, out_path: str, features: InceptionFeatures) -> None:
    if not out_path.endswith(".npz"):
        raise UserInputError(f"--save_stats output must end with .npz: {out_path}")
    if os.path.exists(out_path):
        raise UserInputError(f"{out_path} already exists; remove it or choose another name")
    paths = all_image_paths(image_dir)
    mu, sigma = feature_statistics(features(paths, "reference features"))
    save_npz(out_path, {"mu": mu, "sigma": sigma})
    print(f"Saved statistics of {len(paths)} images to {out_path}")


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    features = InceptionFeatures(args.inception_weights, pick_device(args.device), args.bs, cli.num_workers(args))
    if args.save_stats:
        _save_stats(*args.paths, features)
        return
    generated_dir, reference_path = args.paths
    paths = generated_image_paths(generated_dir, args.num_eval)
    reference = Reference(reference_path)
    mu, sigma = feature_statistics(features(paths, "generated features"))
    print(f"FID: {frechet_distance(mu, sigma, *reference.statistics(features))}")


if __name__ == "__main__":
    main()
