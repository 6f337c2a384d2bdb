"""Hand-computed beyond-accuracy metrics: coverage, novelty, intra-list diversity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.evaluation.beyond_accuracy import (
    catalog_coverage,
    intra_list_diversity_at_k,
    novelty_at_k,
)


def test_catalog_coverage_counts_distinct_items_within_k():
    rec = np.array([[0, 1, 2], [1, 3, -1]])
    assert catalog_coverage(rec, 10, 3) == pytest.approx(4 / 10)
    assert catalog_coverage(rec, 10, 1) == pytest.approx(2 / 10)  # items 0 and 1
    assert catalog_coverage(np.full((2, 3), -1), 5, 3) == 0.0
    with pytest.raises(ValueError, match="n_catalog"):
        catalog_coverage(rec, 0, 3)
    with pytest.raises(ValueError, match="catalogue has 3"):
        catalog_coverage(rec, 3, 3)


def test_novelty_is_mean_self_information():
    counts = np.array([8, 4, 1, 0])  # 8 training users
    rec = np.array([[0, 1, -1], [2, 3, 0], [-1, -1, -1]])
    got = novelty_at_k(rec, counts, 8, 3)
    assert got[0] == pytest.approx((0.0 + 1.0) / 2)  # -log2(8/8), -log2(4/8)
    # an item with no training user counts as seen by one: -log2(1/8) = 3
    assert got[1] == pytest.approx((3.0 + 3.0 + 0.0) / 3)
    assert math.isnan(got[2])
    assert novelty_at_k(rec, counts, 8, 1)[1] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="n_train_users"):
        novelty_at_k(rec, counts, 4, 3)


def test_intra_list_diversity_by_hand():
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    rec = np.array([[0, 1, 2], [0, 0 + 3, -1], [1, -1, -1]])
    got = intra_list_diversity_at_k(rec, emb, 3)
    # pairs (0,1): cos 0; (0,2): cos -1; (1,2): cos 0 -> mean distance (1 + 2 + 1) / 3
    assert got[0] == pytest.approx(4 / 3)
    assert got[1] == pytest.approx(1 - 1 / math.sqrt(2))
    assert math.isnan(got[2])  # a single item has no pair
    # batching does not change the answer
    np.testing.assert_allclose(intra_list_diversity_at_k(rec, emb, 3, batch_size=1), got)
    with pytest.raises(ValueError, match="zero row"):
        intra_list_diversity_at_k(rec, np.zeros((4, 2)), 3)
    with pytest.raises(ValueError, match="repeats"):
        intra_list_diversity_at_k(np.array([[1, 1]]), emb, 2)


def test_diversity_matches_explicit_pairs_on_random_lists():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((40, 8))
    rec = np.array([rng.permutation(40)[:7] for _ in range(20)])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    expected = []
    for row in rec:
        sims = unit[row] @ unit[row].T
        iu = np.triu_indices(len(row), 1)
        expected.append(np.mean(1 - sims[iu]))
    np.testing.assert_allclose(intra_list_diversity_at_k(rec, emb, 7), expected, atol=1e-6)


def test_shared_lists_matrix_gives_the_same_numbers():
    from recsys.evaluation.metrics import METRICS, compute_metrics, lists_to_csr

    rng = np.random.default_rng(1)
    n_items = 50
    rec = np.array([rng.permutation(n_items)[:8] for _ in range(30)])
    rec[3, 5:] = -1
    rel = (rng.random((30, n_items)) < 0.2).astype(float)
    import scipy.sparse as sp

    rel = sp.csr_matrix(rel * rng.integers(1, 4, rel.shape))
    lists = lists_to_csr(rec, n_items, 8)
    names = [f"{m}@{k}" for m in METRICS for k in (2, 8)]
    a, b = compute_metrics(rec, rel, names), compute_metrics(lists, rel, names)
    for key in names:
        np.testing.assert_allclose(a[key], b[key], err_msg=key)
    emb = rng.standard_normal((n_items, 4))
    counts = rng.integers(0, 10, n_items)
    for k in (3, 8):
        np.testing.assert_allclose(novelty_at_k(rec, counts, 10, k), novelty_at_k(lists, counts, 10, k))
        np.testing.assert_allclose(intra_list_diversity_at_k(rec, emb, k),
                                   intra_list_diversity_at_k(lists, emb, k), atol=1e-6)
        assert catalog_coverage(rec, n_items, k) == catalog_coverage(lists, n_items, k)
    with pytest.raises(ValueError, match="repeats"):
        lists_to_csr(np.array([[1, 1]]), 5, 2)
