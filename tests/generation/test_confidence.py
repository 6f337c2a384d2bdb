"""Confidence features, score, thresholds and the calibrator on hand-made arrays."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from generation.confidence import (
    DEFAULT_THRESHOLDS,
    FALLBACK_THRESHOLD,
    Calibrator,
    confidence_features,
    confidence_score,
    default_threshold,
    needs_backfill,
)

INF = float("inf")


def test_features_by_hand():
    f = confidence_features(np.array([[0.9, 0.5, 0.3], [0.4, -INF, -INF], [-INF, -INF, -INF]]))
    assert list(f.columns) == ["top1", "margin", "gap12", "spread", "coherence", "n_valid"]
    np.testing.assert_allclose(f.loc[0, ["top1", "margin", "gap12"]], [0.9, 0.5, 0.4])
    assert f.loc[0, "spread"] == pytest.approx(np.std([0.9, 0.5, 0.3]))
    assert f.loc[1, "top1"] == pytest.approx(0.4)
    assert np.isnan(f.loc[1, "margin"]) and np.isnan(f.loc[1, "gap12"])
    assert f.loc[1, "spread"] == 0.0
    assert np.isnan(f.loc[2, "top1"]) and f.loc[2, "n_valid"] == 0
    assert list(f["n_valid"]) == [3, 1, 0]
    assert f["coherence"].isna().all()


def test_margin_ignores_padding():
    f = confidence_features(np.array([[0.8, 0.6, 0.2, -INF]]))
    assert f.loc[0, "margin"] == pytest.approx(0.8 - 0.4)


def test_coherence():
    same = np.tile(np.array([1.0, 0.0, 0.0]), (3, 1))
    ortho = np.eye(3)
    emb = np.stack([same, ortho])
    f = confidence_features(np.array([[0.5, 0.4, 0.3], [0.5, 0.4, -INF]]), emb)
    assert f.loc[0, "coherence"] == pytest.approx(1.0)
    assert f.loc[1, "coherence"] == pytest.approx(0.0)  # padding row ignored
    with pytest.raises(ValueError, match="embeddings has shape"):
        confidence_features(np.zeros((2, 3)), np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="scores has shape"):
        confidence_features(np.zeros(3))


def test_confidence_score_is_clipped_top1():
    f = confidence_features(np.array([[0.3, 0.1], [-0.2, -0.3], [-INF, -INF]]))
    np.testing.assert_allclose(confidence_score(f), [0.3, 0.0, 0.0])
    assert confidence_score({"top1": 1.3}) == 1.0
    assert confidence_score(f.iloc[0]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="top1"):
        confidence_score(pd.DataFrame({"x": [1.0]}))


def test_needs_backfill_extremes():
    assert needs_backfill(1.0, 1.0) is True  # 1.0 always generates
    assert needs_backfill(0.0, 0.0) is False  # 0.0 never
    assert needs_backfill(0.2, 0.25) is True and needs_backfill(0.3, 0.25) is False
    np.testing.assert_array_equal(needs_backfill(np.array([0.1, 0.9]), 0.5), [True, False])
    with pytest.raises(ValueError, match="threshold=1.5"):
        needs_backfill(0.5, 1.5)


def test_default_threshold(caplog):
    assert default_threshold({"model": "ViT-B-32", "pretrained": "openai",
                              "random_weights": False}) == DEFAULT_THRESHOLDS["ViT-B-32/openai"]
    with caplog.at_level(logging.WARNING):
        assert default_threshold({"model": "tiny-clip", "pretrained": "none",
                                  "random_weights": True}) == FALLBACK_THRESHOLD
        assert default_threshold({"model": "X", "pretrained": "y"}) == FALLBACK_THRESHOLD
    assert "random weights" in caplog.text and "no default" in caplog.text


def _labelled(n=200, seed=0):
    rng = np.random.default_rng(seed)
    top1 = rng.uniform(0.0, 0.6, n)
    scores = np.sort(np.stack([top1, top1 - rng.uniform(0, 0.2, n), top1 - 0.3], 1), axis=1)[:, ::-1]
    return confidence_features(scores), (top1 > 0.3).astype(int)


@pytest.mark.parametrize("method", ["logistic", "isotonic"])
def test_calibrator_fit_predict_save_load(tmp_path, method):
    feats, y = _labelled()
    cal = Calibrator(method=method).fit(feats, y)
    p = cal.predict(feats)
    assert p.shape == (len(y),) and (p >= 0).all() and (p <= 1).all()
    assert p[y == 1].mean() > 0.8 and p[y == 0].mean() < 0.2
    path = tmp_path / "cal.json"
    cal.save(path)
    assert json.loads(path.read_text())["method"] == method
    np.testing.assert_allclose(Calibrator.load(path).predict(feats), p, rtol=1e-9)


def test_calibrator_errors():
    from sklearn.exceptions import NotFittedError

    feats, y = _labelled(20)
    with pytest.raises(NotFittedError):
        Calibrator().predict(feats)
    with pytest.raises(ValueError, match="both classes"):
        Calibrator().fit(feats, np.ones(20))
    with pytest.raises(ValueError, match="method='svm'"):
        Calibrator(method="svm").fit(feats, y)
    with pytest.raises(ValueError, match="NaN"):
        Calibrator(columns=("coherence",)).fit(feats, y)
