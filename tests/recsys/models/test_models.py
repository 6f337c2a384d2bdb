"""Behavioural tests shared by every recommender, on fixtures with obvious right answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import (
    ALS,
    BPR,
    EASE,
    MODELS,
    ContentEASE,
    ContentModel,
    HybridColdStart,
    ItemKNN,
    NotFittedError,
    Popularity,
    Recommender,
    TrendingPopularity,
    fit_model,
    make_model,
)
from recsys.models.base import topk
from recsys.models.itemknn import bm25_weight

N = 20  # checkerboard size


def checkerboard(n: int = N) -> sp.csr_matrix:
    """Even users liked every even item, odd users every odd item; the diagonal is held out.

    The right recommendation for user ``u`` is therefore item ``u``: the one item of its
    group it has not seen, liked by every other user of the group (implicit's fixture).
    """
    dense = np.zeros((n, n), dtype=np.float32)
    for u in range(n):
        dense[u, u % 2 :: 2] = 1.0
        dense[u, u] = 0.0
    return sp.csr_matrix(dense)


def popularity_board() -> sp.csr_matrix:
    """Item j is liked by j users (items 0..5), so item 5 is the most popular."""
    dense = np.zeros((6, 6), dtype=np.float32)
    for j in range(6):
        dense[:j, j] = 1.0
    return sp.csr_matrix(dense)


def board_embeddings(n: int = N) -> np.ndarray:
    """Item j: a group direction (even / odd) plus a small own direction, so items of one group
    are near each other and far from the other group (the checkerboard's right answer)."""
    e = np.zeros((n, 2 + n), dtype=np.float32)
    e[np.arange(n), np.arange(n) % 2] = 1.0
    e[np.arange(n), 2 + np.arange(n)] = 0.1
    return e


def board_times(x: sp.csr_matrix) -> sp.csr_matrix:
    """Interaction times for a matrix: day (user + 1), so every entry has a time."""
    t = x.copy().astype(np.float64)
    t.data = (np.repeat(np.arange(x.shape[0]), np.diff(x.indptr)) + 1.0) * 86_400.0
    return t


def fit_on(model, x):
    """Fit with the side inputs the model needs (board embeddings, board times)."""
    return fit_model(model, x, item_embeddings=board_embeddings(x.shape[1]),
                     item_features=board_embeddings(x.shape[1]),
                     interaction_times=board_times(x))


FACTORIES = {
    "popularity": lambda: Popularity(),
    "trending": lambda: TrendingPopularity(half_life_days=30.0),
    "content": lambda: ContentModel(),
    "hybrid": lambda: HybridColdStart(factors=8, regularization=0.1, iterations=20,
                                      random_state=0, num_threads=1),
    "ease": lambda: EASE(l2=1.0),
    "ease-content": lambda: ContentEASE(l2=1.0, feature_weight=1.0, popularity_weight=0.01),
    "itemknn": lambda: ItemKNN(neighbors=20),
    "itemknn-bm25": lambda: ItemKNN(neighbors=20, weighting="bm25"),
    "als": lambda: ALS(factors=8, regularization=0.1, iterations=20, random_state=0, num_threads=1),
    "bpr": lambda: BPR(factors=8, iterations=200, random_state=0, num_threads=1),
}
PERSONALISED = [name for name in FACTORIES if name not in ("popularity", "trending")]


@pytest.fixture(scope="module")
def board():
    return checkerboard()


@pytest.fixture(scope="module", params=list(FACTORIES))
def fitted(request, board):
    return request.param, fit_on(FACTORIES[request.param](), board)


class TestEveryModel:
    def test_fit_returns_self_and_sets_learned_state(self, board):
        for name, factory in FACTORIES.items():
            model = factory()
            assert not [a for a in vars(model) if a.endswith("_")], name
            assert fit_on(model, board) is model
            assert model.n_users_ == N and model.n_items_ == N

    @pytest.mark.parametrize("name", PERSONALISED)
    def test_held_out_same_group_item_comes_first(self, name, board):
        model = fit_on(FACTORIES[name](), board)
        for u in range(N):
            ids, scores = model.recommend(u, board[[u]], k=1)
            assert ids.shape == (1,) and ids[0] == u, (name, u, ids)

    def test_popularity_ranks_by_user_count(self):
        x = popularity_board()
        model = Popularity().fit(x)
        ids, scores = model.recommend(5, x[[5]], k=3)  # user 5 saw nothing
        assert ids.tolist() == [5, 4, 3]
        assert scores.tolist() == [5.0, 4.0, 3.0]
        ids, _ = model.recommend(0, x[[0]], k=2)  # user 0 saw items 1..5
        assert ids.tolist() == [0, -1]

    def test_output_types_and_shapes(self, fitted, board):
        _, model = fitted
        ids, scores = model.recommend(3, board[[3]], k=4)
        assert ids.shape == scores.shape == (4,)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        users = np.array([1, 4, 7])
        ids, scores = model.recommend(users, board[users], k=4)
        assert ids.shape == scores.shape == (3, 4)
        assert np.all(np.diff(scores, axis=1) <= 0)
        assert model.score(board[users], users).shape == (3, N)

    def test_batch_equals_one_by_one(self, fitted, board):
        _, model = fitted
        users = np.arange(N)
        ids, scores = model.recommend(users, board[users], k=5)
        for u in users:
            one_ids, one_scores = model.recommend(int(u), board[[u]], k=5)
            np.testing.assert_array_equal(one_ids, ids[u])
            np.testing.assert_allclose(one_scores, scores[u], rtol=1e-6, atol=1e-6)

    def test_filter_already_liked_items(self, fitted, board):
        _, model = fitted
        users = np.arange(N)
        ids, _ = model.recommend(users, board[users], k=N)
        for u in users:
            seen = set(board[u].indices)
            assert not seen & set(ids[u].tolist())
        ids, _ = model.recommend(users, board[users], k=N, filter_already_liked_items=False)
        assert all(len(set(board[u].indices) & set(ids[u].tolist())) > 0 for u in users)

    def test_filter_items(self, fitted, board):
        _, model = fitted
        banned = [0, 1, 2, 7]
        users = np.arange(N)
        ids, _ = model.recommend(users, board[users], k=N, filter_items=banned)
        assert not np.isin(ids, banned).any()

    def test_padding_when_k_exceeds_remaining_items(self, fitted, board):
        _, model = fitted
        seen = len(board[2].indices)
        ids, scores = model.recommend(2, board[[2]], k=N + 5, filter_items=[2])
        n_valid = N - seen - 1
        assert ids.shape == (N + 5,)
        assert np.all(ids[:n_valid] >= 0) and len(set(ids[:n_valid].tolist())) == n_valid
        assert np.all(ids[n_valid:] == -1)
        assert np.all(np.isfinite(scores[:n_valid])) and np.all(scores[n_valid:] == -np.inf)

    def test_save_load_round_trip(self, fitted, board, tmp_path):
        name, model = fitted
        path = tmp_path / "model"  # no suffix: written exactly as named
        model.save(path)
        assert path.exists() and not (tmp_path / "model.npz").exists()
        loaded = Recommender.load(path)
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        users = np.arange(N)
        for m in (model, loaded):
            m.result = m.recommend(users, board[users], k=7)
        np.testing.assert_array_equal(model.result[0], loaded.result[0])
        np.testing.assert_array_equal(model.result[1], loaded.result[1])
        assert type(model).load(path).n_items_ == N

    def test_unfitted_raises_not_fitted(self, board, tmp_path):
        for factory in FACTORIES.values():
            model = factory()
            with pytest.raises(NotFittedError):
                model.recommend(0, board[[0]])
            with pytest.raises(NotFittedError):
                model.score(board[[0]])
            with pytest.raises(NotFittedError):
                model.save(tmp_path / "x.npz")
            with pytest.raises(NotFittedError):
                model.similar_items(0)

    def test_shape_errors_name_the_fix(self, fitted, board):
        _, model = fitted
        with pytest.raises(ValueError, match=r"expected \(1, 20\).*user_items\[\[user_index\]\]"):
            model.recommend(3, board, k=2)  # whole matrix instead of the user's row
        with pytest.raises(ValueError, match=r"expected \(2, 20\).*user_items\[user_index\]"):
            model.recommend(np.array([1, 2]), board[[1]], k=2)
        with pytest.raises(ValueError, match="fitted on 20 items"):
            model.recommend(0, sp.csr_matrix((1, 19)), k=2)
        with pytest.raises(ValueError, match="csr_matrix"):
            model.recommend(0, board[[0]].toarray(), k=2)
        with pytest.raises(ValueError, match="k must be"):
            model.recommend(0, board[[0]], k=0)
        with pytest.raises(ValueError, match="filter_items must be < 20"):
            model.recommend(0, board[[0]], filter_items=[25])
        with pytest.raises(ValueError, match="user_index must be >= 0"):
            model.recommend(-1, board[[0]])

    @pytest.mark.parametrize("name", PERSONALISED)
    def test_similar_items_stay_in_group(self, name, board):
        model = fit_on(FACTORIES[name](), board)
        items = np.arange(N)
        ids, scores = model.similar_items(items, k=5)
        assert ids.shape == (N, 5)
        assert not np.any(ids == items[:, None])  # the query item itself is excluded
        assert np.all(ids % 2 == items[:, None] % 2), (name, ids)
        one_ids, _ = model.similar_items(4, k=5)
        np.testing.assert_array_equal(one_ids, ids[4])

    def test_popularity_similar_items_not_implemented(self, board):
        with pytest.raises(NotImplementedError, match="ItemKNN"):
            Popularity().fit(board).similar_items(0)


def test_fit_rejects_bad_matrices():
    with pytest.raises(ValueError, match="csr_matrix"):
        EASE().fit(np.ones((3, 3)))
    with pytest.raises(ValueError, match="CSR format"):  # recommend does not convert
        EASE().fit(checkerboard(4)).recommend(0, sp.coo_matrix(np.ones((1, 4))))
    with pytest.raises(ValueError, match="negative"):
        EASE().fit(sp.csr_matrix(-np.ones((3, 3))))
    with pytest.raises(ValueError, match="NaN"):
        EASE().fit(sp.csr_matrix(np.full((3, 3), np.nan)))
    with pytest.raises(ValueError, match="l2 must be"):
        EASE(l2=0).fit(checkerboard(4))
    with pytest.raises(ValueError, match="neighbors must be"):
        ItemKNN(neighbors=0).fit(checkerboard(4))


def test_ease_matches_closed_form():
    rng = np.random.default_rng(0)
    x = (rng.random((12, 7)) < 0.4).astype(np.float64)
    lam = 3.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(7))
    b = np.eye(7) - p / np.diag(p)[None, :]  # Steck 2019, eq. 8
    np.testing.assert_allclose(np.diag(b), 0.0, atol=1e-12)
    model = EASE(l2=lam).fit(sp.csr_matrix(x))
    np.testing.assert_allclose(model.B_, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score(sp.csr_matrix(x[:3])), x[:3] @ b, rtol=1e-5, atol=1e-5)


def test_ease_refuses_catalogue_over_memory_budget():
    x = sp.csr_matrix(np.ones((2, 100), dtype=np.float32))
    with pytest.raises(ValueError, match=r"n_items=100 needs about 240000 bytes.*ItemKNN or ALS"):
        EASE(max_memory_bytes=100_000).fit(x)
    EASE(max_memory_bytes=240_000).fit(x)  # exactly the need: accepted


def test_ties_break_by_lower_item_index():
    x = sp.csr_matrix(np.ones((3, 6), dtype=np.float32))  # every item equally popular
    model = Popularity().fit(x)
    ids, _ = model.recommend(0, sp.csr_matrix((1, 6)), k=4)
    assert ids.tolist() == [0, 1, 2, 3]
    scores = np.array([[1, 3, 3, 2, 3, -np.inf], [0, 0, 0, 0, 0, 0]], dtype=np.float32)
    ids, top = topk(scores, 3)
    assert ids.tolist() == [[1, 2, 4], [0, 1, 2]]
    ids, top = topk(scores, 7)
    assert ids[0].tolist() == [1, 2, 4, 3, 0, -1, -1]
    assert top[0, -2:].tolist() == [-np.inf, -np.inf]


def test_topk_matches_stable_argsort_on_random_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(50, 30)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    ids, top = topk(scores, 8)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :8]
    expected = np.where(np.isfinite(np.take_along_axis(scores, order, 1)), order, -1)
    np.testing.assert_array_equal(ids, expected)


