"""Time and short-term features of the learned stage on a tiny log whose values are known by hand.

Log (user: item@time), T = 5000, span = 5000 - 1000 = 4000::

    u0: i0@1000  i1@2000  i2@3000
    u1: i0@1500  i1@2500
    u2: i3@4000  i0@5000          (i4 never seen)
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import EASE, LTRRecommender, Popularity
from recsys.models.ltr_features import (
    build_context,
    context_feature_names,
    context_features,
    resolve_time_kind,
)

LOG = [(0, 0, 1000), (0, 1, 2000), (0, 2, 3000), (1, 0, 1500), (1, 1, 2500), (2, 3, 4000), (2, 0, 5000)]


def tiny(log=LOG, n_users=3, n_items=5):
    u, i, t = (np.array(v) for v in zip(*log, strict=True))
    ui = sp.csr_matrix((np.ones(u.size, np.float32), (u, i)), shape=(n_users, n_items))
    times = sp.csr_matrix((t.astype(np.float64), (u, i)), shape=(n_users, n_items))
    return ui, times


def features(ctx, pairs, emb=None):
    """{name: values} for (user, item) pairs, one batch row per pair."""
    users = np.array([p[0] for p in pairs])
    r = np.arange(len(pairs))
    c = np.array([p[1] for p in pairs])
    cols = context_features(ctx, r, c, users, emb)
    names = context_feature_names(ctx["kind"], ctx["windows"], emb is not None)
    assert len(cols) == len(names)
    return dict(zip(names, cols, strict=True))


@pytest.fixture(scope="module")
def ctx():
    ui, times = tiny()
    return build_context(ui, times, "global", windows=(0.25, 0.5), n_last=2)


def test_item_age_user_recency_and_age_at_user(ctx):
    f = features(ctx, [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 3), (2, 1)])
    np.testing.assert_allclose(f["item_age"][:4], [1.0, 0.75, 0.5, 0.25])
    assert np.isnan(f["item_age"][4])  # never seen
    # u0's last time 3000: i3 first appeared 1000 s (0.25 span) after it
    np.testing.assert_allclose(f["item_age_at_user"][3], (3000 - 4000) / 4000)
    np.testing.assert_allclose(f["user_recency"][[0, 5, 6]], [0.5, 0.625, 0.0])


def test_recent_popularity_windows(ctx):
    f = features(ctx, [(0, i) for i in range(5)])
    # last 25% of the span: t >= 4000 -> u2's i3 and i0 (share of 3 users)
    np.testing.assert_allclose(f["recent_pop_0.25"], [1 / 3, 0, 0, 1 / 3, 0], rtol=1e-6)
    # last 50%: t >= 3000 -> also u0's i2
    np.testing.assert_allclose(f["recent_pop_0.5"], [1 / 3, 0, 1 / 3, 1 / 3, 0], rtol=1e-6)
    # within 0.25 * span = 1000 s of u0's last time 3000: i1@2000, i1@2500, i2@3000, i3@4000
    np.testing.assert_allclose(f["pop_near_user"], [0, 2 / 3, 1 / 3, 1 / 3, 0], rtol=1e-6)


def test_short_term_transitions_and_cooccurrence(ctx):
    np.testing.assert_array_equal(ctx["last_items"], [[2, 1], [1, 0], [0, 3]])
    f = features(ctx, [(1, 2), (0, 3), (2, 1)])
    # transitions: 0->1 twice, 1->2 once, 3->0 once; u1's last items are 1 then 0
    np.testing.assert_allclose(f["st_trans_last1"], [1.0, 0.0, 1.0])  # P(2|1), P(3|2), P(1|0)
    np.testing.assert_allclose(f["st_trans_lastm"], [0.5, 0.0, 0.5])  # mean with P(.|2nd last)
    # co-occurrence cosine: users(i0)={0,1,2}, users(i1)={0,1}, users(i2)={0}
    np.testing.assert_allclose(f["st_cooc_last1"][0], 1 / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(f["st_cooc_lastm"][0], (1 / np.sqrt(2) + 1 / np.sqrt(3)) / 2, rtol=1e-6)
    np.testing.assert_allclose(f["st_cooc_last1"][2], 2 / np.sqrt(6), rtol=1e-6)  # cos(i0, i1)


def test_content_similarity_to_last_items(ctx):
    emb = np.eye(5, dtype=np.float32)
    emb[2] = emb[1]  # i2 looks exactly like i1
    f = features(ctx, [(1, 2), (0, 4)], emb)
    np.testing.assert_allclose(f["st_content_last1"], [1.0, 0.0])  # u1's last item is i1
    np.testing.assert_allclose(f["st_content_lastm"], [0.5, 0.0])


def test_only_entries_of_user_items_are_seen_no_leakage():
    ui, times = tiny()
    full = build_context(ui, times, "global", windows=(0.25,), n_last=2)
    # hold out u2's i0@5000 (the label): its time must vanish from every feature
    fit = ui.copy().tolil()
    fit[2, 0] = 0
    fit = sp.csr_matrix(fit)
    fit.eliminate_zeros()
    part = build_context(fit, times, "global", windows=(0.25,), n_last=2)
    assert part["scalars"][0] == 4000 and full["scalars"][0] == 5000  # latest *visible* time
    np.testing.assert_array_equal(part["last_items"][2], [3, -1])
    f = features(part, [(2, 0)])
    assert f["st_trans_last1"][0] == 0.0  # the 3 -> 0 transition was the label
    np.testing.assert_allclose(f["recent_pop_0.25"], [0.0])


def test_unknown_user_gets_nan_and_kinds():
    ui, times = tiny()
    ctx = build_context(ui, times, "order", n_last=2)
    names = context_feature_names("order", ctx["windows"], False)
    assert "item_age" not in names and "st_trans_last1" in names
    cols = context_features(ctx, np.array([0]), np.array([1]), None, None)
    assert all(np.isnan(v[0]) for v in cols)
    assert resolve_time_kind("auto", None) is None
    assert resolve_time_kind("auto", times) == "order"  # 5000 < 1e6: looks like positions
    assert resolve_time_kind("auto", times * 1e6) == "global"
    with pytest.raises(ValueError, match="time_features='clock'"):
        resolve_time_kind("clock", times)
    bad = ui.copy().tolil()
    bad[0, 4] = 1
    with pytest.raises(ValueError, match="no time"):
        build_context(sp.csr_matrix(bad), times, "global")


def cyclic_sequences(n_users=120, n_items=30, length=6, seed=0):
    """Each user watches consecutive items (mod n_items) from a random start; the next item is
    the successor of the last one, which a bag-of-items model cannot tell from the predecessor
    of the first."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, n_users)
    seqs = [(s + np.arange(length + 1)) % n_items for s in starts]
    return seqs, n_items


