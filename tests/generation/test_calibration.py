"""Calibration of the backfill gate on labelled queries with obvious answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from embeddings.index.video_index import VideoIndex
from generation.calibration import (
    CALIBRATION_FILE,
    auroc,
    calibrate,
    collect_features,
    conformal_threshold,
    labelled_queries,
    load_calibration,
    plot_risk_coverage,
    preserve_calibration,
    risk_coverage,
    save_calibration,
)
from generation.confidence import needs_backfill

D, N_ITEMS = 32, 40


class StubEncoder:
    """encode_text looks the text up in a table of vectors (the world's 'text tower')."""

    def __init__(self, table):
        self.table = table

    def encode_text(self, texts, batch_size=256):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(N_ITEMS, D))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(N_ITEMS)]
    table, rows = {}, []
    for i in range(N_ITEMS):
        good = items[i] + 0.1 * rng.normal(size=D)  # top-1 is item i, cosine ~0.85+
        table[f"good {i}"] = good / np.linalg.norm(good)
        rows.append({"video_id": ids[i], "caption": f"good {i}"})
        bad = rng.normal(size=D)  # unrelated direction: low cosine everywhere
        bad /= np.linalg.norm(bad)
        table[f"bad {i}"] = bad
        worst = int(np.argmin(items @ bad))  # its 'relevant' item is the least similar one
        rows.append({"video_id": ids[worst], "caption": f"bad {i}"})
    meta = pd.DataFrame({"video_id": ids, "synthetic": False})
    index = VideoIndex.build(items.astype(np.float32), ids, metadata=meta, factory_string="Flat")
    return index, StubEncoder(table), pd.DataFrame(rows), items


def test_labels_and_auroc_are_obvious(world):
    index, enc, pairs, _ = world
    feats, labels, info = collect_features(index, enc, labelled_queries(pairs), k=5)
    assert info == {"n_queries": 80, "n_dropped": 0, "n_synthetic_excluded": 0}
    good = feats["query"].str.startswith("good").to_numpy()
    assert labels[good].all() and not labels[~good].any()
    assert auroc(feats["top1"], labels) == 1.0
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))


def test_synthetic_items_are_excluded_from_calibration(world):
    index, enc, pairs, items = world
    idx = VideoIndex.build(items.astype(np.float32), list(index.metadata["video_id"]),
                           metadata=index.metadata.copy(), factory_string="Flat")
    # a synthetic clip identical to the query "bad 0" would be its top-1 with cosine 1
    idx.add(enc.table["bad 0"][None].astype(np.float32), ["synthetic-x"],
            metadata=pd.DataFrame({"video_id": ["synthetic-x"], "synthetic": [True]}))
    extra = pd.concat([pairs, pd.DataFrame({"video_id": ["synthetic-x"], "caption": ["only synthetic"]})])
    enc2 = StubEncoder({**enc.table, "only synthetic": enc.table["bad 0"]})
    feats, labels, info = collect_features(idx, enc2, labelled_queries(extra), k=5)
    assert info["n_synthetic_excluded"] == 1 and info["n_dropped"] == 1  # relevant only synthetic
    assert "synthetic-x" not in set(feats["top1_id"])
    assert feats.set_index("query").loc["bad 0", "top1"] < 0.9


def test_conformal_threshold_order_statistic():
    neg = np.arange(1, 10) / 10  # 0.1 .. 0.9, n = 9
    t = conformal_threshold(neg, 0.2)  # rank ceil(10 * 0.8) = 8 -> 0.8, passed only if > 0.8
    assert t == np.nextafter(0.8, 1) and needs_backfill(0.8, t) and not needs_backfill(0.81, t)
    assert conformal_threshold(neg, 0.05) == 1.0  # ceil(10 * 0.95) = 10 > 9: too few
    with pytest.raises(ValueError, match="alpha=1.5"):
        conformal_threshold(neg, 1.5)
    with pytest.raises(ValueError, match="no held-out"):
        conformal_threshold([], 0.1)


def test_conformal_threshold_controls_the_error_rate_on_fresh_negatives():
    rng = np.random.default_rng(1)
    passed = []
    for _ in range(300):
        t = conformal_threshold(rng.uniform(size=49), 0.1)
        passed.append((rng.uniform(size=200) >= t).mean())
    assert 0.07 < np.mean(passed) <= 0.105  # marginal guarantee: E[pass rate] <= alpha


def test_risk_coverage_table():
    curve = risk_coverage([0.2, 0.4, 0.6, 0.8], [0, 1, 0, 1], thresholds=[0.0, 0.5, 0.7, 1.0])
    assert curve["trigger_rate"].tolist() == [0.0, 0.5, 0.75, 1.0]
    assert curve["risk"].tolist()[:3] == [0.5, 0.5, 0.0] and math.isnan(curve["risk"].iloc[3])


@pytest.mark.parametrize("method", ["isotonic", "logistic"])
def test_calibrate_save_load_and_survive_index_save(world, tmp_path, method):
    index, enc, pairs, _ = world
    feats, labels, _ = collect_features(index, enc, labelled_queries(pairs), k=5)
    res = calibrate(feats, labels, method=method, alpha=0.1, seed=0)
    assert res.metrics["auroc_top1"] == 1.0 and res.metrics["auroc_calibrated"] >= 0.99
    assert res.metrics["n_fit"] + res.metrics["n_heldout"] == 80
    # the conformal gate lets at most alpha of the held-out negatives through, and on separable
    # data (nearly) every positive: trigger rate ~ the negative rate (1/2)
    assert res.metrics["heldout_negatives_passed"] <= 0.1
    assert res.metrics["heldout_trigger_rate"] <= 0.6
    index.save(tmp_path / "idx")
    save_calibration(tmp_path / "idx", res, extra={"encoder": None})
    png = plot_risk_coverage(res.curve, tmp_path / "idx" / "risk_coverage.png", threshold=res.threshold)
    assert png.read_bytes()[:4] == b"\x89PNG"
    with preserve_calibration(tmp_path / "idx"):
        index.save(tmp_path / "idx")  # VideoIndex.save replaces the folder
    cal, thr, d = load_calibration(tmp_path / "idx")
    assert thr == res.threshold and d["threshold_source"].startswith("split conformal")
    assert np.allclose(cal.predict(feats), res.calibrator.predict(feats))
    assert (tmp_path / "idx" / "risk_coverage.png").is_file()
    assert json.loads((tmp_path / "idx" / CALIBRATION_FILE).read_text())["format_version"] == 1


def test_calibrate_errors(world, tmp_path):
    index, enc, pairs, _ = world
    feats, labels, _ = collect_features(index, enc, labelled_queries(pairs), k=5)
    with pytest.raises(ValueError, match="both are needed"):
        calibrate(feats, np.zeros_like(labels))
    with pytest.raises(ValueError, match="at least 4"):
        calibrate(feats.iloc[:3], labels[:3])
    with pytest.raises(ValueError, match="k=1"):
        collect_features(index, enc, labelled_queries(pairs), k=1)
    with pytest.raises(ValueError, match="missing columns"):
        labelled_queries(pd.DataFrame({"video_id": ["a"]}))
    assert load_calibration(tmp_path) is None
