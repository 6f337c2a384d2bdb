"""Index sweeps against exact search on clustered vectors with known neighbours."""

import faiss
import numpy as np
import pytest

from embeddings.index.bench import (
    SweepPoint,
    benchmark_factory,
    cached_exact_neighbors,
    choose_setting,
    exact_neighbors,
    holdout_split,
    pareto_front,
    recall_at_k,
    sweep_settings,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((20, 16))
    x = centers[rng.integers(0, 20, 2000)] + 0.3 * rng.standard_normal((2000, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    keep, held = holdout_split(len(x), 50, seed=0)
    return x[keep], x[held]


def test_exact_neighbors_match_numpy(data):
    x, q = data
    truth = exact_neighbors(x, q, 10)
    assert (truth == np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]).all()


def test_flat_is_exact_and_ivf_recall_rises_with_nprobe(data):
    x, q = data
    truth = exact_neighbors(x, q, 10)
    stats, pts = benchmark_factory(x, q, truth, "Flat", k=10, n_single=3)
    assert len(pts) == 1 and pts[0].recall == 1.0 and stats.index_bytes > x.nbytes
    _, pts = benchmark_factory(x, q, truth, "IVF16,Flat", k=10, n_single=3, threads=1)
    assert [p.search_params for p in pts] == ["nprobe=1", "nprobe=2", "nprobe=4", "nprobe=8", "nprobe=16"]
    recalls = [p.recall for p in pts]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0 and recalls[0] < 1.0
    assert all(p.qps_batch > 0 and p.qps_single > 0 and p.threads == 1 and p.repeats == 3 for p in pts)


def test_thread_count_is_restored(data):
    x, q = data
    before = faiss.omp_get_max_threads()
    benchmark_factory(x[:200], q[:5], exact_neighbors(x[:200], q[:5], 5), "Flat", k=5, threads=1, n_single=0)
    assert faiss.omp_get_max_threads() == before


def test_ground_truth_is_cached_by_data_hash(tmp_path, data):
    x, q = data
    t1, p1, c1 = cached_exact_neighbors(tmp_path, x, q, 5)
    t2, p2, c2 = cached_exact_neighbors(tmp_path, x, q, 5)
    assert not c1 and c2 and p1 == p2 and (t1 == t2).all()
    _, p3, c3 = cached_exact_neighbors(tmp_path, x[1:], q, 5)
    assert not c3 and p3 != p1


def test_recall_and_holdout_by_hand():
    assert recall_at_k(np.array([[1, 2, -1]]), np.array([[2, 3, 1]]), 3) == pytest.approx(2 / 3)
    keep, held = holdout_split(10, 3, seed=4)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 10
    assert (holdout_split(10, 3, seed=4)[1] == held).all()
    with pytest.raises(ValueError, match="holdout"):
        holdout_split(10, 10)


def test_sweep_settings_by_family():
    assert sweep_settings("HNSW32,Flat")[0] == "efSearch=16"
    assert sweep_settings("IVF4,Flat") == ["nprobe=1", "nprobe=2", "nprobe=4"]
    assert sweep_settings("Flat") == [None]


def test_pareto_front_and_choice():
    def pt(r, q):
        return SweepPoint("f", f"{r}", 10, r, q, q, 1.0, 10, 10, 1)

    pts = [pt(1.0, 10), pt(0.9, 100), pt(0.8, 50), pt(0.5, 1000)]
    assert [p.recall for p in pareto_front(pts)] == [1.0, 0.9, 0.5]
    assert choose_setting(pts, 0.85).recall == 0.9
    assert choose_setting(pts, 1.0).recall == 1.0
    assert choose_setting([pt(0.5, 1)], 0.9) is None
    with pytest.raises(ValueError, match="target_recall"):
        choose_setting(pts, 95)
