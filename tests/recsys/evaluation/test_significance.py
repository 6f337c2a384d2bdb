"""Bootstrap intervals and paired tests: known answers and scipy agreement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recsys.evaluation.significance import bootstrap_ci, paired_test


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(0)
    v = rng.random(500)
    lo, hi = bootstrap_ci(v, n_resamples=500, seed=1)
    assert lo < v.mean() < hi
    assert (lo, hi) == bootstrap_ci(v, n_resamples=500, seed=1)
    # about mean +- 1.96 * sd / sqrt(n)
    half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
    assert hi - lo == pytest.approx(2 * half, rel=0.15)
    assert bootstrap_ci(np.full(10, 0.3)) == pytest.approx((0.3, 0.3))
    lo99, hi99 = bootstrap_ci(v, confidence=0.99, n_resamples=500, seed=1)
    assert lo99 <= lo and hi99 >= hi


def test_bootstrap_ci_errors():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, np.nan])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([0.1, 0.2], confidence=1.5)


def test_paired_tests_match_scipy_and_detect_a_shift():
    rng = np.random.default_rng(2)
    a = rng.random(200)
    b = a - 0.05 + rng.normal(0, 0.02, 200)
    t = paired_test(a, b, test="t")
    assert t["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert t["mean_diff"] == pytest.approx(0.05, abs=0.01) and t["p_value"] < 1e-6
    w = paired_test(a, b, test="wilcoxon")
    assert w["p_value"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    p = paired_test(a, b, test="permutation", n_resamples=2000)
    assert p["p_value"] < 0.01
    same = paired_test(a, a.copy(), test="t")
    assert same["p_value"] == 1.0
    noise = paired_test(a, a + rng.normal(0, 0.1, 200), test="permutation", n_resamples=2000)
    assert noise["p_value"] > 0.01
    with pytest.raises(ValueError, match="same users"):
        paired_test(a, b[:10])
    with pytest.raises(ValueError, match="test="):
        paired_test(a, b, test="z")
