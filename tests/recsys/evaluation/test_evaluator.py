"""Tests for recsys.evaluation.evaluator with tiny fake models (implicit's recommend convention)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluation.evaluator import EvaluationResult, evaluate


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


class ScoreModel:
    """score(): a fixed score per item (ties included); recommend() is never called."""

    def __init__(self, item_scores):
        self.item_scores = np.asarray(item_scores, dtype=np.float32)
        self.scored = []

    def score(self, user_items_rows, user_index=None):
        self.scored.append(np.asarray(user_index).tolist())
        return np.tile(self.item_scores, (user_items_rows.shape[0], 1))

    def recommend(self, *a, **kw):  # pragma: no cover - must not be used by sampled ranking
        raise AssertionError("sampled ranking must score candidates, not call recommend")


def test_rank_candidates_breaks_ties_by_item_index():
    from recsys.evaluation.evaluator import rank_candidates

    scores = np.array([[1.0, 2.0, 2.0, 1.0, -np.inf]])
    cand = np.array([[7, 9, 3, 2, -1]])
    ids, top = rank_candidates(scores, cand, 6)
    assert ids.tolist() == [[3, 9, 2, 7, -1, -1]]
    assert top[0, :4].tolist() == [2.0, 2.0, 1.0, 1.0] and np.isneginf(top[0, 4:]).all()
    with pytest.raises(ValueError, match="NaN"):
        rank_candidates(np.array([[np.nan]]), np.array([[0]]), 1)


def test_sampled_negatives_are_unseen_seeded_and_labelled():
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 300
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1).astype(np.float32))
    test = sp.csr_matrix((rng.random((n_users, n_items)) < 0.02).astype(np.float32))
    test = test - test.multiply(train)
    test.eliminate_zeros()
    model = ScoreModel(np.arange(n_items, dtype=np.float32) % 7)  # many ties
    res = evaluate(model, train, test, k=120, n_negatives=100, seed=3, keep_lists=True,
                   metrics=("hit_rate@120", "ndcg@10"))
    assert res.ranking == "sampled: test items + 100 negatives per user (seed 3)"
    assert "sampled" in str(res)
    users = res.per_user["user_index"].to_numpy()
    for row, u in enumerate(users):
        listed = res.lists[row][res.lists[row] >= 0]
        pos = set(test[u].indices)
        assert set(listed) >= pos and len(listed) == len(pos) + 100  # all candidates ranked
        negatives = set(listed) - pos
        assert not negatives & set(train[u].indices)  # never a training item
        sc = model.item_scores[listed]
        assert np.all(np.diff(sc) <= 0)  # score descending
        ties = np.diff(sc) == 0
        assert np.all(np.diff(listed)[ties] > 0)  # ties: lower item index first
    assert res.summary["hit_rate@120"] == 1.0  # every test item is among the candidates
    again = evaluate(ScoreModel(model.item_scores), train, test, k=120, n_negatives=100, seed=3,
                     keep_lists=True, batch_size=7, metrics=("hit_rate@120",))
    np.testing.assert_array_equal(again.lists, res.lists)  # batching does not change the draw
    other = evaluate(ScoreModel(model.item_scores), train, test, k=120, n_negatives=100, seed=4,
                     keep_lists=True, metrics=("hit_rate@120",))
    assert not np.array_equal(other.lists, res.lists)
    with pytest.raises(ValueError, match="n_negatives"):
        evaluate(model, train, test, n_negatives=0)
    with pytest.raises(ValueError, match="outside its"):
        evaluate(model, train, test, n_negatives=290)
    with pytest.raises(ValueError, match="score"):
        evaluate(EmptyModel(), train, test, n_negatives=5)


def test_beyond_accuracy_metrics_in_evaluate(matrices):
    train, test = matrices
    emb = np.eye(6) + 0.1
    res = evaluate(OracleModel(train, test), train, test, k=2,
                   metrics=("recall", "coverage", "novelty", "diversity"), item_embeddings=emb)
    # the oracle lists {2, 3}, {5}, {0, 4}: 5 of 6 items
    assert res.summary["coverage@2"] == pytest.approx(5 / 6)
    assert "coverage@2" not in res.per_user  # one number per run
    # training popularity: item 0 seen by 2 of 3 training users, items 2..5 by 0 or 1
    n_train_users = 3
    nov0 = np.mean([-np.log2(1 / n_train_users), -np.log2(1 / n_train_users)])  # items 2 (1 user), 3 (0 -> 1)
    assert res.per_user["novelty@2"].iloc[0] == pytest.approx(nov0)
    assert np.isnan(res.per_user["diversity@2"].iloc[1])  # one item: no pair
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert res.per_user["diversity@2"].iloc[0] == pytest.approx(1 - unit[2] @ unit[3])
    with pytest.raises(ValueError, match="item_embeddings"):
        evaluate(OracleModel(train, test), train, test, k=2, metrics=("diversity",))


class _FixedLists:
    """A 'model' returning fixed lists: user 0 gets [0, 1], user 1 gets nothing (-1)."""

    def recommend(self, users, rows, k=10, filter_already_liked_items=True):
        lists = {0: [0, 1], 1: [-1, -1], 2: [2, -1]}
        ids = np.array([(lists[int(u)] + [-1] * k)[:k] for u in users], dtype=np.int64)
        return ids, np.where(ids >= 0, 1.0, -np.inf).astype(np.float32)


def test_users_all_counts_empty_lists_as_zero_common_follows_recommenders():
    """Issue 19.8: 'all' averages over every user with test items (user 1 has no list: 0);
    'common' (Recommenders) averages P/R/MAP over users with training rows and a list, and
    nDCG over all truth users."""
    train = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float32))
    test = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    m = ["precision@2", "recall@2", "ndcg@2"]
    a = evaluate(_FixedLists(), train, test, k=2, metrics=m)
    c = evaluate(_FixedLists(), train, test, k=2, metrics=m, users="common")
    # user 0: hit at rank 1 (P 0.5, R 1, nDCG 1); user 1: no list (0); user 2: hit but no train
    assert a.summary["precision@2"] == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert c.summary["precision@2"] == pytest.approx(0.5)  # user 0 only
    assert c.summary["recall@2"] == pytest.approx(1.0)
    assert a.summary["ndcg@2"] == c.summary["ndcg@2"] == pytest.approx(2 / 3)
    assert a.per_user["in_common"].tolist() == [True, False, False]
    with pytest.raises(ValueError, match="users='some'"):
        evaluate(_FixedLists(), train, test, users="some")


def test_predefined_test_only_items_are_stated_and_can_be_dropped():
    """Issue 19.8: predefined test files may hold items the train file lacks; they enter the
    catalogue by default (stated in the protocol record) or are dropped on request."""
    import pandas as pd

    from recsys.app.stages import evaluate_models

    train = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "y", "z"],
                          "rating": 1.0})
    test = pd.DataFrame({"user_id": ["a", "b", "b"], "item_id": ["z", "x", "new"], "rating": 1.0})
    kept = evaluate_models(train, ["popularity"], protocol="predefined", test_df=test,
                           metrics=["recall@1"])
    dropped = evaluate_models(train, ["popularity"], protocol="predefined", test_df=test,
                              metrics=["recall@1"], drop_test_only_items=True)
    assert kept["protocol"]["n_test_only_items"] == 1 and kept["protocol"]["n_items"] == 4
    assert "kept" in kept["protocol"]["test_only_items"]
    assert dropped["protocol"]["n_items"] == 3 and dropped["protocol"]["n_test"] == 2
    # user b: x found, "new" never can be: recall@1 0.5 kept, 1.0 dropped (user a finds z: 1.0)
    assert kept["summary"]["recall@1"].iloc[0] == pytest.approx(0.75)
    assert dropped["summary"]["recall@1"].iloc[0] == pytest.approx(1.0)
