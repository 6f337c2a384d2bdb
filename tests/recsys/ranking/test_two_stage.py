"""Fusion, candidate sources and the two-stage recommender on fixtures with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluation.evaluator import evaluate
from recsys.models import EASE
from recsys.ranking.candidates import ContentSource, PopularitySource
from recsys.ranking.fusion import reciprocal_rank_fusion, weighted_score_fusion
from recsys.ranking.two_stage import COLD_START_FALLBACK, TwoStageRecommender, long_term_interest

N = 20


def checkerboard(n: int = N) -> sp.csr_matrix:
    """Even users liked every even item, odd users every odd item, diagonal held out."""
    dense = np.zeros((n, n), dtype=np.float32)
    for u in range(n):
        dense[u, u % 2 :: 2] = 1.0
        dense[u, u] = 0.0
    return sp.csr_matrix(dense)


def board_embeddings(n: int = N) -> np.ndarray:
    """Group direction (even / odd) plus a small own direction per item."""
    e = np.zeros((n, 2 + n), dtype=np.float32)
    e[np.arange(n), np.arange(n) % 2] = 1.0
    e[np.arange(n), 2 + np.arange(n)] = 0.1
    return e


def test_rrf_matches_hand_computation():
    a = (np.array([[3, 1, 2]]), np.array([[0.9, 0.5, 0.1]], np.float32))
    b = (np.array([[1, 4, -1]]), np.array([[7.0, 2.0, -np.inf]], np.float32))
    fused = reciprocal_rank_fusion({"a": a, "b": b}, rrf_k=60)[0]
    got = {i: s for i, s, _ in fused}
    assert got[1] == pytest.approx(1 / 62 + 1 / 61)
    assert got[3] == pytest.approx(1 / 61) and got[4] == pytest.approx(1 / 62)
    order = [i for i, _, _ in fused]
    assert order[0] == 1 and set(order) == {1, 2, 3, 4} and -1 not in order
    assert order.index(3) < order.index(2)
    prov = dict((i, p) for i, _, p in fused)
    assert prov[1] == {"a": {"rank": 2, "score": 0.5}, "b": {"rank": 1, "score": 7.0}}
    # ties (items 3 and 4 weighted equal by rank 1 vs 2? no: 1/61 > 1/62) -> 3 before 4
    assert order.index(3) < order.index(4)


def test_rrf_weights_and_errors():
    a = (np.array([[0]]), np.array([[1.0]]))
    b = (np.array([[1]]), np.array([[1.0]]))
    fused = reciprocal_rank_fusion({"a": a, "b": b}, weights={"b": 2.0})[0]
    assert fused[0][0] == 1
    with pytest.raises(ValueError, match="unknown sources"):
        reciprocal_rank_fusion({"a": a}, weights={"z": 1.0})
    with pytest.raises(ValueError, match="empty"):
        reciprocal_rank_fusion({})
    with pytest.raises(ValueError, match="rrf_k"):
        reciprocal_rank_fusion({"a": a}, rrf_k=-1)


def test_weighted_fusion_minmax():
    a = (np.array([[0, 1, 2]]), np.array([[10.0, 5.0, 0.0]]))
    b = (np.array([[2]]), np.array([[3.0]]))
    fused = weighted_score_fusion({"a": a, "b": b})[0]
    got = {i: s for i, s, _ in fused}
    assert got == {0: 1.0, 1: 0.5, 2: 1.0}
    assert [i for i, _, _ in fused] == [0, 2, 1]  # tie 0/2 -> lower index first


def test_long_term_interest_uses_most_similar_history_items():
    e = np.array([[1, 0], [0, 1], [0.6, 0.8], [1, 0]], np.float32)
    # history {0, 1}; candidate 3 equals item 0 -> top-1 similarity 1.0, top-2 mean 0.5
    assert long_term_interest(e, np.array([0, 1]), np.array([3]), top_m=1).tolist() == [1.0]
    np.testing.assert_allclose(long_term_interest(e, np.array([0, 1]), np.array([3, 2]), 2),
                               [0.5, 0.7], rtol=1e-6)
    assert long_term_interest(e, np.array([], int), np.array([3]), 5).tolist() == [0.0]
    with pytest.raises(ValueError, match="top_m"):
        long_term_interest(e, np.array([0]), np.array([1]), 0)


def test_sources_never_propose_seen_items():
    x = checkerboard()
    pop = PopularitySource(x).retrieve(np.arange(N), x, 5)
    content = ContentSource(board_embeddings()).retrieve(np.arange(N), x, 5)
    for ids, _ in (pop, content):
        for u in range(N):
            assert not set(ids[u][ids[u] >= 0].tolist()) & set(x[u].indices.tolist())
    # content: the held-out same-group item is the nearest unseen neighbour of the profile
    assert content[0][:, 0].tolist() == list(range(N))


@pytest.fixture(scope="module")
def two_stage():
    x = checkerboard()
    ease = EASE(l2=1.0).fit(x)
    return x, TwoStageRecommender(ease, x, board_embeddings(), n_candidates=5, interest_weight=0.3)


def test_two_stage_right_answer_and_provenance(two_stage):
    x, ts = two_stage
    res = ts.explain(np.arange(N), x, k=3)
    for u in range(N):
        assert res[u][0]["item_index"] == u
        top = res[u][0]
        assert {"collaborative", "content"} <= set(top["sources"])
        assert top["sources"]["collaborative"]["rank"] == 1
        assert top["fallback"] is None
        assert not {r["item_index"] for r in res[u]} & set(x[u].indices.tolist())
        scores = [r["score"] for r in res[u]]
        assert scores == sorted(scores, reverse=True)
    ids, scores = ts.recommend(np.arange(N), x, k=3)
    assert ids[:, 0].tolist() == list(range(N)) and ids.shape == (N, 3)
    one, _ = ts.recommend(4, x[[4]], k=3)
    np.testing.assert_array_equal(one, ids[4])


def test_two_stage_cold_start_user_gets_popularity_fallback(two_stage):
    x, ts = two_stage
    res = ts.explain([N], sp.csr_matrix((1, N), dtype=np.float32), k=4)[0]
    assert len(res) == 4
    assert all(r["fallback"] == COLD_START_FALLBACK for r in res)
    assert all(set(r["sources"]) == {"popularity"} for r in res)


def test_two_stage_evaluates_and_rejects_bad_input(two_stage):
    x, ts = two_stage
    test = sp.csr_matrix(np.eye(N, dtype=np.float32))  # the held-out diagonal
    res = evaluate(ts, x, test, k=1, metrics=["hit_rate@1"])
    assert res.summary["hit_rate@1"] == 1.0
    with pytest.raises(ValueError, match="always removes seen"):
        ts.recommend(0, x[[0]], filter_already_liked_items=False)
    with pytest.raises(ValueError, match=r"expected \(1, 20\)"):
        ts.explain([0], x, k=2)
    with pytest.raises(ValueError, match="fusion"):
        TwoStageRecommender(EASE(l2=1.0).fit(x), x, fusion="borda")


def random_log(n_users=30, n_items=25, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))


def test_default_two_stage_keeps_the_collaborative_order(caplog):
    """Issue 19 item 4: the untuned default is never worse than its collaborative source."""
    x = random_log()
    ease = EASE(l2=5.0).fit(x)
    with caplog.at_level("WARNING", logger="recsys.ranking.two_stage"):
        ts = TwoStageRecommender(ease, x, n_candidates=25)
    assert ts.fusion == "collaborative" and "not chosen on validation" not in caplog.text
    users = np.flatnonzero(np.diff(x.indptr) > 0)  # users with history (empty rows: popularity)
    assert users.size > 20
    np.testing.assert_array_equal(ts.recommend(users, x[users], k=5)[0],
                                  ease.recommend(users, x[users], k=5)[0])
    # popularity still shows up in the provenance of the items it also proposed
    res = ts.explain(users, x[users], k=5)
    assert any("popularity" in r["sources"] for lst in res for r in lst)
    with caplog.at_level("WARNING", logger="recsys.ranking.two_stage"):
        TwoStageRecommender(ease, x, fusion="rrf")
    assert "not chosen on validation" in caplog.text


def test_two_stage_save_load_round_trip_and_similar_items(two_stage, tmp_path):
    x, ts = two_stage
    ts.save(tmp_path / "ts")
    assert (tmp_path / "ts" / "two_stage.json").is_file()
    back = TwoStageRecommender.load(tmp_path / "ts")
    assert back.config() == ts.config()
    a, b = ts.recommend(np.arange(N), x, k=3), back.recommend(np.arange(N), x, k=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    ids, _ = back.similar_items(0, k=3)
    assert np.all(ids % 2 == 0) and 0 not in ids
    with pytest.raises(FileNotFoundError, match="two_stage.json"):
        TwoStageRecommender.load(tmp_path)


def test_two_stage_similar_items_falls_back_to_embeddings():
    from recsys.models import Popularity

    x = checkerboard()
    ts = TwoStageRecommender(Popularity().fit(x), x, board_embeddings())
    ids, scores = ts.similar_items([1, 2], k=2)
    assert np.all(ids[0] % 2 == 1) and np.all(ids[1] % 2 == 0)
    with pytest.raises(NotImplementedError):
        TwoStageRecommender(Popularity().fit(x), x).similar_items(1)
