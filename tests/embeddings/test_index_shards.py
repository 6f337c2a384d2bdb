"""Sharded IVF build: shards added by workers, merged on disk, searched exactly at full nprobe.

The 2-worker case spawns processes (~10 s on the loaded 2-core machine): marked slow."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from embeddings.index_shards import build_sharded_ivf, load_sharded_ivf


@pytest.mark.parametrize("n_workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_sharded_build_matches_exact(tmp_path, n_workers):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    info = build_sharded_ivf(tmp_path / "x.npy", "IVF16,Flat", tmp_path / "out", metric="l2",
                             n_workers=n_workers, shard_size=1000, train_sample=2000)
    assert info["ntotal"] == 3000 and info["n_shards"] == 3
    index = load_sharded_ivf(tmp_path / "out")
    assert isinstance(faiss.extract_index_ivf(index).invlists, faiss.InvertedLists)
    index.nprobe = 16  # all lists: exact
    q = x[:20] + 0.01
    _, found = index.search(q, 5)
    brute = np.argsort(((q[:, None, :] - x[None]) ** 2).sum(-1), axis=1)[:, :5]
    assert np.array_equal(found, brute)


def test_sharded_build_rejects_non_ivf(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 4), np.float32))
    with pytest.raises(ValueError, match="not an IVF"):
        build_sharded_ivf(tmp_path / "x.npy", "HNSW32,Flat", tmp_path / "o")