def test_topk_on_mostly_tied_rows_matches_stable_argsort():
    """Sparse scores (kNN, popularity): most columns tie at 0, some rows have fewer than k
    positive scores, so the k-th score is a tie shared by hundreds of columns; the lowest-index
    tied columns fill the list, as a stable argsort orders them."""
    rng = np.random.default_rng(2)
    scores = np.zeros((40, 500), dtype=np.float32)
    for i in range(40):
        nnz = [0, 3, 9, 10, 50][i % 5]
        scores[i, rng.choice(500, nnz, replace=False)] = rng.integers(1, 4, nnz)
    scores[rng.random(scores.shape) < 0.1] = -np.inf  # filtered items
    scores[::7, :] = -np.inf  # rows with nothing left
    scores[::7, [3, 200]] = 0.0
    ids, top = topk(scores, 10)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    taken = np.take_along_axis(scores, order, 1)
    np.testing.assert_array_equal(ids, np.where(np.isfinite(taken), order, -1))
    np.testing.assert_array_equal(top, taken)
    assert ids[7].tolist() == [3, 200] + [-1] * 8


def test_als_folds_in_new_users_and_bpr_refuses(board):
    new_user = sp.csr_matrix(board[[4]].toarray())  # an even user not in the fitted matrix
    als = FACTORIES["als"]().fit(board)
    ids, _ = als.recommend(N, new_user, k=1)  # user_index N >= n_users_: folded in
    assert ids.tolist() == [4]
    assert als.score(new_user).shape == (1, N)  # no user_index: folded in too
    bpr = FACTORIES["bpr"]().fit(board)
    with pytest.raises(ValueError, match="fitted on"):
        bpr.recommend(N, new_user, k=1)


