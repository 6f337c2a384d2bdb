"""Tests for recsys.evaluation.metrics: hand-computed cases and agreement with ranx."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluation.metrics import (
    METRICS,
    compute_metrics,
    hit_rate_at_k,
    map_at_k,
    map_at_k_capped,
    mrr_at_k,
    ndcg_at_k,
    ndcg_at_k_graded,
    parse_metric,
    precision_at_k,
    recall_at_k,
    recall_at_k_capped,
)

L2 = math.log2


@pytest.fixture
def tiny():
    # 6 items; user 0 relevant {1, 3, 5} (gains 3, 1, 2); user 1 relevant {0}; user 2 none
    rel = sp.csr_matrix(np.array([
        [0, 3, 0, 1, 0, 2],
        [1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ], dtype=np.float32))
    rec = np.array([
        [3, 0, 1, 4],    # hits at ranks 1 and 3
        [2, 4, -1, -1],  # no hit, padded
        [0, 1, 2, 3],
    ])
    return rec, rel


def test_hand_computed_values(tiny):
    rec, rel = tiny
    k = 4
    np.testing.assert_allclose(precision_at_k(rec, rel, k)[:2], [2 / 4, 0])
    np.testing.assert_allclose(recall_at_k(rec, rel, k)[:2], [2 / 3, 0])
    np.testing.assert_allclose(recall_at_k_capped(rec, rel, 2)[:2], [1 / 2, 0])  # 1 hit / min(2,3)
    dcg = 1 / L2(2) + 1 / L2(4)
    idcg = 1 / L2(2) + 1 / L2(3) + 1 / L2(4)
    np.testing.assert_allclose(ndcg_at_k(rec, rel, k)[:2], [dcg / idcg, 0])
    gdcg = 1 / L2(2) + 3 / L2(4)  # item 3 gain 1 at rank 1, item 1 gain 3 at rank 3
    gidcg = 3 / L2(2) + 2 / L2(3) + 1 / L2(4)
    np.testing.assert_allclose(ndcg_at_k_graded(rec, rel, k)[:2], [gdcg / gidcg, 0])
    ap = (1 / 1 + 2 / 3)
    np.testing.assert_allclose(map_at_k(rec, rel, k)[:2], [ap / 3, 0])
    np.testing.assert_allclose(map_at_k_capped(rec, rel, 2)[:2], [1 / 2, 0])  # (1/1) / min(2,3)
    np.testing.assert_allclose(mrr_at_k(rec, rel, k)[:2], [1.0, 0])
    np.testing.assert_allclose(hit_rate_at_k(rec, rel, k)[:2], [1.0, 0])
    for fn in METRICS.values():  # user without relevant items -> NaN
        assert np.isnan(fn(rec, rel, k)[2])


def test_cutoff_and_short_lists(tiny):
    rec, rel = tiny
    # k=1: only item 3 for user 0 -> hit; mrr 1; precision 1
    assert precision_at_k(rec, rel, 1)[0] == 1.0
    # second hit at rank 3 is beyond k=2
    assert recall_at_k(rec, rel, 2)[0] == pytest.approx(1 / 3)
    # k larger than the list: padding counts as misses, precision divides by k
    assert precision_at_k(rec, rel, 8)[0] == pytest.approx(2 / 8)
    # mrr: first hit at rank 2
    r = np.array([[0, 1]])
    g = sp.csr_matrix(np.array([[0, 1.0]]))
    assert mrr_at_k(r, g, 2)[0] == 0.5 and mrr_at_k(r, g, 1)[0] == 0.0


def test_perfect_ranking_scores_one():
    rel = sp.csr_matrix(np.array([[0, 2, 0, 5], [1, 1, 1, 0]], dtype=np.float32))
    rec = np.array([[3, 1, -1], [0, 1, 2]])
    for name in ("recall", "ndcg", "ndcg_graded", "map", "mrr", "hit_rate", "map_capped"):
        np.testing.assert_allclose(METRICS[name](rec, rel, 3), [1.0, 1.0], err_msg=name)
    # graded: swapping the order of unequal gains is no longer ideal
    assert ndcg_at_k_graded(np.array([[1, 3, -1]]), rel[0], 3)[0] < 1.0
    assert ndcg_at_k(np.array([[1, 3, -1]]), rel[0], 3)[0] == pytest.approx(1.0)


def test_nonpositive_entries_are_not_relevant():
    rel = sp.csr_matrix(np.array([[0, -1.0, 0.0, 1.0]]))
    rel[0, 2] = 0.0  # explicit stored zero
    rec = np.array([[1, 2, 3]])
    assert recall_at_k(rec, rel, 3)[0] == 1.0  # n_rel = 1
    assert precision_at_k(rec, rel, 3)[0] == pytest.approx(1 / 3)


def test_validation_errors(tiny):
    rec, rel = tiny
    with pytest.raises(ValueError, match="k=0"):
        precision_at_k(rec, rel, 0)
    with pytest.raises(ValueError, match="rows"):
        precision_at_k(rec[:2], rel, 3)
    with pytest.raises(ValueError, match="outside"):
        precision_at_k(np.array([[9], [0], [0]]), rel, 1)
    with pytest.raises(ValueError, match="repeats"):
        precision_at_k(np.array([[1, 1], [0, 2], [0, 3]]), rel, 2)
    with pytest.raises(ValueError, match="integer array"):
        precision_at_k(rec.astype(float), rel, 2)
    with pytest.raises(ValueError, match="scipy.sparse"):
        precision_at_k(rec, rel.toarray(), 2)


def test_parse_metric_and_compute():
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert parse_metric(" Recall @ 5 ") == ("recall", 5)
    assert parse_metric("mrr", default_k=7) == ("mrr", 7)
    with pytest.raises(ValueError, match="valid names"):
        parse_metric("ndgc@10")
    with pytest.raises(ValueError, match="cut-off"):
        parse_metric("ndcg")
    with pytest.raises(ValueError, match="k must be"):
        parse_metric("ndcg@0")
    with pytest.raises(ValueError, match="form"):
        parse_metric("ndcg@x")
    rec = np.array([[0, 1]])
    rel = sp.csr_matrix(np.array([[1.0, 0.0]]))
    out = compute_metrics(rec, rel, ["precision@2", "hit_rate"], default_k=1)
    assert out["precision@2"][0] == 0.5 and out["hit_rate@1"][0] == 1.0


def _random_case(seed, n_users=60, n_items=40, k_max=12):
    rng = np.random.default_rng(seed)
    grades = rng.integers(1, 4, size=(n_users, n_items)) * (rng.random((n_users, n_items)) < 0.15)
    grades[0] = 0
    grades[0, 5] = 2  # at least one user with a single relevant item
    rel = sp.csr_matrix(grades.astype(np.float64))
    rec = np.full((n_users, k_max), -1, dtype=np.int64)
    for u in range(n_users):
        length = int(rng.integers(1, k_max + 1))
        rec[u, :length] = rng.permutation(n_items)[:length]
    return rec, rel


@pytest.mark.slow  # ranx import + numba compilation take ~20 s on 2 cores
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_ranx(seed):
    ranx = pytest.importorskip("ranx", reason="ranx not installed (pip install ranx)")
    rec, rel = _random_case(seed)
    users = np.flatnonzero(np.diff(rel.indptr) > 0)

    def qrels(binary):
        return ranx.Qrels({
            f"q{u:06d}": {f"d{i}": (1 if binary else int(v))
                      for i, v in zip(rel[u].indices, rel[u].data, strict=True)}
            for u in users
        })

    # scores strictly decreasing along each list: ranx's order is our order, no ties
    run = ranx.Run({
        f"q{u:06d}": {f"d{i}": float(rec.shape[1] - j) for j, i in enumerate(rec[u]) if i >= 0}
        for u in users
    })
    for k in (1, 5, 10):
        pairs = {
            "precision": ("precision", True), "recall": ("recall", True),
            "ndcg": ("ndcg", True), "ndcg_graded": ("ndcg", False), "map": ("map", True),
            "mrr": ("mrr", True), "hit_rate": ("hit_rate", True),
        }
        for ours, (theirs, binary) in pairs.items():
            expected = ranx.evaluate(qrels(binary), run, f"{theirs}@{k}", return_mean=False,
                                     make_comparable=True)
            got = METRICS[ours](rec, rel, k)[users]
            np.testing.assert_allclose(got, np.asarray(expected, dtype=float), rtol=0, atol=1e-9,
                                       err_msg=f"{ours}@{k} seed {seed}")


def test_capped_variants_relation():
    rec, rel = _random_case(5)
    n_rel = np.diff(rel.indptr)
    users = n_rel > 0
    k = 5
    scale = n_rel[users] / np.minimum(k, n_rel[users])
    np.testing.assert_allclose(recall_at_k_capped(rec, rel, k)[users],
                               recall_at_k(rec, rel, k)[users] * scale)
    np.testing.assert_allclose(map_at_k_capped(rec, rel, k)[users],
                               map_at_k(rec, rel, k)[users] * scale)


def test_vectorised_on_large_input_is_fast():
    import time

    rng = np.random.default_rng(0)
    n_users, n_items, k = 20_000, 5_000, 20
    nnz = int(n_users * n_items * 0.002)
    rel = sp.csr_matrix((np.ones(nnz), (rng.integers(0, n_users, nnz),
                                         rng.integers(0, n_items, nnz))), shape=(n_users, n_items))
    rec = np.argsort(rng.random((n_users, 200)), axis=1)[:, :k]
    t = time.perf_counter()
    for fn in METRICS.values():
        fn(rec, rel, k)
    assert time.perf_counter() - t < 5.0  # about 0.4 s here


def _tied_case(seed, n_users=50, n_items=30, k=10):
    """Random graded qrels and scores drawn from 4 values, so most lists hold ties."""
    from recsys.evaluation.evaluator import rank_candidates

    rng = np.random.default_rng(seed)
    grades = rng.integers(1, 4, size=(n_users, n_items)) * (rng.random((n_users, n_items)) < 0.2)
    grades[0] = 0
    grades[0, 3] = 1
    rel = sp.csr_matrix(grades.astype(np.float64))
    scores = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float64)
    cand = np.tile(np.arange(n_items), (n_users, 1))
    ids, top = rank_candidates(scores, cand, k)
    return rel, scores, ids, top


def _docno(i, n_items):
    # trec_eval breaks score ties by docno in *descending* string order; numbering documents
    # n_items - i makes that the same as our rule (item index ascending)
    return f"d{n_items - int(i):06d}"


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_trec_eval_on_tied_runs(seed):
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pip install pytrec_eval-terrier")
    rel, scores, ids, top = _tied_case(seed)
    n_users, n_items = rel.shape
    assert (np.diff(top, axis=1) == 0).any()  # the lists really contain ties
    users = np.flatnonzero(np.diff(rel.indptr) > 0)

    def qrels(binary):
        return {f"u{u}": {_docno(i, n_items): (1 if binary else int(v))
                          for i, v in zip(rel[u].indices, rel[u].data, strict=True)} for u in users}

    for k in (1, 3, 10):
        # the run holds our top-k with the model's raw (tied) scores; trec_eval re-sorts them
        run = {f"u{u}": {_docno(i, n_items): float(scores[u, i]) for i in ids[u, :k]} for u in users}
        binary = pytrec_eval.RelevanceEvaluator(qrels(True), {f"P.{k}", f"recall.{k}",
                                                              f"ndcg_cut.{k}", f"map_cut.{k}",
                                                              "recip_rank", f"success.{k}"})
        graded = pytrec_eval.RelevanceEvaluator(qrels(False), {f"ndcg_cut.{k}"})
        rb, rg = binary.evaluate(run), graded.evaluate(run)
        pairs = {"precision": (rb, f"P_{k}"), "recall": (rb, f"recall_{k}"),
                 "ndcg": (rb, f"ndcg_cut_{k}"), "ndcg_graded": (rg, f"ndcg_cut_{k}"),
                 "map": (rb, f"map_cut_{k}"), "mrr": (rb, "recip_rank"),
                 "hit_rate": (rb, f"success_{k}")}
        for ours, (res, key) in pairs.items():
            expected = np.array([res[f"u{u}"][key] for u in users])
            got = METRICS[ours](ids, rel, k)[users]
            # trec_eval prints 4 decimals but pytrec_eval returns full doubles
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9,
                                       err_msg=f"{ours}@{k} seed {seed}")


@pytest.mark.slow  # ranx import + numba compilation
def test_agrees_with_ranx_on_tied_runs():
    ranx = pytest.importorskip("ranx", reason="ranx not installed (pip install ranx)")
    rel, _, ids, _ = _tied_case(3)
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    k = 10
    # ranx orders ties with an unstable argsort, so it gets our tie-broken order as scores
    run = ranx.Run({f"q{u:04d}": {f"d{i}": float(k - j) for j, i in enumerate(ids[u])}
                    for u in users})
    for ours, (theirs, graded) in {"precision": ("precision", False), "recall": ("recall", False),
                                   "ndcg": ("ndcg", False), "ndcg_graded": ("ndcg", True),
                                   "map": ("map", False), "mrr": ("mrr", False),
                                   "hit_rate": ("hit_rate", False)}.items():
        qrels = ranx.Qrels({f"q{u:04d}": {f"d{i}": (int(v) if graded else 1)
                                          for i, v in zip(rel[u].indices, rel[u].data,
                                                          strict=True)} for u in users})
        expected = ranx.evaluate(qrels, run, f"{theirs}@{k}", return_mean=False)
        np.testing.assert_allclose(METRICS[ours](ids, rel, k)[users], np.asarray(expected, float),
                                   rtol=0, atol=1e-9, err_msg=ours)


def test_compute_metrics_matches_single_calls_and_rejects_beyond_names():
    rec, rel = _random_case(7)
    out = compute_metrics(rec, rel, [f"{m}@{k}" for m in METRICS for k in (1, 4, 12)])
    for key, vals in out.items():
        name, k = parse_metric(key)
        np.testing.assert_array_equal(vals, METRICS[name](rec, rel, k), err_msg=key)
    with pytest.raises(ValueError, match="not a relevance metric"):
        compute_metrics(rec, rel, ["novelty@5"])
    assert parse_metric("coverage@10") == ("coverage", 10)
