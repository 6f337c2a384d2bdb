"""ContentEASE: collective EASE with item feature matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import EASE, ContentEASE, Recommender, fit_model, make_model


def _log():
    """Items 0 and 1 always co-occur; item 2 has no interaction (cold); item 3 is separate."""
    x = np.zeros((6, 4), dtype=np.float32)
    x[:4, 0] = x[:4, 1] = 1.0
    x[4:, 3] = 1.0
    return sp.csr_matrix(x)


def _features():
    """Item 2 looks exactly like item 1; items 0 and 3 point elsewhere."""
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_without_features_it_is_ease():
    x = _log()
    ours = ContentEASE(l2=2.0, feature_weight=0.0).fit(x, item_features=_features())
    ref = EASE(l2=2.0).fit(x)
    np.testing.assert_allclose(ours.B_, ref.B_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ContentEASE(l2=2.0).fit(x).B_, ref.B_, rtol=1e-5, atol=1e-6)


def test_cold_item_reached_through_its_content():
    x = _log()
    user = sp.csr_matrix(np.array([[0.0, 1.0, 0.0, 0.0]], dtype=np.float32))  # saw item 1
    plain = ContentEASE(l2=1.0, feature_weight=0.0).fit(x).score(user)[0]
    assert plain[2] == 0.0  # no interaction, no weight
    model = ContentEASE(l2=1.0, feature_weight=5.0).fit(x, item_features=_features())
    s = model.score(user)[0]
    assert s[2] > s[3] and s[2] > 0
    ids, _ = model.recommend(0, user, k=1)
    assert ids.tolist() in ([0], [2])


def test_popularity_prior_orders_an_empty_user():
    x = _log()
    m = ContentEASE(l2=1.0, popularity_weight=1.0).fit(x)
    ids, _ = m.recommend(0, sp.csr_matrix((1, 4), dtype=np.float32), k=4)
    assert ids[:2].tolist() in ([0, 1], [1, 0]) and ids[2] == 3  # 4 users > 2 users > 0


def test_bad_features_and_weights():
    x = _log()
    with pytest.raises(ValueError, match=r"item_features\[0\] has shape \(3, 3\), expected \(4, d\)"):
        ContentEASE().fit(x, item_features=_features()[:3])
    f = _features()
    f[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"item_features\[1\] row 1 holds NaN"):
        ContentEASE().fit(x, item_features=[_features(), f])
    with pytest.raises(ValueError, match="feature_weight has 2 values for 1 feature matrices"):
        ContentEASE(feature_weight=[1.0, 2.0]).fit(x, item_features=_features())


def test_weights_per_matrix_save_load_and_registry(tmp_path):
    x = _log()
    m = fit_model(make_model("ease-content", l2=1.0, feature_weight=[3.0, 0.0]), x,
                  item_features=[_features(), np.eye(4)])
    m.save(tmp_path / "m.npz")
    back = Recommender.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.score(x[:2]), m.score(x[:2]))


def test_dropout_emphasis_is_a_popularity_proportional_ridge():
    x = _log()
    g = (x.T @ x).toarray()
    p = 0.5  # p / (1 - p) = 1: the ridge of item j grows by its count
    m = ContentEASE(l2=1.0, feature_weight=0.0, dropout=p).fit(x)
    inv = np.linalg.inv(g + np.diag(1.0 + np.diag(g)))
    ref = -inv / np.diag(inv)[None, :]
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(m.B_, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got 1.0"):
        ContentEASE(dropout=1.0).fit(x)