def test_bm25_weight_matches_implicit():
    nn = pytest.importorskip("implicit.nearest_neighbours")
    x = sp.csr_matrix(np.random.default_rng(2).poisson(1.0, size=(9, 6)).astype(np.float64))
    ours = bm25_weight(x, 1.2, 0.75).toarray()
    theirs = nn.bm25_weight(x.T, K1=1.2, B=0.75).T.toarray()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_itemknn_keeps_top_neighbors_per_item(board):
    model = ItemKNN(neighbors=2).fit(board)
    assert np.all(np.diff(model.similarity_.indptr) == 2)
    assert model.similarity_.diagonal().sum() == 0


def test_registry_and_params(tmp_path, board):
    assert set(MODELS) == {"popularity", "ease", "itemknn", "als", "bpr", "trending", "content",
                           "hybrid", "ease-content", "graph-filter", "ltr", "sasrec", "gru4rec",
                           "lastitem", "windowknn"}
    model = make_model("EASE", l2=10.0)
    assert isinstance(model, EASE) and model.get_params()["l2"] == 10.0
    with pytest.raises(ValueError, match=r"valid names: \['als', 'bpr', 'content', 'ease'"):
        make_model("svd")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lambda_'\].*'l2'"):
        make_model("ease", lambda_=3)
    with pytest.raises(ValueError, match="no parameter"):
        EASE().set_params(lam=1)
    path = tmp_path / "ease.npz"
    EASE(l2=1.0).fit(board).save(path)
    with pytest.raises(ValueError, match="holds a EASE, not a ALS"):
        ALS.load(path)
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a saved Recommender"):
        Recommender.load(tmp_path / "plain.npz")


