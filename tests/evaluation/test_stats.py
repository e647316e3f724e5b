"""Bootstrap intervals and paired statistics on synthetic scores whose answers are known."""
import numpy as np
import pytest

from evaluation.stats import bootstrap_ci, mean_with_ci, paired_comparison, wilcoxon_p


def test_bootstrap_interval_of_constant_scores_is_a_point():
    assert bootstrap_ci(np.full(50, 0.31), resamples=200) == pytest.approx((0.31, 0.31))


def test_bootstrap_interval_matches_normal_theory():
    values = np.random.default_rng(0).normal(0.3, 0.05, size=2000)
    summary = mean_with_ci(values, resamples=4000)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # ≈ 0.0022
    assert summary.low < summary.mean < summary.high
    assert (summary.high - summary.low) / 2 == pytest.approx(half_width, rel=0.1)
    assert (summary.low + summary.high) / 2 == pytest.approx(values.mean(), abs=0.2 * half_width)


def test_bootstrap_is_reproducible_and_seeded():
    values = np.random.default_rng(1).normal(size=100)
    assert bootstrap_ci(values, resamples=500, seed=3) == bootstrap_ci(values, resamples=500, seed=3)
    assert bootstrap_ci(values, resamples=500, seed=3) != bootstrap_ci(values, resamples=500, seed=4)


def test_paired_comparison_of_a_constant_shift():
    baseline = np.random.default_rng(2).normal(0.3, 0.05, size=300)
    result = paired_comparison(baseline + 0.01, baseline, resamples=500)
    assert result.mean_diff == pytest.approx(0.01)
    assert (result.low, result.high) == pytest.approx((0.01, 0.01))
    assert result.win_rate == 1.0
    assert result.wilcoxon_p < 1e-10


def test_pairing_removes_prompt_variation():
    """A small consistent gain hidden in large prompt-to-prompt variation: the paired interval excludes 0 while the
    two unpaired intervals overlap."""
    rng = np.random.default_rng(3)
    prompt_effect = rng.normal(0.3, 0.05, size=500)
    baseline = prompt_effect + rng.normal(0, 0.002, size=500)
    method = prompt_effect + 0.003 + rng.normal(0, 0.002, size=500)
    paired = paired_comparison(method, baseline, resamples=2000)
    assert 0 < paired.low < 0.003 < paired.high
    assert mean_with_ci(method, 2000).low < mean_with_ci(baseline, 2000).high


def test_win_rate_counts_ties_as_half():
    result = paired_comparison(np.array([1.0, 2, 3, 4]), np.array([0.0, 2, 4, 3]), resamples=100)
    assert result.win_rate == pytest.approx(0.625)
    assert result.mean_diff == pytest.approx(0.25)


def test_wilcoxon_exact_small_sample():
    # 5 positive differences: exact two-sided p = 2 / 2^5
    assert wilcoxon_p(np.array([0.1, 0.2, 0.3, 0.4, 0.5])) == pytest.approx(0.0625)
    assert wilcoxon_p(np.zeros(10)) == 1.0
    symmetric = np.array([-0.3, -0.2, -0.1, 0.1, 0.2, 0.3])
    assert wilcoxon_p(symmetric) == pytest.approx(1.0)


def test_paired_comparison_rejects_unequal_lengths():
    with pytest.raises(ValueError):
        paired_comparison(np.zeros(3), np.zeros(4))
