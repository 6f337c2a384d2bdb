"""Validation-split tuning: the choice comes from the training data alone and is recorded."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.tuning import expand_grid, tune, validation_split


def log(n_users=30, n_items=10) -> pd.DataFrame:
    rows = [(f"u{u}", f"i{j}", 1.0, u * 100 + j) for u in range(n_users)
            for j in range(u % 2, n_items, 2)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_validation_split_is_a_partition_of_train():
    train = log()
    fit, valid = validation_split(train, seed=1)
    assert len(fit) + len(valid) == len(train) and len(valid) > 0
    assert set(fit.index).isdisjoint(valid.index) and set(fit.index) | set(valid.index) == set(train.index)
    with pytest.raises(ValueError, match="protocol"):
        validation_split(train, protocol="nope")


def test_tune_picks_best_point_keeps_fixed_and_records_table():
    res = tune(log(), "itemknn", {"neighbors": [1, 5]}, fixed={"weighting": "bm25"})
    assert res.best_params["weighting"] == "bm25" and res.best_params["neighbors"] in (1, 5)
    scores = [row["ndcg@10"] for row in res.table]
    assert res.best_score == max(scores) and len(res.table) == 2
    assert res.to_dict()["validation"]["n_valid"] > 0
    fixed = tune(log(), "itemknn", {"neighbors": [1, 5]}, fixed={"neighbors": 3})
    assert len(fixed.table) == 1 and fixed.best_params == {"neighbors": 3}


def test_expand_grid():
    assert expand_grid({}) == [{}]
    assert expand_grid({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    with pytest.raises(ValueError, match="non-empty list"):
        expand_grid({"a": []})
