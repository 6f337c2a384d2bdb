"""Build plans under a memory budget: sizes derived from the budget, the path chosen, clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embeddings.index.plan import (
    ADD_BATCH_MAX,
    ADD_BATCH_MIN,
    ID_TABLE_BYTES,
    TRAIN_COPIES,
    plan_build,
)
from embeddings.index.video_index import VideoIndex


def test_no_budget_uses_faiss_defaults():
    p = plan_build("IVF1024,SQ8", 1_000_000, 512)
    assert p.budget_bytes is None and not p.on_disk
    assert p.train_rows == 256 * 1024 and p.batch_rows == ADD_BATCH_MAX
    assert plan_build("HNSW32,Flat", 1000, 8).train_rows == 0  # nothing to train


def test_budget_sets_training_sample_batch_and_states_peak():
    p = plan_build("IVF1024,SQ8", 1_000_000, 512, max_memory_bytes="1G")
    assert not p.on_disk and p.peak_bytes <= 1024**3 and p.in_memory_peak_bytes == p.peak_bytes
    # the sample may use half of what the id tables leave: fewer rows than faiss's 256 per list
    assert p.train_rows < 256 * 1024
    assert TRAIN_COPIES * p.train_rows * 512 * 4 <= 0.5 * (1024**3 - 1_000_000 * ID_TABLE_BYTES)
    assert ADD_BATCH_MIN <= p.batch_rows < ADD_BATCH_MAX and p.batch_rows % ADD_BATCH_MIN == 0
    d = p.to_dict()
    assert d["estimated_peak"].endswith("MiB") and d["budget"] == "1.0 GiB"
    # a bigger budget gives bigger batches and the full training sample
    big = plan_build("IVF1024,SQ8", 1_000_000, 512, max_memory_bytes="16G")
    assert big.batch_rows == ADD_BATCH_MAX and big.train_rows == 256 * 1024


def test_too_big_in_memory_goes_on_disk_when_streaming_fits():
    p = plan_build("IVF1024,Flat", 1_000_000, 512, max_memory_bytes="1G")
    assert p.on_disk and p.in_memory_peak_bytes > 1024**3 >= p.peak_bytes
    assert p.shard_rows and p.shard_rows < 1_000_000 and "streamed to disk" in p.reason
    two = plan_build("IVF1024,Flat", 1_000_000, 512, max_memory_bytes="1G", n_workers=2)
    assert two.shard_rows < p.shard_rows  # two shards in memory at once, plus a worker process each


def test_refusals_name_need_budget_and_fix():
    with pytest.raises(ValueError, match=r"HNSW32,Flat.*needs ~2\.\d GiB.*budget 1\.0 GiB.*Fix: raise"):
        plan_build("HNSW32,Flat", 1_000_000, 512, max_memory_bytes="1G")
    with pytest.raises(ValueError, match=r"streaming the lists to disk would need.*--on-disk yes"):
        plan_build("IVF1024,Flat", 1_000_000, 512, max_memory_bytes="1G", on_disk=False)
    with pytest.raises(ValueError, match=r"train_sample: 200000 rows need .* train_sample <= \d+"):
        plan_build("IVF1024,SQ8", 1_000_000, 512, max_memory_bytes="1G", train_sample=200_000)
    with pytest.raises(ValueError, match=r"at least 1024"):
        plan_build("IVF1024,SQ8", 1_000_000, 512, max_memory_bytes="195M")
    with pytest.raises(ValueError, match="no inverted lists"):
        plan_build("HNSW32,Flat", 1000, 8, on_disk=True)
    with pytest.raises(ValueError, match="n_workers"):
        plan_build("IVF8,Flat", 1000, 8, n_workers=0)


def test_video_index_build_follows_the_plan_and_saves_it(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(3000)]
    vi = VideoIndex.build(x, ids, factory_string="IVF16,SQ8", max_memory_bytes="2M", device="cpu")
    plan = vi.build_info["plan"]
    assert vi.build_info["path"] == "in memory" and plan["peak_bytes"] <= 2 * 1024**2
    assert plan["batch_rows"] == ADD_BATCH_MIN and plan["train_rows"] <= 3000
    vi.save(tmp_path / "i")
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert manifest["build"]["plan"]["estimated_peak"] == plan["estimated_peak"]
    assert VideoIndex.load(tmp_path / "i").build_info["plan"]["train_rows"] == plan["train_rows"]
    with pytest.raises(ValueError, match=r"needs ~.*budget 500\.0 KiB"):
        VideoIndex.build(x, ids, factory_string="Flat", max_memory_bytes="500K")
