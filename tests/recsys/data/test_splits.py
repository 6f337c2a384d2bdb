"""Tests for recsys.data.splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.splits import (
    chrono_stratified_split,
    leave_last_out,
    random_holdout,
    stratified_split,
    temporal_split,
)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _log(n_users=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = 1 + u % 9  # 1..9 rows per user, user 0 has one row
        items = rng.choice(100, size=n, replace=False)
        for j, it in enumerate(items):
            rows.append((f"u{u}", f"i{it}", float(rng.integers(1, 6)), 1000 + int(rng.integers(50))
                         + j))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def _check_partition(df, train, test):
    assert len(train) + len(test) == len(df)
    assert set(train.index).isdisjoint(test.index)
    assert set(train.index) | set(test.index) == set(df.index)
    pd.testing.assert_frame_equal(pd.concat([train, test]).sort_index(), df)


def test_random_holdout_sizes_users_and_determinism():
    df = _log()
    train, test = random_holdout(df, 0.25, seed=3)
    _check_partition(df, train, test)
    assert set(train.user_id) == set(df.user_id)  # no user lost: everyone keeps a train row
    counts = df.user_id.value_counts()
    tcounts = test.user_id.value_counts().reindex(counts.index, fill_value=0)
    expected = np.minimum(counts - 1, np.floor(0.25 * counts + 0.5)).astype(int)
    assert (tcounts == expected).all()
    assert tcounts["u0"] == 0  # single-interaction user stays in train
    again = random_holdout(df, 0.25, seed=3)
    pd.testing.assert_frame_equal(again[1], test)
    other = random_holdout(df, 0.25, seed=4)[1]
    assert not other.index.equals(test.index)
    with pytest.raises(ValueError, match="test_ratio"):
        random_holdout(df, 1.5)


def test_leave_last_out_picks_latest_with_row_order_ties():
    df = pd.DataFrame({
        "user_id": ["a", "a", "a", "b", "b", "c", "d", "d"],
        "item_id": ["1", "2", "3", "1", "2", "9", "5", "6"],
        "timestamp": [30, 10, 20, 5, 5, 1, 7, 3],
    })
    train, test = leave_last_out(df)
    _check_partition(df, train, test)
    # a: max time 30 (row 0); b: tie at 5 -> later row 4; c: single row stays in train; d: row 6
    assert sorted(test.index.tolist()) == [0, 4, 6]
    train2, test2 = leave_last_out(df, n=2)
    assert sorted(test2.index.tolist()) == [0, 2, 4, 6]  # b and d keep one train row each
    assert set(train2.user_id) == set(df.user_id)
    with pytest.raises(ValueError, match="timestamp"):
        leave_last_out(df.drop(columns="timestamp"))
    with pytest.raises(ValueError, match="n=0"):
        leave_last_out(df, n=0)


def test_temporal_split_quantile_and_at():
    df = pd.DataFrame({"user_id": list("abcdefghij"), "item_id": list("kkkkkkkkkk"),
                       "timestamp": np.arange(1, 11)[::-1]})
    train, test = temporal_split(df, quantile=0.8)
    assert sorted(train.timestamp) == list(range(1, 9)) and sorted(test.timestamp) == [9, 10]
    train, test = temporal_split(df, at=4)
    assert train.timestamp.max() == 3 and test.timestamp.min() == 4 and len(test) == 7
    _check_partition(df, train, test)


# np.random.seed(42); np.random.rand(8) -- the draws Microsoft Recommenders makes
SEED42 = [0.3745401188473625, 0.9507143064099162, 0.7319939418114051, 0.5986584841970366,
          0.15601864044243652, 0.15599452033620265, 0.05808361216819946, 0.8661761457749352]


def test_seed42_draws_are_numpy_legacy_stream():
    assert np.random.RandomState(42).rand(8).tolist() == SEED42


def test_stratified_split_hand_computed():
    df = pd.DataFrame({"user_id": ["A", "A", "A", "B", "B", "B", "C", "C"],
                       "item_id": list("pqrstuvw"), "rating": np.arange(8.0)})
    state = np.random.get_state()[1].copy()
    train, test = stratified_split(df, 0.75, seed=42)
    # A: draws .37 .95 .73 -> order rows 0,2,1; round(0.75*3)=2 train -> 0,2 train, 1 test
    # B: draws .599 .15602 .15599 -> order 5,4,3 -> 5,4 train, 3 test
    # C: 2 rows, round(0.75*2)=round(1.5)=2 (half to even) -> both train
    assert train.index.tolist() == [0, 2, 5, 4, 6, 7]
    assert test.index.tolist() == [1, 3]
    assert list(train.columns) == list(df.columns) and "random" not in df.columns
    assert (np.random.get_state()[1] == state).all()  # global random state untouched
    # ratio 0.625 on A with 4 rows: round(2.5) = 2 (half to even), by item filter_by
    df2 = pd.DataFrame({"user_id": list("wxyz"), "item_id": ["i"] * 4})
    tr2, te2 = stratified_split(df2, 0.625, filter_by="item", seed=42)
    # draws .37 .95 .73 .599 -> order rows 0,3,2,1 -> train 0,3
    assert tr2.index.tolist() == [0, 3] and te2.index.tolist() == [2, 1]


def test_stratified_split_invariants_multi_and_min_rating():
    df = _log(60, seed=1)
    train, test = stratified_split(df, 0.75, seed=7)
    _check_partition(df, train, test)
    counts = df.user_id.value_counts()
    trc = train.user_id.value_counts().reindex(counts.index, fill_value=0)
    assert (trc == np.round(0.75 * counts)).all()  # per-group ratio, numpy rounding
    again = stratified_split(df, 0.75, seed=7)
    pd.testing.assert_frame_equal(again[0], train)
    parts = stratified_split(df, [3.0, 1.0, 1.0], seed=7)
    assert isinstance(parts, list) and len(parts) == 3
    assert sum(len(p) for p in parts) == len(df)
    tr_min, te_min = stratified_split(df, 0.75, min_rating=5)
    kept = counts[counts >= 5].index
    assert set(tr_min.user_id) | set(te_min.user_id) == set(kept)
    with pytest.raises(ValueError, match="filter_by"):
        stratified_split(df, filter_by="users")
    with pytest.raises(TypeError):
        stratified_split(df, ratio=1)
    with pytest.raises(ValueError, match="rank"):
        stratified_split(df.assign(rank=1))


def test_chrono_stratified_split_takes_earliest():
    df = pd.DataFrame({"user_id": ["a"] * 4, "item_id": list("wxyz"), "timestamp": [4, 1, 3, 2]})
    train, test = chrono_stratified_split(df, 0.5)
    assert train.index.tolist() == [1, 3] and test.index.tolist() == [2, 0]


def test_matches_microsoft_recommenders_when_installed():
    rec = pytest.importorskip("recommenders.datasets.python_splitters",
                              reason="recommenders not installed (optional cross-check)")
    df = _log(80, seed=2)
    for kw in ({}, {"filter_by": "item"}, {"min_rating": 3}):
        ref = rec.python_stratified_split(df.copy(), ratio=0.7, col_user="user_id",
                                          col_item="item_id", seed=5, **kw)
        ours = stratified_split(df, 0.7, seed=5, **kw)
        for a, b in zip(ref, ours, strict=True):
            pd.testing.assert_frame_equal(a, b)


@pytest.mark.realdata
def test_stratified_split_movielens_sizes():
    path = DATA / "ml-100k" / "u.data"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    from recsys.data.interactions import load_interactions

    df = load_interactions(path)
    train, test = stratified_split(df, 0.75, seed=42)
    # sizes produced by recommenders 1.2.1 python_stratified_split on the same file
    assert (len(train), len(test)) == (74992, 25008)
    assert train.user_id.nunique() == 943


def _user_log(n_users=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for j in range(int(rng.integers(1, 15))):
            rows.append((f"u{u}", f"i{rng.integers(0, 40)}_{j}", 1.0, 1000 + 7 * j + u))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_k_fold_tests_every_row_once_and_balances_users():
    from recsys.data.splits import k_fold

    df = _user_log()
    folds = k_fold(df, 4, seed=3)
    assert len(folds) == 4
    tested = pd.concat([t for _, t in folds])
    assert sorted(tested.index) == sorted(df.index)  # each row in exactly one test fold
    for train, test in folds:
        assert set(train.index).isdisjoint(test.index) and len(train) + len(test) == len(df)
    sizes = pd.DataFrame({f: t.groupby("user_id").size() for f, (_, t) in enumerate(folds)}).fillna(0)
    assert (sizes.max(axis=1) - sizes.min(axis=1)).max() <= 1  # per user, folds differ by <= 1 row
    again = k_fold(df, 4, seed=3)
    assert all(a[1].index.equals(b[1].index) for a, b in zip(folds, again, strict=True))
    with pytest.raises(ValueError, match="n_folds"):
        k_fold(df, 1)


def test_validation_split_carves_from_train_only():
    from recsys.data.splits import random_holdout, validation_split

    df = _user_log()
    train, test = random_holdout(df, 0.2, seed=1)
    fit, val = validation_split(train, "random_holdout", val_ratio=0.25, seed=2)
    assert set(fit.index) | set(val.index) == set(train.index)
    assert set(val.index).isdisjoint(test.index) and len(val) > 0
    fit2, val2 = validation_split(train, "leave_last_out")
    latest = train.loc[train.groupby("user_id")["timestamp"].idxmax()]
    multi = train.groupby("user_id").size() > 1
    assert set(val2.index) == set(latest[latest["user_id"].map(multi)].index)
    with pytest.raises(ValueError, match="method="):
        validation_split(train, "bogus")


def test_stratified_protocol_is_recommenders_benchmark_split():
    """Issue 19.3: ``--protocol stratified`` (CLI, stages, validation) must be the rows of
    ``python_stratified_split(df, ratio=0.75, filter_by="item", seed=42)``, hand-computed
    here from the seed-42 draws, not a per-user 80/20 split."""
    from recsys.app.stages import split_interactions
    from recsys.cli import build_parser
    from recsys.data.splits import recommenders_split
    from recsys.data.splits import validation_split as val_split

    df = pd.DataFrame({"user_id": [f"u{i}" for i in range(8)],
                       "item_id": ["i"] * 4 + ["j"] * 4, "rating": 1.0})
    # item i: draws .37 .95 .73 .599 -> order 0,3,2,1; round(0.75*4)=3 -> train 0,3,2, test 1
    # item j: draws .15602 .15599 .058 .866 -> order 6,5,4,7 -> train 6,5,4, test 7
    for train, test in (split_interactions(df, "stratified"), recommenders_split(df),
                        stratified_split(df, 0.75, filter_by="item", seed=42)):
        assert train.index.tolist() == [0, 3, 2, 6, 5, 4] and test.index.tolist() == [1, 7]
    _, val = val_split(df, "stratified", val_ratio=0.25, seed=42)
    assert val.index.tolist() == [1, 7]
    args = build_parser().parse_args(["evaluate", "x.csv", "--protocol", "stratified",
                                      "--models", "ease", "--out", "r"])
    assert args.test_ratio is None  # the protocol's own default (0.25), not 0.2
    train, test = split_interactions(df, "stratified", test_ratio=0.5)
    assert len(test) == 4 and set(test.item_id) == {"i", "j"}
