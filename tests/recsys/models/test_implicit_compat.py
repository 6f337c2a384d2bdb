"""implicit's behavioural test module, ported, run against every model of the project.

A port (written here, not copied) of ``tests/recommender_base_test.py`` of
benfred/implicit (commit 8a95dbe2, May 2026): the same fixtures and checks, driven through
implicit's keywords (``N``, ``userid``, ``items``, ``recalculate_user``, ``filter_items``,
``similar_users``) and through ``implicit.evaluation`` itself.

To run it on a new model, add a :class:`Case` to ``CASES`` (a factory, the side inputs its
``fit`` needs, and whether it is personalised). Deliberate differences from implicit, each
checked rather than skipped:

* ``similar_items``/``similar_users`` never return the query itself (the project's
  documented convention); implicit returns it first. The port asserts its absence.
* ``save`` before ``fit`` raises ``NotFittedError`` (implicit writes an empty model).
* Popularity and trending are not personalised: the "held-out item comes first" checks
  (and p@1 = 1) apply to personalised models only; the structural checks apply to all.
* Content similarity does not depend on interactions, so an item without users may still
  be similar to others under ContentModel and HybridColdStart (which maps cold items'
  factors from their embeddings by design); ``test_zero_length_row`` checks the
  collaborative models.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.evaluation import ndcg_at_k, precision_at_k, ranking_metrics_at_k
from numpy.testing import assert_array_equal

from recsys.models import (
    ALS,
    BPR,
    EASE,
    ContentEASE,
    ContentModel,
    GraphFilter,
    HybridColdStart,
    ItemKNN,
    LastItemKNN,
    NotFittedError,
    Popularity,
    Recommender,
    TrendingPopularity,
)
from recsys.models.base import ParameterWarning


def checker_board(n: int) -> sp.csr_matrix:
    """implicit's fixture: even users liked every even item, odd users every odd item, the
    diagonal withheld, so user ``u``'s one right answer is item ``u``."""
    dense = np.zeros((n, n))
    for u in range(n):
        dense[u, u % 2 :: 2] = 1.0
    return sp.csr_matrix(dense - np.eye(n))


def parity_embeddings(n: int) -> np.ndarray:
    """Item j: its parity direction plus a small own direction (content fixture)."""
    e = np.zeros((n, 2 + n), dtype=np.float32)
    e[np.arange(n), np.arange(n) % 2] = 1.0
    e[np.arange(n), 2 + np.arange(n)] = 0.1
    return e


def times_of(x: sp.csr_matrix) -> sp.csr_matrix:
    """A time (day user+1, in seconds) for every stored entry of ``x``."""
    t = sp.csr_matrix(x, dtype=np.float64, copy=True)
    t.data = (np.repeat(np.arange(x.shape[0]), np.diff(x.indptr)) + 1.0) * 86_400.0
    return t


@dataclass(frozen=True)
class Case:
    """One model under test: ``make()`` builds it unfitted; ``side(x)`` gives the extra
    ``fit`` keywords for matrix ``x``; flags say which quality checks apply."""

    name: str
    make: Callable[[], Recommender]
    side: Callable[[sp.csr_matrix], dict] = field(default=lambda x: {})
    personalised: bool = True
    similar_from_interactions: bool = True


def _no_side(x):
    return {}


def _emb(x):
    return {"item_embeddings": parity_embeddings(x.shape[1])}


def _times(x):
    return {"interaction_times": times_of(sp.csr_matrix(x))}