def _has_implicit_cuda() -> bool:
    try:
        import implicit.gpu

        return bool(implicit.gpu.HAS_CUDA)
    except ImportError:
        return False


@pytest.mark.skipif(_has_implicit_cuda(), reason="checks the no-CUDA error; CUDA is present")
def test_cuda_device_without_cuda_raises(board):
    with pytest.raises(RuntimeError, match="device='cpu'"):
        ALS(factors=4, iterations=2, device="cuda").fit(board)
    auto = ALS(factors=4, iterations=2, device="auto", num_threads=1).fit(board)  # CPU fallback
    assert auto.item_factors_.shape == (N, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not _has_implicit_cuda(), reason="implicit has no CUDA support here")
@pytest.mark.parametrize("cls", [ALS, BPR])
def test_gpu_fit_gives_numpy_factors_and_right_answer(cls, board):
    model = cls(factors=8, iterations=200 if cls is BPR else 20, regularization=0.1, device="cuda")
    model.fit(board)
    assert isinstance(model.item_factors_, np.ndarray)
    ids, _ = model.recommend(np.arange(N), board, k=1)
    assert (ids[:, 0] == np.arange(N)).mean() >= 0.9


class TestEmptyMatrices:
    """Matrices without any interaction: defined results or errors that say why (issue 19.5)."""

    def test_trending_on_no_interactions_scores_every_item_zero(self):
        x = sp.csr_matrix((3, 4), dtype=np.float32)
        model = TrendingPopularity().fit(x, interaction_times=sp.csr_matrix((3, 4)))
        assert model.item_scores_.tolist() == [0.0] * 4
        ids, scores = model.recommend(0, x[[0]], k=4)
        assert ids.tolist() == [0, 1, 2, 3] and scores.tolist() == [0.0] * 4  # ties: low index

    def test_hybrid_on_no_interactions_says_why(self):
        x = sp.csr_matrix((3, 4), dtype=np.float32)
        with pytest.raises(ValueError, match="no interactions.*ContentModel"):
            HybridColdStart(factors=2, num_threads=1).fit(
                x, item_embeddings=board_embeddings(4))

    @pytest.mark.parametrize("name", ["popularity", "content", "ease", "itemknn", "als", "bpr"])
    def test_other_models_fit_and_rank_by_index(self, name):
        x = sp.csr_matrix((3, 4), dtype=np.float32)
        model = fit_on(FACTORIES[name](), x)
        ids, scores = model.recommend(np.arange(3), x, k=4)
        assert ids.shape == (3, 4) and np.all(np.isfinite(scores[ids >= 0]))
