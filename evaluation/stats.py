"""Uncertainty for per-image metrics: bootstrap intervals for a mean and paired comparisons of two methods.

The paper reports bare means over 5,000 images. Differences between methods are often a few thousandths of a CLIP
score, so the report adds how much those means would move under resampling of the prompts, and, because every method
is run on the same prompts, paired statistics that cancel the (large) prompt-to-prompt variation.
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import stats as scipy_stats

DEFAULT_RESAMPLES = 10_000
_CHUNK = 500  # resamples drawn at once: bounds memory at _CHUNK × n indices


def bootstrap_means(values: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Means of `resamples` samples drawn with replacement from `values` (each of the same size)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        stop = min(start + _CHUNK, resamples)
        means[start:stop] = values[rng.integers(0, len(values), size=(stop - start, len(values)))].mean(axis=1)
    return means


def bootstrap_ci(values: np.ndarray, level: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> Tuple[float, float]:
    """Percentile bootstrap interval for the mean of `values`."""
    if len(values) < 2:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    low, high = np.quantile(bootstrap_means(values, resamples, seed), [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class MeanWithCI:
    mean: float
    low: float
    high: float


def mean_with_ci(values: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> MeanWithCI:
    values = np.asarray(values, dtype=np.float64)
    return MeanWithCI(float(values.mean()), *bootstrap_ci(values, resamples=resamples, seed=seed))


@dataclass(frozen=True)
class PairedComparison:
    """Method minus baseline over the same prompts."""
    mean_diff: float
    low: float  # 95% paired bootstrap interval of mean_diff
    high: float
    win_rate: float  # share of prompts where the method scores higher; ties count one half
    wilcoxon_p: float  # two-sided Wilcoxon signed-rank test of "differences are symmetric around 0"


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided signed-rank p-value; 1.0 when every difference is zero (no evidence of any change)."""
    if not np.any(diff != 0):
        return 1.0
    return float(scipy_stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_comparison(method: np.ndarray, baseline: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0) -> PairedComparison:
    """Compare per-prompt scores; resampling prompts (not images independently) keeps each pair together."""
    method = np.asarray(method, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if method.shape != baseline.shape:
        raise ValueError(f"paired scores need equal lengths, got {method.shape} and {baseline.shape}")
    diff = method - baseline
    win_rate = float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))
    return PairedComparison(float(diff.mean()), *bootstrap_ci(diff, resamples=resamples, seed=seed), win_rate,
                            wilcoxon_p(diff))
