"""Confidence intervals and paired significance tests over per-user metric arrays.

Offline metrics are means over users; users are the sampling unit. :func:`bootstrap_ci` gives a
percentile bootstrap interval of the mean (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13) with a fixed seed; :func:`paired_test` compares two models on the
*same* users with scipy (paired t-test, Wilcoxon signed-rank, or a sign-flip permutation test),
as recommended for IR evaluation by Smucker, Allan & Carterette, CIKM 2007.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["bootstrap_ci", "paired_test", "PAIRED_TESTS"]

PAIRED_TESTS = ("t", "wilcoxon", "permutation")


def _values(values, name="values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per user); got shape {v.shape}")
    if np.isnan(v).any():
        raise ValueError(f"{name} holds {int(np.isnan(v).sum())} NaN value(s); drop users without "
                         "test items before computing intervals (evaluate() already does)")
    return v


def bootstrap_ci(values, *, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0,
                 batch: int = 100) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    Parameters
    ----------
    values : array-like
        float (n_users,) per-user metric values, no NaN.
    confidence : float
        In (0, 1), e.g. 0.95 for a 95 % interval.
    n_resamples : int
        Bootstrap resamples (users drawn with replacement), >= 1.
    seed : int
        Seed of ``numpy.random.default_rng``: same inputs, same interval.
    batch : int
        Resamples drawn at once (memory: batch x n_users int64).

    Returns
    -------
    (low, high) : tuple of float
        The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled
        means; ``(nan, nan)`` for an empty array.

    Raises
    ------
    ValueError
        ``values`` not 1-D or holding NaN; ``confidence`` outside (0, 1); ``n_resamples`` < 1.
    """
    v = _values(values)
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence={confidence!r} must be in (0, 1), e.g. 0.95")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples={n_resamples!r} must be >= 1, e.g. 1000")
    if v.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(int(n_resamples))
    for s in range(0, int(n_resamples), int(batch)):
        n = min(int(batch), int(n_resamples) - s)
        means[s:s + n] = v[rng.integers(0, v.size, size=(n, v.size))].mean(axis=1)
    alpha = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def paired_test(a, b, *, test: str = "t", n_resamples: int = 10000, seed: int = 0) -> dict:
    """Paired test of ``mean(a) == mean(b)`` over the same users (two-sided).

    Parameters
    ----------
    a, b : array-like
        float (n_users,) per-user values of two models, aligned user by user, no NaN.
    test : str
        ``"t"`` (``scipy.stats.ttest_rel``), ``"wilcoxon"`` (``scipy.stats.wilcoxon``, zero
        differences dropped, scipy's default ``zero_method="wilcox"``) or ``"permutation"``
        (``scipy.stats.permutation_test`` with ``permutation_type="samples"``: random sign flips
        of the differences, ``n_resamples``, ``seed``).
    n_resamples, seed : int
        For ``"permutation"`` only.

    Returns
    -------
    dict
        ``test``, ``n`` (users), ``mean_a``, ``mean_b``, ``mean_diff`` (a - b), ``statistic``,
        ``p_value``. When every difference is zero the p-value is 1.0 (no evidence of a
        difference) and the statistic NaN.

    Raises
    ------
    ValueError
        Unknown ``test``; arrays of different lengths, not 1-D, holding NaN, or with fewer than
        two users.
    """
    a, b = _values(a, "a"), _values(b, "b")
    if test not in PAIRED_TESTS:
        raise ValueError(f"test={test!r}: expected one of {PAIRED_TESTS}")
    if a.shape != b.shape:
        raise ValueError(f"a has {a.size} users but b has {b.size}; pass the same users in the "
                         "same order (per-user rows of one evaluation protocol)")
    if a.size < 2:
        raise ValueError(f"paired_test needs at least 2 users; got {a.size}")
    d = a - b
    out = {"test": test, "n": int(a.size), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
           "mean_diff": float(d.mean())}
    if not np.any(d != 0):
        return {**out, "statistic": float("nan"), "p_value": 1.0}
    if test == "t":
        res = stats.ttest_rel(a, b)
    elif test == "wilcoxon":
        res = stats.wilcoxon(a, b)
    else:
        res = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis),
                                     permutation_type="samples", vectorized=True,
                                     n_resamples=int(n_resamples), alternative="two-sided",
                                     random_state=np.random.default_rng(seed))
    return {**out, "statistic": float(res.statistic), "p_value": float(res.pvalue)}
