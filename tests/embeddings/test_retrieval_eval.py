"""Retrieval metrics on similarity matrices whose right answer is known."""

import numpy as np
import pytest

from embeddings.retrieval_eval import (
    chance_level,
    max_over_frames,
    ranks_from_scores,
    retrieval_metrics,
    text_to_video_ranks,
    video_to_text_ranks,
)


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_caption_i_matches_video_i_gives_perfect_scores():
    v = unit(np.random.default_rng(0), 40, 32)
    cv = np.arange(40)
    sim = v @ v.T  # caption i embedded exactly as video i
    r = text_to_video_ranks(sim, cv)
    assert (r == 1).all()
    m = retrieval_metrics(r)
    assert m == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "median_rank": 1.0, "mean_rank": 1.0,
                 "n_queries": 40}
    rows, r2 = video_to_text_ranks(sim, cv)
    assert (rows == cv).all() and (r2 == 1).all()


def test_shuffled_control_sits_at_chance():
    rng = np.random.default_rng(1)
    n = 400
    v = unit(rng, n, 64)
    t = v[rng.permutation(n)]  # captions belong to other videos than their labels say
    m = retrieval_metrics(text_to_video_ranks(t @ v.T, np.arange(n)))
    c = chance_level(n)
    assert c["mean_rank"] == (n + 1) / 2 and c["recall@10"] == pytest.approx(10 / n)
    assert abs(m["mean_rank"] - c["mean_rank"]) < 30  # sd of the mean ~ 115 / sqrt(400) ~ 6
    assert abs(m["median_rank"] - c["median_rank"]) < 50
    assert m["recall@10"] < 0.08 and m["recall@1"] < 0.03


def test_recall_matches_direct_numpy_with_several_captions_per_video():
    rng = np.random.default_rng(2)
    n_videos, n_caps = 30, 75
    cv = np.concatenate([np.arange(n_videos), rng.integers(0, n_videos, n_caps - n_videos)])
    sim = rng.standard_normal((n_caps, n_videos))  # continuous: no ties
    order = np.argsort(-sim, axis=1)
    direct_t2v = np.array([np.flatnonzero(order[i] == cv[i])[0] + 1 for i in range(n_caps)])
    r = text_to_video_ranks(sim, cv)
    assert (r == direct_t2v).all()
    for k in (1, 5, 10):
        assert retrieval_metrics(r)[f"recall@{k}"] == pytest.approx(np.mean(direct_t2v <= k))
    assert retrieval_metrics(r)["median_rank"] == np.median(direct_t2v)
    # video to text: position of the first own caption in the video's ranking of all captions
    order_v = np.argsort(-sim.T, axis=1)
    direct_v2t = np.array([np.flatnonzero(cv[order_v[j]] == j)[0] + 1 for j in range(n_videos)])
    rows, r2 = video_to_text_ranks(sim, cv)
    assert (rows == np.arange(n_videos)).all() and (r2 == direct_v2t).all()


def test_ties_are_pessimistic_by_default_and_order_free():
    const = np.zeros((5, 5))
    assert (text_to_video_ranks(const, np.arange(5)) == 5).all()  # constant scorer: worst rank
    assert (text_to_video_ranks(const, np.arange(5), ties="optimistic") == 1).all()
    s = np.array([[0.5, 0.5, 0.2]])
    assert ranks_from_scores(s, np.array([[False, True, False]]))[0] == 2
    assert ranks_from_scores(s, np.array([[False, True, False]]), ties="optimistic")[0] == 1
    assert ranks_from_scores(s[:, ::-1], np.array([[False, True, False]]))[0] == 2  # column order irrelevant
    # two correct captions tied at the top do not push each other down
    assert ranks_from_scores(np.array([[0.9, 0.9, 0.1]]), np.array([[True, True, False]]))[0] == 1
    with pytest.raises(ValueError, match="ties"):
        text_to_video_ranks(const, np.arange(5), ties="random")


def test_metric_values_on_hand_ranks():
    m = retrieval_metrics(np.array([1, 2, 3, 10]))
    assert m["recall@1"] == 0.25 and m["recall@5"] == 0.75 and m["recall@10"] == 1.0
    assert m["median_rank"] == 2.5 and m["mean_rank"] == 4.0
    with pytest.raises(ValueError, match="1-based"):
        retrieval_metrics(np.array([0, 1]))


def test_max_over_frames_equals_brute_force():
    rng = np.random.default_rng(3)
    t, f = unit(rng, 7, 16), unit(rng, 20, 16)
    fv = rng.permutation(np.repeat(np.arange(5), 4))
    got = max_over_frames(t, f, fv, 5)
    want = np.stack([(t @ f[fv == j].T).max(axis=1) for j in range(5)], axis=1)
    assert np.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="no frames"):
        max_over_frames(t, f, np.zeros(20, dtype=int), 2)


def test_chance_level_formulas():
    c = chance_level(16)
    assert c == pytest.approx({"recall@1": 1 / 16, "recall@5": 5 / 16, "recall@10": 10 / 16,
                               "median_rank": 8.5, "mean_rank": 8.5})
    # two correct among 16 (video to text with two captions per video): checked by enumeration
    ranks = [min(a, b) for a in range(1, 17) for b in range(1, 17) if a != b]
    c2 = chance_level(16, 2)
    assert c2["mean_rank"] == pytest.approx(np.mean(ranks))
    assert c2["recall@5"] == pytest.approx(np.mean(np.array(ranks) <= 5))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="no correct candidate"):
        ranks_from_scores(np.zeros((2, 3)), np.zeros((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="non-finite"):
        text_to_video_ranks(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="caption_video"):
        text_to_video_ranks(np.zeros((2, 3)), np.array([0, 3]))
