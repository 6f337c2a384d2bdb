"""The learned second stage (LTRRecommender) on a checkerboard whose right answer is obvious."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import EASE, ItemKNN, LTRRecommender, NotFittedError, Popularity, Recommender
from recsys.models.ltr import carve_holdout

N = 40


def checkerboard(n: int = N) -> sp.csr_matrix:
    """Even users liked every even item, odd users every odd item, diagonal held out."""
    dense = np.zeros((n, n), dtype=np.float32)
    for u in range(n):
        dense[u, u % 2 :: 2] = 1.0
        dense[u, u] = 0.0
    return sp.csr_matrix(dense)


def board_embeddings(n: int = N) -> np.ndarray:
    e = np.zeros((n, 2 + n), dtype=np.float32)
    e[np.arange(n), np.arange(n) % 2] = 1.0
    e[np.arange(n), 2 + np.arange(n)] = 0.1
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def precision_at_1(model, x) -> float:
    ids, _ = model.recommend(np.arange(x.shape[0]), x, k=1)
    return float(np.mean(ids[:, 0] == np.arange(x.shape[0])))


@pytest.fixture(scope="module")
def fitted():
    x = checkerboard()
    sources = {"ease": EASE(l2=1.0), "itemknn": ItemKNN(neighbors=10), "popularity": Popularity()}
    model = LTRRecommender(sources=sources, n_candidates=10, num_boost_round=50)
    model.fit(x, item_embeddings=board_embeddings())
    return model, x


def test_learned_stage_is_as_good_as_its_best_source(fitted):
    model, x = fitted
    ease = EASE(l2=1.0).fit(x)
    assert precision_at_1(ease, x) == 1.0
    assert precision_at_1(model, x) == 1.0
    # never recommends a seen item, never a wrong-group item in the top half of the group
    ids, scores = model.recommend(np.arange(N), x, k=5)
    assert not x[np.repeat(np.arange(N), 5), ids.ravel()].any()
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_report_recall_features_and_provenance(fitted):
    model, x = fitted
    rep = model.report_
    assert rep["recall_union"] >= max(rep["recall_at_budget"].values()) - 1e-12
    assert rep["recall_union"] > 0.9  # held-out items are same-group: the sources find them
    assert set(rep["feature_importance_gain"]) == set(model.feature_names_)
    assert {"ease__score", "ease__rank", "content_mean", "content_max"} <= set(model.feature_names_)
    out = model.explain([0, 1], x[[0, 1]], k=2)
    assert [r["item_index"] for r in out[0]][0] == 0 and out[1][0]["item_index"] == 1
    assert "ease" in out[0][0]["sources"] and out[0][0]["sources"]["ease"]["rank"] >= 1


def test_save_load_round_trip_is_a_folder_without_pickle(fitted, tmp_path):
    model, x = fitted
    model.save(tmp_path / "ltr")
    assert (tmp_path / "ltr" / "booster.txt").read_text().startswith("tree")
    meta = json.loads((tmp_path / "ltr" / "meta.json").read_text())
    assert meta["sources"] == ["ease", "itemknn", "popularity"]
    loaded = Recommender.load(tmp_path / "ltr")
    assert isinstance(loaded, LTRRecommender)
    a = model.recommend(np.arange(N), x, k=5)
    b = loaded.recommend(np.arange(N), x, k=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    ids, _ = loaded.similar_items(0, k=3)
    assert np.all(ids % 2 == 0)  # EASE's item-item weights: same group


def test_trained_model_folder_round_trip(fitted, tmp_path):
    from recsys.ranking.artifacts import TrainedModel, load_trained, save_trained

    model, x = fitted
    tm = TrainedModel(model=model, user_items=x, user_ids=np.array([str(i) for i in range(N)], object),
                      item_ids=np.array([str(i) for i in range(N)], object), info={"model": "ltr"})
    save_trained(tmp_path / "m", tm)
    assert (tmp_path / "m" / "model" / "booster.txt").is_file()
    back = load_trained(tmp_path / "m")
    np.testing.assert_array_equal(back.recommend(np.arange(N), k=3)[0], tm.recommend(np.arange(N), k=3)[0])


def test_unfitted_and_bad_input():
    x = checkerboard()
    with pytest.raises(NotFittedError):
        LTRRecommender().recommend(0, x[[0]])
    with pytest.raises(ValueError, match="sources is empty"):
        LTRRecommender(sources={}).fit(x)
    with pytest.raises(ValueError, match="budgets names unknown source"):
        LTRRecommender(sources={"pop": Popularity()}, budgets={"ease": 5}).fit(x)
    with pytest.raises(ValueError, match="holdout"):
        LTRRecommender(holdout=1.5).fit(x)
    with pytest.raises(ValueError, match="registry names"):
        LTRRecommender(sources=[EASE()]).fit(x)
    with pytest.raises(ValueError, match="relevance has shape"):
        LTRRecommender(sources={"pop": Popularity()}).fit(x, relevance=x[:5])
    with pytest.raises(ValueError, match="at least one interaction"):
        LTRRecommender().fit(sp.csr_matrix((3, 4), dtype=np.float32))


def test_carve_holdout_is_a_seeded_partition():
    x = checkerboard()
    fit, held = carve_holdout(x, 0.25, seed=3)
    assert (fit + held != x).nnz == 0
    assert fit.multiply(held).nnz == 0 and held.nnz > 0
    fit2, held2 = carve_holdout(x, 0.25, seed=3)
    assert (held2 != held).nnz == 0
    with pytest.raises(ValueError, match="ratio"):
        carve_holdout(x, 0.0)


def test_cli_train_ltr_tune_then_recommend(tmp_path, capsys):
    """`recsys train FILE --model ltr --tune` writes one folder that `recsys recommend` serves."""
    import pandas as pd

    from recsys.cli import main

    rows = []
    for u in range(40):
        rows += [(f"u{u}", f"v{j}", float(1 + j % 5), 1000 + j)
                 for j in range(u % 2, 30, 2) if j != u % 30]
    log = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).to_csv(log, index=False)
    out = tmp_path / "m"
    assert main(["train", str(log), "--model", "ltr", "--tune", "--out", str(out), "--param",
                 "sources=ease,popularity", "--param", "n_candidates=10", "--json"]) == 0
    info = json.loads((out / "model.json").read_text())
    assert set(info["sources"]) == {"ease", "popularity"}
    assert "tuning" in info["sources"]["ease"] and info["ranker"]["recall_union"] > 0
    assert (out / "model" / "booster.txt").is_file() and (out / "model" / "sources" / "ease").is_file()
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "u0", "-k", "3", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 3 and recs[0]["item_id"] == "v0"  # u0's one unseen same-group item



def test_cli_train_ltr_says_what_it_serves():
    """`recsys train --model ltr` prints candidate recall, the guard's numbers, the top features
    as shares of the gain, and which model it serves (the ranker, or a source it fell back to)."""
    from recsys.cli.train import _ltr_summary

    rep = {"recall_at_budget": {"ease": 0.6, "popularity": 0.4}, "recall_union": 0.7,
           "guard_ndcg@10": {"ltr": 0.31, "ease": 0.3, "popularity": 0.2}, "best_iteration": 12,
           "feature_importance_gain": {"ease__rank": 3.0, "user_history": 1.0, "n_sources": 0.0},
           "fallback": None}
    text = _ltr_summary(rep)
    assert "ease 0.600, popularity 0.400; all sources 0.700" in text
    assert "ranker 0.3100 (best iteration 12); sources ease 0.3000, popularity 0.2000" in text
    assert "ease__rank 75.0, user_history 25.0, n_sources 0.0" in text
    assert text.rstrip().endswith("Serving the learned ranker")
    fell = _ltr_summary({**rep, "fallback": "ease"})
    assert "Serving 'ease' alone: the ranker did not beat it" in fell and "learned ranker" not in fell
    assert _ltr_summary(None) == "" and _ltr_summary({"fallback": None}) == ""


def test_train_ltr_takes_the_time_window_source_when_the_log_has_times():
    import pandas as pd

    from recsys.ranking.ltr_training import train_ltr

    rows = [(f"u{u}", f"v{(u + j) % 12}", 1000 + j) for u in range(30) for j in range(6)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    timed = train_ltr(df, {"sources": "ease,windowknn", "n_candidates": 5})
    assert set(timed.model.sources_) == {"ease", "windowknn"}
    assert timed.model.report_["recall_at_budget"]["windowknn"] > 0
    with pytest.raises(ValueError, match="needs interaction_times"):
        train_ltr(df.drop(columns="timestamp"), {"sources": "ease,windowknn", "n_candidates": 5})

def test_guard_fallback_serves_the_source_alone(fitted, tmp_path):
    model, x = fitted
    rep = model.report_
    assert set(rep["guard_ndcg@10"]) == {"ltr", "ease", "itemknn", "popularity"}
    model.save(tmp_path / "g")
    back = LTRRecommender.load(tmp_path / "g")
    back.fallback_ = "itemknn"  # what fit sets when a source ranks validation users as well
    ids, scores = back.recommend(np.arange(N), x, k=4)
    ref = back.sources_["itemknn"].recommend(np.arange(N), x, k=4)
    np.testing.assert_array_equal(ids, ref[0])
    assert back.explain([3], x[[3]], k=2)[0][0]["score"] == pytest.approx(float(ref[1][3, 0]))


def hit_period(n_users: int = 60, n_items: int = 30, hit: int = 29):
    """Training: user u watched items 0..9 except (u % 10) (item 0 least missed: most popular);
    the hit item is in only two training rows. Validation (a later period, outside training):
    every other user watched the hit. Right answer for a new period: the hit first."""
    dense = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        dense[u, :10] = 1.0
        dense[u, u % 10] = 0.0
        dense[u, 10 + (u % 19)] = 1.0  # some spread over the tail
    dense[:2, hit] = 1.0
    held = np.zeros_like(dense)
    held[2:, hit] = 1.0
    return sp.csr_matrix(dense), sp.csr_matrix(held)


class CountingPopularity(Popularity):
    fits = 0

    def _fit(self, user_items):
        CountingPopularity.fits += 1
        super()._fit(user_items)


def test_label_popularity_learns_the_validation_period_and_fits_sources_once(tmp_path):
    x, held = hit_period()
    first = np.zeros(x.shape[0], bool)
    first[: x.shape[0] // 2] = True
    train_labels = sp.csr_matrix(sp.diags(first.astype(np.float64)) @ held)  # users 0..29 label
    pop = CountingPopularity().fit(x)
    CountingPopularity.fits = 1
    model = LTRRecommender(sources={"popularity": pop, "ease": EASE(l2=1.0)}, n_candidates=30,
                           num_boost_round=50)
    model.fit(x, validation=(x, train_labels))
    # a validation period outside the training matrix turns label-popularity on ("auto")
    assert model.label_counts_ is not None and model.label_counts_[29] == train_labels.sum()
    assert "label-popularity" in model.report_["recall_at_budget"]
    assert "label-popularity__score" in model.feature_names_
    # the fit part is the whole training matrix: the fitted source is reused, never refitted
    assert CountingPopularity.fits == 1 and model.sources_["popularity"] is pop
    # users 30..59 were never labels: the hit comes first for them; popularity alone puts it last
    later = np.arange(30, 60)
    ids, _ = model.recommend(later, x[later], k=1)
    assert np.all(ids[:, 0] == 29)
    alone, _ = pop.recommend(later, x[later], k=1)
    assert not np.any(alone[:, 0] == 29)
    # saved and loaded with its label counts (sources of registered classes only)
    plain = LTRRecommender(sources={"popularity": Popularity()}, n_candidates=30,
                           num_boost_round=50).fit(x, validation=(x, train_labels))
    plain.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    np.testing.assert_array_equal(back.label_counts_, plain.label_counts_)
    np.testing.assert_array_equal(back.recommend(later, x[later], k=3)[0],
                                  plain.recommend(later, x[later], k=3)[0])
    assert np.all(back.recommend(later, x[later], k=1)[0][:, 0] == 29)
    # off on request; and a split carved from the training matrix leaves it off under "auto"
    off = LTRRecommender(sources={"popularity": Popularity()}, n_candidates=30, num_boost_round=5,
                         label_popularity=False).fit(x, validation=(x, train_labels))
    assert off.label_counts_ is None and "label-popularity" not in off.report_["recall_at_budget"]
    with pytest.raises(ValueError, match="label_popularity"):
        LTRRecommender(sources={"popularity": Popularity()}, label_popularity="yes").fit(x)
    with pytest.raises(ValueError, match="reserved"):
        LTRRecommender(sources={"label-popularity": Popularity()}).fit(x)


def test_carved_holdout_leaves_label_popularity_off(fitted):
    model, _ = fitted
    assert model.label_counts_ is None
    assert "label-popularity" not in model.report_["recall_at_budget"]


def test_label_popularity_leaves_the_users_own_label_out():
    from recsys.models.ltr import _LabelPopularity

    train = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0]], np.float32))
    held = sp.csr_matrix(np.array([[0, 0, 1], [0, 0, 1], [0, 1, 0]], np.float32))
    lp = _LabelPopularity.from_labels(held, train, own=True)
    s = lp.score(train, np.arange(3))
    # item 2 is the label of users 0 and 1: each sees the other's label only (count 1)
    assert np.floor(s[0, 2]) == 1 and np.floor(s[1, 2]) == 1 and np.floor(s[2, 2]) == 2
    assert np.floor(s[2, 1]) == 0 and np.floor(s[0, 1]) == 1
    # ties by training popularity, never above one label: item 0 (3 users) > item 1 > item 2
    assert 0.5 > lp.tiebreak[0] > lp.tiebreak[1] > lp.tiebreak[2] == 0
    served = _LabelPopularity.from_labels(held, train, own=False).score(train, np.arange(3))
    assert np.floor(served[0, 2]) == 2


def test_cli_train_ltr_with_a_validation_file_learns_its_period(tmp_path, capsys):
    """`recsys train LOG --model ltr --validation VAL`: the ranker learns from VAL (a later
    period whose hit the training log barely has) and serves the hit first to other users."""
    import pandas as pd

    from recsys.cli import main

    x, held = hit_period()
    r, c = x.nonzero()
    log = tmp_path / "log.csv"
    pd.DataFrame({"user_id": [f"u{u}" for u in r], "item_id": [f"v{i}" for i in c]}).to_csv(log, index=False)
    hr, hc = held.nonzero()
    keep = hr < 30  # later users are never labels
    val = tmp_path / "val.csv"
    pd.DataFrame({"user_id": [f"u{u}" for u in hr[keep]], "item_id": [f"v{i}" for i in hc[keep]]}
                 ).to_csv(val, index=False)
    out = tmp_path / "m"
    assert main(["train", str(log), "--model", "ltr", "--validation", str(val), "--out", str(out),
                 "--param", "sources=popularity,ease", "--param", "n_candidates=30", "--json"]) == 0
    info = json.loads((out / "model.json").read_text())
    assert info["validation"].startswith("the predefined validation file") and "on" in info["validation"]
    assert "label-popularity" in info["ranker"]["recall_at_budget"]
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "u45", "-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["item_id"] == "v29"


def two_signals(n_users: int = 120, seed: int = 0):
    """Items 0-9 are watched often and never liked, items 10-19 watched less and always liked.

    Every user watched 6 of the first group and 3 of the second (random); ``like`` is 1 on
    every interaction with the second group. Right answers: the interaction head ranks an
    unseen popular item first, the like head an unseen liked item.
    """
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_users, 20), np.float32)
    for u in range(n_users):
        dense[u, rng.choice(10, 6, replace=False)] = 1.0
        dense[u, 10 + rng.choice(10, 3, replace=False)] = 1.0
    x = sp.csr_matrix(dense)
    like = sp.csr_matrix(dense * (np.arange(20) >= 10))
    return x, like


def top1_share_liked(model, x) -> float:
    ids, _ = model.recommend(np.arange(x.shape[0]), x, k=1)
    return float(np.mean(ids[:, 0] >= 10))


def test_objective_heads_blend_by_their_weights(tmp_path):
    x, like = two_signals()
    make = lambda w: LTRRecommender(sources={"pop": Popularity()}, n_candidates=20,  # noqa: E731
                                    objective_weights=w, seed=1)
    by_interaction = make({"interaction": 1.0, "like": 0.0}).fit(x, objectives={"like": like})
    by_like = make({"interaction": 0.0, "like": 1.0}).fit(x, objectives={"like": like})
    assert top1_share_liked(by_interaction, x) < 0.2  # popular (never liked) items first
    assert top1_share_liked(by_like, x) > 0.8  # liked items first
    rep = by_like.report_
    assert set(rep["objectives"]) == {"like"} and rep["objective_weights"] == {"interaction": 0.0, "like": 1.0}
    assert 0 < rep["objectives"]["like"]["positive_share_of_candidates"] < 1
    assert by_like.fallback_ is None  # no single source serves several objectives
    # without objectives the same stage is the interaction head alone
    plain = make(None).fit(x)
    assert plain.heads_ == {} and top1_share_liked(plain, x) < 0.2
    # the heads and their weights survive save/load
    by_like.save(tmp_path / "m")
    assert (tmp_path / "m" / "heads" / "like.txt").is_file()
    back = LTRRecommender.load(tmp_path / "m")
    np.testing.assert_allclose(back.score(x[:10], np.arange(10)), by_like.score(x[:10], np.arange(10)),
                               rtol=1e-5)
    # a meta.json whose head name points outside the folder is refused, not followed
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    meta["heads"] = {"../../like": 3}
    (tmp_path / "m" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="names a head"):
        LTRRecommender.load(tmp_path / "m")


def test_objectives_are_checked():
    x, like = two_signals(30)
    base = dict(sources={"pop": Popularity()}, n_candidates=5)
    with pytest.raises(ValueError, match="reserved"):
        LTRRecommender(**base).fit(x, objectives={"interaction": like})
    with pytest.raises(ValueError, match="has shape"):
        LTRRecommender(**base).fit(x, objectives={"like": like[:5]})
    neg = like.copy()
    neg.data[:] = -1.0
    with pytest.raises(ValueError, match="holds negative values"):
        LTRRecommender(**base).fit(x, objectives={"like": neg})
    with pytest.raises(ValueError, match="unknown objective"):
        LTRRecommender(**base, objective_weights={"click": 1.0}).fit(x, objectives={"like": like})
    with pytest.raises(ValueError, match="all 0"):
        LTRRecommender(**base, objective_weights={"interaction": 0, "like": 0}).fit(
            x, objectives={"like": like})



def test_cli_train_ltr_with_objectives_reads_the_feedback_columns(tmp_path, capsys):
    """`recsys train LOG --model ltr --param objectives=is_like` trains a like head from the log's
    column; weighting only that head serves liked items first."""
    import pandas as pd

    from recsys.cli import main

    x, like = two_signals()
    r, c = x.nonzero()
    log = tmp_path / "log.csv"
    pd.DataFrame({"user_id": [f"u{u}" for u in r], "item_id": [f"v{i}" for i in c],
                  "is_like": np.asarray(like[r, c]).ravel().astype(int)}).to_csv(log, index=False)
    out = tmp_path / "m"
    assert main(["train", str(log), "--model", "ltr", "--out", str(out), "--param", "sources=popularity",
                 "--param", "n_candidates=20", "--param", "objectives=is_like", "--param",
                 'objective_weights={"interaction": 0, "is_like": 1}', "--param", "seed=1", "--json"]) == 0
    info = json.loads((out / "model.json").read_text())
    assert info["objectives"] == ["is_like"] and "is_like" in info["ranker"]["objectives"]
    assert (out / "model" / "heads" / "is_like.txt").is_file()
    capsys.readouterr()
    recs = tmp_path / "recs.tsv"
    assert main(["recommend", str(out), "--all-users", "-k", "1", "--out", str(recs)]) == 0
    top = pd.read_csv(recs, sep="\t")
    assert (top["item_id"].str[1:].astype(int) >= 10).mean() > 0.8
    # a column the log does not have: an error naming it, nothing written
    assert main(["train", str(log), "--model", "ltr", "--out", str(tmp_path / "m2"), "--param",
                 "objectives=is_share"]) != 0
    assert "no column 'is_share'" in capsys.readouterr().err and not (tmp_path / "m2").exists()


def test_train_ltr_objectives_from_a_validation_file():
    """With a validation file the heads' labels are its signal values (it must have the column)."""
    import pandas as pd

    from recsys.ranking.ltr_training import train_ltr

    x, _ = two_signals()
    fit, held = carve_holdout(x, 0.3, seed=0)

    def frame(m):
        r, c = m.nonzero()
        return pd.DataFrame({"user_id": [f"u{u}" for u in r], "item_id": [f"v{i:02d}" for i in c],
                             "is_like": (c >= 10).astype(float)})

    params = {"sources": "popularity", "n_candidates": 20, "objectives": "is_like", "seed": 1,
              "objective_weights": {"interaction": 0.0, "is_like": 1.0}}
    tm = train_ltr(frame(fit), dict(params), validation=frame(held))
    assert tm.model.label_counts_ is not None  # the validation period's own popularity is on
    ids, _ = tm.model.recommend(np.arange(tm.user_items.shape[0]), tm.user_items, k=1)
    liked = np.array([int(tm.item_ids[i][1:]) >= 10 for i in ids[:, 0]])
    assert liked.mean() > 0.8
    with pytest.raises(ValueError, match="not columns of the validation file"):
        train_ltr(frame(fit), dict(params), validation=frame(held).drop(columns="is_like"))
