"""Synthetic items excluded from or capped in result lists, checked against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embeddings.index.video_index import VideoIndex
from generation.results import limited_search, synthetic_ids


@pytest.fixture()
def index():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(30)]
    meta = pd.DataFrame({"video_id": ids, "synthetic": [i % 3 == 0 for i in range(30)]})
    return VideoIndex.build(x, ids, metadata=meta, factory_string="Flat"), x, meta


def _brute(x, meta, q, k, max_syn):
    order = np.argsort(-(x @ q))
    out, n_syn = [], 0
    for i in order:
        if meta["synthetic"][i]:
            if max_syn is not None and n_syn >= max_syn:
                continue
            n_syn += 1
        out.append(f"v{i}")
    return out[:k]


@pytest.mark.parametrize("max_syn", [None, 0, 1, 2])
def test_limited_search_matches_brute_force(index, max_syn):
    idx, x, meta = index
    assert len(synthetic_ids(idx)) == 10
    q = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    res = limited_search(idx, q, 7, max_synthetic=max_syn)
    for row in range(3):
        assert list(res.ids[row]) == _brute(x, meta, q[row], 7, max_syn)
        assert np.all(np.diff(res.scores[row]) <= 1e-7)
        n_syn = sum(meta.set_index("video_id").loc[v, "synthetic"] for v in res.ids[row])
        if max_syn is not None:
            assert n_syn <= max_syn


def test_padding_when_too_few_real_items(index):
    idx, x, _ = index
    res = limited_search(idx, x[0], 25, max_synthetic=0)
    assert sum(v is not None for v in res.ids[0]) == 20
    assert res.ids[0][-1] is None and res.scores[0][-1] == -np.inf and res.indices[0][-1] == -1


def test_bad_max_synthetic(index):
    with pytest.raises(ValueError, match="max_synthetic=-1"):
        limited_search(index[0], index[1][0], 3, max_synthetic=-1)


def test_no_synthetic_column_means_none():
    x = np.eye(4, dtype=np.float32)
    idx = VideoIndex.build(x, ["a", "b", "c", "d"], factory_string="Flat")
    assert synthetic_ids(idx) == []
    assert list(limited_search(idx, x[1], 2, max_synthetic=0).ids[0])[0] == "b"
