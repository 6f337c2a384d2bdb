"""Item cold-start protocol: cold_item_split and evaluate_cold_start."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.data.interactions import build_dataset
from recsys.data.splits import cold_item_split
from recsys.evaluation.coldstart import evaluate_cold_start
from recsys.models import EASE, ContentEASE, ContentModel, HybridColdStart, Popularity

N_USERS, N_ITEMS = 40, 40


def group_log() -> pd.DataFrame:
    """Even users watched every even item, odd users every odd item (a right answer by group)."""
    rows = [(f"u{u:02d}", f"i{j:02d}") for u in range(N_USERS) for j in range(u % 2, N_ITEMS, 2)]
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


def group_features(ds) -> np.ndarray:
    """Item features: group direction plus a small own direction, in the dataset's item order."""
    j = np.array([int(i[1:]) for i in ds.item_ids])
    e = np.zeros((j.size, 2 + N_ITEMS), dtype=np.float32)
    e[np.arange(j.size), j % 2] = 1.0
    e[np.arange(j.size), 2 + j] = 0.1
    return e


@pytest.fixture(scope="module")
def split():
    df = group_log()
    train, test, cold = cold_item_split(df, 0.25, seed=0)
    ds = build_dataset(df)
    return ds, ds.to_user_items(train), ds.to_user_items(test), cold


def test_cold_item_split_holds_items_out_whole_and_is_seeded():
    df = group_log()
    train, test, cold = cold_item_split(df, 0.25, seed=0)
    assert len(cold) == 10 and len(set(cold)) == 10
    assert not train["item_id"].isin(cold).any()  # no training interaction for a cold item
    assert (test["item_id"].isin(cold)).sum() == (df["item_id"].isin(cold)).sum()  # all to test
    assert (~test["item_id"].isin(cold)).sum() > 0  # warm test rows too
    assert len(train) + len(test) == len(df) and not set(train.index) & set(test.index)
    again = cold_item_split(df, 0.25, seed=0)
    assert list(again[2]) == list(cold) and again[1].index.equals(test.index)
    assert list(cold_item_split(df, 0.25, seed=1)[2]) != list(cold)
    with pytest.raises(ValueError, match="item_fraction"):
        cold_item_split(df, 1.0)


def test_content_models_find_cold_items_collaborative_ones_cannot(split):
    ds, train, test, cold = split
    f = group_features(ds)
    k = 5
    res = {
        "popularity": evaluate_cold_start(Popularity().fit(train), train, test, k=k),
        "ease": evaluate_cold_start(EASE(l2=1.0).fit(train), train, test, k=k),
        "content": evaluate_cold_start(ContentModel().fit(train, item_embeddings=f),
                                       train, test, k=k),
        "ease-content": evaluate_cold_start(
            ContentEASE(l2=1.0, feature_weight=1.0).fit(train, item_features=f), train, test, k=k),
        "hybrid": evaluate_cold_start(
            HybridColdStart(factors=8, regularization=0.1, iterations=20, num_threads=1).fit(
                train, item_embeddings=f), train, test, k=k),
    }
    row = {m: r.summary.set_index("items") for m, r in res.items()}
    assert res["content"].n_cold_items == 10 and res["content"].n_warm_items == 30
    assert list(row["content"].index) == ["all", "cold", "warm"]
    # every cold item of a user's group is a test item of the user: content models rank the
    # cold items of the right group first; collaborative models score every cold item 0 (ties
    # counted pessimistically: a hit only where the group's relevant items outnumber the rest)
    for m in ("content", "hybrid"):
        assert row[m].loc["cold", "ndcg@5"] == pytest.approx(1.0), m
    assert row["ease-content"].loc["cold", "ndcg@5"] > 0.9
    for m in ("popularity", "ease"):
        assert row[m].loc["cold", "ndcg@5"] < 0.7, m
    # popularity never shows a cold item in the mixed ranking; the bucket table says so
    b = res["popularity"].buckets.set_index("bucket")
    assert b.loc["cold", "share@5"] == 0.0 and b.loc["cold", "recall@5"] == 0.0
    assert b.loc["cold", "n_items"] == 10 and b["n_items"].sum() == N_ITEMS
    assert res["content"].buckets.set_index("bucket").loc["cold", "share@5"] > 0
    assert row["content"].loc["cold", "n_users"] == N_USERS
    # a random order of the 10 cold items finds k/10 of a user's cold test items
    assert row["popularity"].loc["cold", "random_recall@5"] == pytest.approx(0.5)