CASES = [
    Case("popularity", Popularity, _no_side, personalised=False),
    Case("trending", lambda: TrendingPopularity(half_life_days=30.0), _times, personalised=False),
    Case("content", ContentModel, _emb, similar_from_interactions=False),
    Case("hybrid", lambda: HybridColdStart(factors=3, regularization=0.0, random_state=23,
                                           num_threads=1), _emb,
         similar_from_interactions=False),
    Case("ease", lambda: EASE(l2=1.0), _no_side),
    Case("itemknn", lambda: ItemKNN(neighbors=64), _no_side),
    Case("itemknn-bm25", lambda: ItemKNN(neighbors=64, weighting="bm25"), _no_side),
    # implicit's own test settings for its ALS / BPR
    Case("als", lambda: ALS(factors=3, regularization=0.0, random_state=23, num_threads=1),
         _no_side),
    Case("bpr", lambda: BPR(factors=3, regularization=0.0, random_state=42, num_threads=1),
         _no_side),
    Case("ease-content", lambda: ContentEASE(l2=1.0),
         lambda x: {"item_features": [parity_embeddings(x.shape[1])]}),
    Case("graph-filter", lambda: GraphFilter(layers=2, feature_weight=0.2, knn=3),
         lambda x: {"item_features": [parity_embeddings(x.shape[1])]}),
    Case("lastitem", LastItemKNN, _times),
]
IDS = [c.name for c in CASES]


def fit(case: Case, x, **kw) -> Recommender:
    return case.make().fit(x, show_progress=False, **case.side(x), **kw)


_CACHE: dict = {}


def fitted(case: Case, n: int) -> Recommender:
    """The model fitted on ``checker_board(n)``, once per test session (read-only use)."""
    key = (case.name, n)
    if key not in _CACHE:
        _CACHE[key] = fit(case, checker_board(n))
    return _CACHE[key]