def to_matrices(seqs, n_items, drop_last):
    rows, cols, pos = [], [], []
    for u, s in enumerate(seqs):
        s = s[:-drop_last] if drop_last else s
        rows += [u] * len(s)
        cols += list(s)
        pos += list(range(1, len(s) + 1))
    ui = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(seqs), n_items))
    t = sp.csr_matrix((np.array(pos, np.float64), (rows, cols)), shape=ui.shape)
    return ui, t


def test_order_features_learn_the_next_item():
    seqs, n = cyclic_sequences()
    train, times = to_matrices(seqs, n, 1)  # the last item of each sequence is the test
    test = np.array([s[-1] for s in seqs])
    fit_ui, _ = to_matrices(seqs, n, 2)  # ranker labels: the last training item
    held = train - fit_ui
    hits = {}
    for kind in ("none", "order"):
        model = LTRRecommender(sources={"ease": EASE(l2=1.0), "popularity": Popularity()},
                               n_candidates=10, num_boost_round=60, time_features=kind)
        model.fit(train, interaction_times=times, validation=(fit_ui, held))
        ids, _ = model.recommend(np.arange(len(seqs)), train, k=1)
        hits[kind] = float(np.mean(ids[:, 0] == test))
    assert hits["order"] >= 0.95 > hits["none"] + 0.2, hits
    assert "st_trans_last1" in model.feature_names_


def test_save_load_keeps_time_context(tmp_path):
    seqs, n = cyclic_sequences(n_users=60)
    train, times = to_matrices(seqs, n, 1)
    model = LTRRecommender(sources={"ease": EASE(l2=1.0)}, n_candidates=10, num_boost_round=20,
                           time_features="global")
    model.fit(train, interaction_times=times * 1e7)
    model.save(tmp_path / "m")
    back = LTRRecommender.load(tmp_path / "m")
    assert back.context_["kind"] == "global" and "item_age" in back.feature_names_
    users = np.arange(60)
    np.testing.assert_array_equal(model.recommend(users, train, k=5)[0], back.recommend(users, train, k=5)[0])


@pytest.mark.slow
def test_sasrec_is_a_source_with_score_and_rank():
    from recsys.models import SASRec

    seqs, n = cyclic_sequences(n_users=60)
    train, times = to_matrices(seqs, n, 1)
    sasrec = SASRec(embed_dim=8, num_layers=1, num_heads=1, max_length=8, epochs=2,
                    validation_users=10, progress=False)
    model = LTRRecommender(sources={"sasrec": sasrec, "popularity": Popularity()}, n_candidates=10,
                           num_boost_round=20)
    model.fit(train, interaction_times=times)
    assert model.feature_names_[:2] == ["sasrec__score", "sasrec__rank"]
    assert model.report_["recall_at_budget"]["sasrec"] > 0
    expl = model.explain([0], train[[0]], k=3)[0]
    assert expl and all(item["item_index"] not in set(seqs[0][:-1]) for item in expl)