class _Constant:
    """Scores every item 0: any credit it gets comes from the tie rule."""

    def score(self, user_items, user_index):
        return np.zeros(user_items.shape, dtype=np.float32)


def test_ties_give_a_constant_model_no_credit_from_item_index():
    # 20 items; items 10..19 are cold; users 5..29's test items are the LOWEST indices of each
    # table (0, 1 warm; 10, 11 cold), so index order would hand the constant model every hit
    n_users, n_items = 30, 20
    train = sp.lil_matrix((n_users, n_items), dtype=np.float32)
    train[:, 5:10] = 1.0
    train[:5, :5] = 1.0  # items 0..4 are warm (seen by users 0..4)
    test = sp.lil_matrix((n_users, n_items), dtype=np.float32)
    test[5:, [0, 1, 10, 11]] = 1.0
    train, test = train.tocsr(), test.tocsr()
    res = evaluate_cold_start(_Constant(), train, test, k=2, metrics=("recall", "ndcg", "hit_rate"))
    tab = res.summary.set_index("items")
    for t in ("all", "cold", "warm"):  # pessimistic: below every equally scored item
        assert tab.loc[t, "recall@2"] == 0.0 and tab.loc[t, "hit_rate@2"] == 0.0, t
    assert res.buckets.set_index("bucket").loc["cold", "recall@2"] == 0.0
    rnd = evaluate_cold_start(_Constant(), train, test, k=2, ties="random", seed=3,
                              batch_size=7).summary.set_index("items")
    # random: about the expected recall of a random order (cold: 2 of 10 candidates -> 0.2)
    assert rnd.loc["cold", "random_recall@2"] == pytest.approx(0.2)
    assert 0.05 < rnd.loc["cold", "recall@2"] < 0.4
    again = evaluate_cold_start(_Constant(), train, test, k=2, ties="random", seed=3,
                                batch_size=7).summary
    assert again.equals(rnd.reset_index())  # seeded
    with pytest.raises(ValueError, match="ties='index'.*pessimistic"):
        evaluate_cold_start(_Constant(), train, test, ties="index")


def test_evaluate_cold_start_needs_a_cold_item():
    x = sp.csr_matrix(np.ones((3, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="no item without interactions"):
        evaluate_cold_start(Popularity().fit(x), x, x)


def test_cli_evaluate_cold_items_writes_tables(tmp_path):
    from recsys.cli import main

    df = group_log()
    log = tmp_path / "log.csv"
    df.to_csv(log, index=False)
    emb = tmp_path / "emb.npy"
    np.save(emb, group_features(build_dataset(df)))
    out = tmp_path / "rep"
    assert main(["evaluate", str(log), "--protocol", "cold_items", "--test-ratio", "0.25",
                 "--models", "popularity,content,ease-content", "--item-embeddings", str(emb),
                 "-k", "5", "--seed", "0", "--out", str(out)]) == 0
    rep = json.loads((out / "cold_start.json").read_text())
    assert rep["protocol"]["n_cold_items"] == 10
    rows = {(r["model"], r["items"]): r for r in rep["summary"]}
    assert rows[("content", "cold")]["ndcg@5"] > rows[("popularity", "cold")]["ndcg@5"] + 0.2
    sig = [s for s in rep["significance"] if s["model"] == "content" and s["items"] == "cold"]
    assert sig and all(s["p_value"] < 0.01 for s in sig)
    assert "Popularity buckets" in (out / "report.md").read_text()


def test_cold_item_split_with_a_repeated_index_keeps_every_row_once():
    df = pd.concat([group_log(), group_log().assign(user_id=lambda d: d.user_id + "b")])
    assert not df.index.is_unique
    train, test, cold = cold_item_split(df, 0.25, seed=3)
    assert len(train) + len(test) == len(df)
    assert not train["item_id"].isin(cold).any()
    key = ["user_id", "item_id"]
    assert not train[key].merge(test[key]).shape[0]  # no row in both
