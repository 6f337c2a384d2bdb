"""GraphFilter: training-free propagation over the interaction graph and content kNN graphs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import GraphFilter, Recommender, make_model
from recsys.models.graph_filter import knn_item_graph


def _log():
    """Items 0 and 1 always co-occur; item 2 has no interaction (cold); item 3 is separate."""
    x = np.zeros((6, 4), dtype=np.float32)
    x[:4, 0] = x[:4, 1] = 1.0
    x[4:, 3] = 1.0
    return sp.csr_matrix(x)


def _features():
    """Item 2 looks exactly like item 1; items 0 and 3 point elsewhere."""
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _by_hand(x: np.ndarray, layers: int) -> np.ndarray:
    """GF-CF's filter written from the formula: D_I^-1/2 (R~^T R~)^L D_I^1/2."""
    du, di = x.sum(1), x.sum(0)
    di = np.where(di > 0, di, 1.0)
    rt = x / np.sqrt(np.where(du > 0, du, 1.0))[:, None] / np.sqrt(di)[None, :]
    p = np.linalg.matrix_power(rt.T @ rt, layers)
    return p / np.sqrt(di)[:, None] * np.sqrt(di)[None, :]


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_without_features_it_is_the_propagated_gf_cf_filter(layers, dense):
    x = _log()
    m = GraphFilter(layers=layers, feature_weight=0.0, dense=dense).fit(x)
    assert (m.W_ is None) == (not dense)

    w = _by_hand(x.toarray().astype(np.float64), layers)
    np.testing.assert_allclose(m.score(x), x.toarray() @ w, rtol=1e-5, atol=1e-6)
    # similar_items' scores are the rows of the same filter
    np.testing.assert_allclose(m._item_scores(np.arange(4)), w, rtol=1e-5, atol=1e-6)


def test_knn_graph_links_items_with_the_same_content_and_is_normalised():
    g = knn_item_graph(_features(), knn=1).toarray()
    assert g[1, 2] > 0 and g[2, 1] > 0  # identical rows: each other's nearest neighbour
    np.testing.assert_allclose(g, g.T)
    assert np.all(np.diag(g) == 0)
    # symmetric normalisation: a pair linked only to each other gets weight 1
    np.testing.assert_allclose(g[1, 2], 1.0, rtol=1e-6)
    # items 0 and 3 have no positive-cosine neighbour after mean-centring: empty rows
    assert g[0].sum() == 0 and g[3].sum() == 0


def test_cold_item_reached_only_through_its_content():
    x = _log()
    user = sp.csr_matrix(np.array([[0.0, 1.0, 0.0, 0.0]], dtype=np.float32))  # saw item 1
    plain = GraphFilter(layers=2, feature_weight=0.0).fit(x)
    assert plain.score(user)[0][2] == 0.0  # no interaction, no edge
    m = GraphFilter(layers=2, feature_weight=0.3, knn=1).fit(x, item_features=_features())
    s = m.score(user)[0]
    assert s[2] > 0
    assert s[2] > s[3]  # the look-alike of what the user saw beats an unrelated warm item


def test_more_weight_on_content_moves_score_to_the_lookalike():
    x = _log()
    user = sp.csr_matrix(np.array([[0.0, 1.0, 0.0, 0.0]], dtype=np.float32))
    lo = GraphFilter(layers=1, feature_weight=0.1, knn=1).fit(x, item_features=_features())
    hi = GraphFilter(layers=1, feature_weight=0.6, knn=1).fit(x, item_features=_features())
    assert hi.score(user)[0][2] > lo.score(user)[0][2] > 0


def test_one_weight_per_matrix_and_bad_input():
    x = _log()
    f = _features()
    a = GraphFilter(layers=1, feature_weight=[0.3, 0.0], knn=1).fit(x, item_features=[f, f[::-1]])
    b = GraphFilter(layers=1, feature_weight=0.3, knn=1).fit(x, item_features=f)
    np.testing.assert_allclose(a.score(x), b.score(x), rtol=1e-6)
    with pytest.raises(ValueError, match="sums to 1.2 > 1"):
        GraphFilter(feature_weight=[0.6, 0.6]).fit(x, item_features=[f, f])
    with pytest.raises(ValueError, match="feature_weight has 2 values for 1 feature matrices"):
        GraphFilter(feature_weight=[0.1, 0.1]).fit(x, item_features=f)
    with pytest.raises(ValueError, match="layers must be an integer >= 1"):
        GraphFilter(layers=0).fit(x)
    with pytest.raises(ValueError, match=r"item_features\[0\] has shape \(3, 3\)"):
        GraphFilter().fit(x, item_features=f[:3])
    with pytest.raises(ValueError, match="dense must be 'auto', True or False"):
        GraphFilter(dense="yes").fit(x)


def test_auto_mode_follows_the_budget():
    # 20 items, 40 users with one item each: dense W needs 3 * 4 * 20^2 = 4,800 bytes, the
    # sparse M at most 12 * 40 = 480
    x = sp.csr_matrix((np.ones(40, np.float32), (np.arange(40), np.arange(40) % 20)),
                      shape=(40, 20))
    assert GraphFilter(feature_weight=0.0).fit(x).W_ is not None
    sparse = GraphFilter(feature_weight=0.0, max_memory_bytes=1000).fit(x)
    assert sparse.W_ is None
    np.testing.assert_allclose(sparse.score(x), GraphFilter(feature_weight=0.0).fit(x).score(x))
    with pytest.raises(ValueError, match="dense=True needs about 4800 bytes"):
        GraphFilter(feature_weight=0.0, dense=True, max_memory_bytes=1000).fit(x)
    with pytest.raises(ValueError, match="needs up to 480 bytes"):
        GraphFilter(feature_weight=0.0, max_memory_bytes=100).fit(x)


@pytest.mark.parametrize("dense", [True, False])
def test_registered_saved_and_loaded(tmp_path, dense):
    x = _log()
    m = make_model("graph-filter", layers=2, feature_weight=0.2, knn=1, dense=dense)
    assert isinstance(m, GraphFilter)
    m.fit(x, item_features=_features())
    m.save(tmp_path / "gf")
    back = Recommender.load(tmp_path / "gf")
    np.testing.assert_array_equal(back.score(x), m.score(x))
    ids, _ = back.similar_items(1, N=1)
    assert ids[0] == 0  # item 1's strongest neighbour is its co-watched item 0
