"""Searching on a GPU copy of the index (VideoIndex.use_device): which searches go to the copy,
when it is rebuilt, and what happens for index types faiss cannot run on a GPU.

faiss-cpu has no GPU, so ``_to_gpu`` is replaced by a stand-in that copies the index on the CPU
(``faiss.clone_index``) and counts its calls; the faiss GPU calls themselves are covered by the
``gpu``-marked test in test_video_index.py, which runs where faiss sees a GPU."""

from __future__ import annotations

import logging

import faiss
import numpy as np
import pytest

import embeddings.index.video_index as index_mod
from embeddings.index.video_index import VideoIndex


class _Copy:
    """A CPU stand-in for a GPU index: delegates search/search_c and counts them."""

    def __init__(self, index):
        self.inner = faiss.clone_index(index)
        self.calls = 0

    def search(self, x, k):
        self.calls += 1
        return self.inner.search(x, k)

    def search_c(self, *args):
        self.calls += 1
        return self.inner.search_c(*args)


@pytest.fixture
def fake_gpu(monkeypatch):
    copies = []

    def to_gpu(index, gpu):
        inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap2) else index)
        if isinstance(inner, faiss.IndexHNSW):
            raise RuntimeError("Error in ToGpuCloner: This index type is not implemented on GPU.")
        copies.append(_Copy(index))
        return copies[-1], None

    def resolve(device):
        return None if device == "cpu" else 0

    monkeypatch.setattr(index_mod, "_to_gpu", to_gpu)
    monkeypatch.setattr(index_mod, "_resolve_device", resolve)
    return copies


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_unfiltered_searches_run_on_the_copy_and_filtered_ones_on_the_cpu(fake_gpu):
    rng = np.random.default_rng(0)
    x = _unit(rng, 300)
    ids = [f"v{i}" for i in range(300)]
    vi = VideoIndex.build(x, ids, factory_string="IVF8,Flat", device="cpu")  # (GPU training: test_video_index.py)
    vi.use_device("cuda:0")
    assert vi.device == "cuda:0" and len(fake_gpu) == 1
    copy = fake_gpu[0]
    cpu = VideoIndex.build(x, ids, factory_string="IVF8,Flat", device="cpu")
    assert cpu.device == "cpu"
    for q in (x[3], x[:5]):  # one-query path and batch path
        before = copy.calls
        got, want = vi.search(q, 5), cpu.search(q, 5)
        assert copy.calls == before + 1
        assert got.ids.tolist() == want.ids.tolist()
    before = copy.calls
    got = vi.search(x[3], 5, exclude_ids=["v3"])  # id selectors: CPU index
    assert copy.calls == before and "v3" not in got.ids[0].tolist()
    vi.search(x[3], 5, search_params="nprobe=8")
    assert copy.calls == before


def test_writes_drop_the_copy_and_the_next_search_copies_again(fake_gpu):
    rng = np.random.default_rng(1)
    x = _unit(rng, 120)
    vi = VideoIndex.build(x[:100], [f"v{i}" for i in range(100)], factory_string="Flat", device="cuda")
    assert vi.search(x[7], 1).ids[0, 0] == "v7" and len(fake_gpu) == 1
    vi.add(x[100:], [f"v{i}" for i in range(100, 120)])
    assert vi._replica is None  # dropped by the write
    assert vi.search(x[110], 1).ids[0, 0] == "v110"  # found on a fresh copy
    assert len(fake_gpu) == 2 and fake_gpu[1].calls == 1
    vi.search(x[111], 1)
    assert len(fake_gpu) == 2  # no copy without a write
    vi.remove(["v110"])
    assert vi.search(x[110], 1).ids[0, 0] != "v110"
    assert len(fake_gpu) == 3


def test_hnsw_cannot_go_to_a_gpu(fake_gpu, caplog):
    rng = np.random.default_rng(2)
    x = _unit(rng, 200)
    ids = [f"v{i}" for i in range(200)]
    with pytest.raises(RuntimeError, match="cannot search 'HNSW8,Flat' on a GPU"):
        VideoIndex.build(x, ids, factory_string="HNSW8,Flat", device="cuda")
    with caplog.at_level(logging.WARNING, logger="embeddings.index.video_index"):
        vi = VideoIndex.build(x, ids, factory_string="HNSW8,Flat", device="auto")
    assert vi.device == "cpu" and "searching on the CPU" in caplog.text
    assert vi.search(x[5], 1).ids[0, 0] == "v5"


def test_saved_index_is_the_cpu_index_and_load_can_search_on_the_copy(fake_gpu, tmp_path):
    rng = np.random.default_rng(3)
    x = _unit(rng, 200)
    ids = [f"v{i}" for i in range(200)]
    vi = VideoIndex.build(x, ids, factory_string="IVF4,Flat", device="cpu")
    vi.use_device("cuda")
    assert len(fake_gpu) == 1
    vi.save(tmp_path / "ix")
    assert faiss.extract_index_ivf(faiss.read_index(str(tmp_path / "ix" / "index.faiss"))).nlist == 4
    back = VideoIndex.load(tmp_path / "ix", device="cuda")
    assert back.device == "cuda:0" and len(fake_gpu) == 2
    assert back.search(x[9], 1).ids[0, 0] == "v9" and fake_gpu[1].calls == 1
    on_cpu = VideoIndex.load(tmp_path / "ix", device="cpu")
    assert on_cpu.device == "cpu" and len(fake_gpu) == 2


def test_without_gpus_auto_searches_on_the_cpu_and_says_so(caplog, tmp_path):
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible")
    rng = np.random.default_rng(4)
    x = _unit(rng, 50)
    vi = VideoIndex.build(x, [f"v{i}" for i in range(50)], factory_string="Flat", device="cpu")
    vi.save(tmp_path / "ix")
    with caplog.at_level(logging.INFO, logger="embeddings.index.video_index"):
        back = VideoIndex.load(tmp_path / "ix")
    assert back.device == "cpu" and "faiss sees no GPU" in caplog.text
    with pytest.raises(RuntimeError, match="GPU"):
        back.use_device("cuda")