@pytest.mark.parametrize("case", CASES, ids=IDS)
class TestRecommenderBase:
    """implicit's ``RecommenderBaseTestMixin``, one parametrised class."""

    def test_recommend(self, case):
        x = checker_board(50)
        model = fitted(case, 50)
        for u in range(50):
            ids, _ = model.recommend(u, x[u], N=1)
            assert len(ids) == 1
            if case.personalised:
                assert ids[0] == u, (case.name, u, ids)
        ids, _ = model.recommend(0, x[0], N=10000)  # more than there are: padded, not an error
        assert len(ids) and set(ids[ids >= 0]) <= set(range(50))
        ids, _ = model.recommend(0, x[0], N=1, filter_items=[0])
        assert 0 not in set(ids)

    def test_recommend_batch(self, case):
        x = checker_board(50)
        model = fitted(case, 50)
        users = np.arange(50)
        ids, scores = model.recommend(users, x[users], N=1)
        for u in users:
            assert len(ids[u]) == 1
            if case.personalised:
                assert ids[u][0] == u
            one_ids, one_scores = model.recommend(u, x[u], N=1)
            assert_array_equal(one_ids, ids[u])
            assert np.allclose(one_scores, scores[u])
        sub = np.array([2, 3, 4])
        ids, _ = model.recommend(sub, x[sub], N=1, filter_items=[0])
        for i, u in enumerate(sub):
            assert 0 not in ids[i]
            if case.personalised:
                assert ids[i][0] == u
        ids, scores = model.recommend(users, x[users], N=5, filter_already_liked_items=False)
        for u in range(50):
            one_ids, one_scores = model.recommend(u, x[u], N=5, filter_already_liked_items=False)
            assert_array_equal(one_ids, ids[u])
            assert np.allclose(one_scores, scores[u])

    def test_recalculate_user(self, case):
        x = checker_board(50)
        model = fitted(case, 50)
        users = np.arange(50)
        try:
            batch_ids, batch_scores = model.recommend(users, x[users], N=1,
                                                      recalculate_user=True)
        except NotImplementedError:
            assert isinstance(model, BPR)  # the one model without a fold-in step
            return
        for u in range(50):
            ids, scores = model.recommend(u, x[u], N=1)
            re_ids, re_scores = model.recommend(userid=0, user_items=x[u], N=1,
                                                recalculate_user=True)
            assert ids[0] == re_ids[0] == batch_ids[u][0]
            assert re_scores[0] == pytest.approx(scores[0], abs=1e-3)
            assert batch_scores[u][0] == pytest.approx(re_scores[0], abs=1e-3)

    def test_evaluation(self, case):
        """implicit.evaluation drives the model (N=, int32 ids) and agrees with a hand count."""
        x = checker_board(50)
        model = fitted(case, 50)
        test = sp.csr_matrix(np.eye(50))
        p = precision_at_k(model, x, test, K=1, show_progress=False)
        ids, _ = model.recommend(np.arange(50), x, k=1)
        assert p == pytest.approx(np.mean(ids[:, 0] == np.arange(50)))
        if case.personalised:
            assert p == 1.0
            assert ndcg_at_k(model, x, test, K=10, show_progress=False) == 1.0
        metrics = ranking_metrics_at_k(model, x, test, K=5, show_progress=False)
        assert set(metrics) >= {"precision", "map", "ndcg", "auc"}

    def test_similar_users(self, case):
        model = fitted(case, 50)
        try:
            for u in range(50):
                ids, _ = model.similar_users(u, N=10)
                assert u not in ids
                assert all(r % 2 == u % 2 for r in ids)
        except NotImplementedError:
            assert not isinstance(model, (ALS, BPR))

    def test_similar_users_batch_and_filter(self, case):
        model = fitted(case, 256)
        users = np.arange(50)
        try:
            ids, scores = model.similar_users(users, N=10)
        except NotImplementedError:
            assert not isinstance(model, (ALS, BPR))
            return
        assert ids.shape == (50, 10)
        for u in users:
            assert u not in ids[u] and all(r % 2 == u % 2 for r in ids[u])
        ids, _ = model.similar_users(users, N=10, filter_users=np.arange(52) * 5)
        assert not (ids % 5 == 0).any()
        selected = np.arange(10)
        ids, _ = model.similar_users(users, N=10, users=selected)
        for u in users:
            assert set(ids[u]) == set(selected)

    def _similar_items_or_skip(self, model, *args, **kw):
        try:
            return model.similar_items(*args, **kw)
        except NotImplementedError:
            assert not case_has_item_similarity(model)
            pytest.skip(f"{type(model).__name__} has no item-item similarity")

    def test_similar_items(self, case):
        model = fitted(case, 256)
        for item in range(50):
            ids, _ = self._similar_items_or_skip(model, item, N=10)
            assert item not in ids
            assert all(r % 2 == item % 2 for r in ids if r >= 0)
            with pytest.raises(NotImplementedError):
                model.similar_items(item, N=10, item_users=checker_board(256).T.tocsr()[item])

    def test_similar_items_batch_and_filter(self, case):
        model = fitted(case, 256)
        items = np.arange(50)
        ids, _ = self._similar_items_or_skip(model, items, N=10)
        assert ids.shape == (50, 10)
        for i in items:
            assert i not in ids[i] and all(r % 2 == i % 2 for r in ids[i] if r >= 0)
        ids, _ = model.similar_items(items, N=10, filter_items=np.arange(52) * 5)
        assert not (ids % 5 == 0).any()
        selected = np.arange(10)
        ids, _ = model.similar_items(items, N=10, items=selected)
        for i in items:
            assert set(ids[i]) == set(selected)

    def test_zero_length_row(self, case):
        dense = checker_board(50).toarray()
        for j in (42, 49):  # also the last row/column (implicit issue #86)
            dense[j] = 0
            dense[:, j] = 0
        model = fit(case, sp.csr_matrix(dense))
        if not case.similar_from_interactions:
            return
        for item in range(40):
            ids, _ = self._similar_items_or_skip(model, item, 10)
            assert 42 not in ids

    def test_fit_non_csr_matrix(self, case):
        x = checker_board(50)
        for other in (x.tocoo(), x.tolil()):
            with pytest.warns(ParameterWarning):
                model = fit(case, other)
            assert_array_equal(model.recommend(0, x[0])[0], fitted(case, 50).recommend(0, x[0])[0])

    def test_fit_ordering(self, case):
        rng = np.random.RandomState(10)
        items = rng.randint(0, 200, size=1000, dtype=np.int32)
        users = rng.randint(0, 100, size=1000, dtype=np.int32)
        likes = sp.coo_matrix((np.ones(1000), (users, items))).tocsr()
        model = fit(case, likes)
        for u in np.unique(users):
            _, scores = model.recommend(u, likes[u])
            assert np.all(np.diff(scores) <= 0)

    def test_dtype(self, case):
        x = checker_board(50)
        a = fit(case, x.astype(np.float64)).recommend(np.arange(50), x, k=3)[0]
        b = fit(case, x.astype(np.float32)).recommend(np.arange(50), x, k=3)[0]
        assert_array_equal(a, b)

    def test_rank_items(self, case):
        x = checker_board(50)
        model = fitted(case, 50)
        selected = np.array([1, 2, 3, 4, 5, 6])
        ids, scores = model.recommend(0, x[0], items=selected, N=20)
        assert len(ids) == len(selected) and set(ids) == set(selected)
        # items 2, 4, 6 were liked by user 0: filtered, so ranked last with -inf
        assert set(ids[3:]) == {2, 4, 6} and np.all(np.isneginf(scores[3:]))
        rng = random.Random(0)
        for u in range(50):
            chosen = rng.sample(range(50), 10)
            ids, _ = model.recommend(u, x[u], items=chosen, filter_already_liked_items=False)
            assert set(ids) == set(chosen)
            for wrong in ([-1, -3, -5], [51, 300, 200]):
                with pytest.raises(IndexError):
                    model.recommend(u, x[u], items=chosen + wrong)

    def test_rank_items_batch(self, case):
        x = checker_board(50)
        selected = np.arange(10) * 3
        ids, _ = fitted(case, 50).recommend(np.arange(50), x, items=selected)
        for u in range(50):
            assert set(ids[u]) == set(selected)

    def test_pickle(self, case):
        x = checker_board(50)
        model = fitted(case, 50)
        again = pickle.loads(pickle.dumps(model))  # our own object, not a user file
        assert_array_equal(model.recommend(0, x[0])[0], again.recommend(0, x[0])[0])
        pickle.loads(pickle.dumps(case.make()))

    def test_serialization(self, case, tmp_path):
        x = checker_board(50)
        model = fitted(case, 50)
        path = tmp_path / "model.npz"
        model.save(path)
        for reloaded in (type(model).load(path), Recommender.load(path)):
            assert_array_equal(model.recommend(0, x[0])[0], reloaded.recommend(0, x[0])[0])
        with open(tmp_path / "f.npz", "wb+") as fh:  # file objects too
            model.save(fh)
            fh.seek(0)
            reloaded = model.load(fh)
        a, b = model.recommend(np.arange(50), x, k=5), reloaded.recommend(np.arange(50), x, k=5)
        assert_array_equal(a[0], b[0]) and assert_array_equal(a[1], b[1])

    def test_serialization_without_fit(self, case, tmp_path):
        with pytest.raises(NotFittedError):
            case.make().save(tmp_path / "m.npz")

    def test_invalid_user_items(self, case):
        x = checker_board(50)
        model = fitted(case, 50)
        for bad in (x[[0]].tocsc(), x[[0]].tocoo()):
            with pytest.raises(ValueError):
                model.recommend(0, user_items=bad)

    def test_fit_callback(self, case):
        calls = []
        try:
            fit(case, checker_board(5), callback=lambda *a, **k: calls.append(a))
        except NotImplementedError:
            assert not case.make()._supports_callback
            return
        assert len(calls) >= 1


def case_has_item_similarity(model) -> bool:
    return not isinstance(model, (Popularity, TrendingPopularity))


def test_k_and_n_aliases():
    """N is k (int32 ids, like implicit); both with different values is an error."""
    x = checker_board(10)
    model = EASE(l2=1.0).fit(x)
    ids_k, s_k = model.recommend(np.arange(10), x, k=3)
    ids_n, s_n = model.recommend(np.arange(10), x, N=3)
    assert ids_k.dtype == np.int64 and ids_n.dtype == np.int32
    assert_array_equal(ids_k, ids_n) and assert_array_equal(s_k, s_n)
    assert model.recommend(0, x[0], 3)[0].tolist() == model.recommend(0, x[0], N=3)[0].tolist()
    with pytest.raises(ValueError, match="N is implicit's name"):
        model.recommend(0, x[0], k=3, N=4)
    with pytest.raises(ValueError, match="userid"):
        model.recommend(0, x[0], userid=1)
