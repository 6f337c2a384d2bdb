"""Tests for recsys.evaluation with tiny fake models (implicit's recommend convention)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluation import EvaluationResult, evaluate


class OracleModel:
    """Recommends each user's test items (lowest index first), then nothing (-1 padding)."""

    def __init__(self, train, test):
        self.train, self.test = sp.csr_matrix(train), sp.csr_matrix(test)
        self.calls = []

    def recommend(self, user_index, user_items, k=10, filter_already_liked_items=True):
        user_index = np.asarray(user_index)
        self.calls.append(len(user_index))
        # implicit's convention: user_items holds the rows of the users asked for
        assert user_items.shape == (len(user_index), self.train.shape[1])
        assert (user_items != self.train[user_index]).nnz == 0
        assert filter_already_liked_items is True
        ids = np.full((len(user_index), k), -1, dtype=np.int64)
        scores = np.full((len(user_index), k), -np.inf, dtype=np.float32)
        for row, u in enumerate(user_index):
            items = self.test[u].indices[:k]
            ids[row, : len(items)] = items
            scores[row, : len(items)] = np.arange(len(items), 0, -1)
        return ids, scores


class EmptyModel:
    def recommend(self, user_index, user_items, k=10, filter_already_liked_items=True):
        n = len(user_index)
        return np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32)


class FixedModel:
    """Always recommends items 0..k-1 in order, ignoring filtering (a buggy model)."""

    def recommend(self, user_index, user_items, k=10, filter_already_liked_items=True):
        n = len(user_index)
        return np.tile(np.arange(k), (n, 1)), np.tile(np.arange(k, 0, -1.0), (n, 1))


@pytest.fixture
def matrices():
    train = sp.csr_matrix(np.array([
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],   # user 2: no test items -> skipped
        [0, 0, 0, 0, 0, 0],   # user 3: cold user with test items
    ], dtype=np.float32))
    test = sp.csr_matrix(np.array([
        [0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 1, 0],
    ], dtype=np.float32))
    return train, test


def test_oracle_gets_perfect_scores_and_skipped_user_counted(matrices):
    train, test = matrices
    res = evaluate(OracleModel(train, test), train, test, k=3)
    assert isinstance(res, EvaluationResult)
    assert res.n_users_evaluated == 3 and res.n_users_skipped_no_test == 1
    assert res.per_user["user_index"].tolist() == [0, 1, 3]
    assert res.per_user["n_test_items"].tolist() == [2, 1, 2]
    for key in ("recall@3", "ndcg@3", "map@3", "mrr@3", "hit_rate@3"):
        assert res.summary[key] == pytest.approx(1.0), key
    # precision cannot reach 1 with fewer test items than k
    assert res.per_user["precision@3"].tolist() == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    assert list(res.summary) == ["precision@3", "recall@3", "ndcg@3", "map@3", "mrr@3",
                                 "hit_rate@3"]
    assert "3 users evaluated" in str(res)


def test_empty_model_scores_zero(matrices):
    train, test = matrices
    res = evaluate(EmptyModel(), train, test, k=5, metrics=("ndcg", "recall@2", "precision"))
    assert set(res.summary) == {"ndcg@5", "recall@2", "precision@5"}
    assert all(v == 0.0 for v in res.summary.values())
    assert res.k == 5


def test_batches_give_same_result(matrices):
    train, test = matrices
    model = OracleModel(train, test)
    a = evaluate(model, train, test, k=2, batch_size=1)
    assert model.calls == [1, 1, 1]
    b = evaluate(OracleModel(train, test), train, test, k=2, batch_size=1024)
    assert a.summary == b.summary
    assert a.per_user.equals(b.per_user)


def test_model_returning_training_items_is_rejected(matrices):
    train, test = matrices
    with pytest.raises(ValueError, match="training items"):
        evaluate(FixedModel(), train, test, k=3)


def test_input_validation(matrices):
    train, test = matrices
    with pytest.raises(ValueError, match="shape"):
        evaluate(EmptyModel(), train, test[:, :5], k=3)
    with pytest.raises(ValueError, match="scipy.sparse"):
        evaluate(EmptyModel(), train.toarray(), test)
    with pytest.raises(ValueError, match="k=0"):
        evaluate(EmptyModel(), train, test, k=0)
    with pytest.raises(ValueError, match="valid names"):
        evaluate(EmptyModel(), train, test, metrics=("auc",))


def test_no_user_with_test_items(matrices):
    train, _ = matrices
    empty = sp.csr_matrix(train.shape, dtype=np.float32)
    res = evaluate(EmptyModel(), train, empty, k=3)
    assert res.n_users_evaluated == 0 and res.n_users_skipped_no_test == 4
    assert np.isnan(res.summary["ndcg@3"]) and len(res.per_user) == 0
