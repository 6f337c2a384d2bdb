"""The one-query serving path of VideoIndex.search must give exactly what the general
(batch) path gives, in every case it handles and every case it hands back."""

import numpy as np
import pytest

from embeddings.index import VideoIndex


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _same(a, b):
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.ids.tolist() == b.ids.tolist()


@pytest.mark.parametrize("factory,metric", [("Flat", "ip"), ("Flat", "l2"), ("HNSW8,Flat", "ip"),
                                            ("IVF4,Flat", "ip"), ("IVF4,Flat", "l2")])
def test_single_vector_equals_batch_of_one(factory, metric):
    rng = np.random.default_rng(0)
    x = _unit(rng, 200)
    vi = VideoIndex.build(x, [f"v{i}" for i in range(200)], factory_string=factory, metric=metric)
    for q in _unit(rng, 5):
        one, batch = vi.search(q, 7), vi.search(q[None, :], 7)
        _same(one, batch)
        assert one.ids.shape == (1, 7) and one.ids[0, 0] is not None
    exact = (x @ q).argsort()[::-1][:7] if metric == "ip" else ((x - q) ** 2).sum(1).argsort()[:7]
    if factory == "Flat":
        assert one.ids[0].tolist() == [f"v{i}" for i in exact]


def test_partial_results_are_padded_like_the_general_path():
    rng = np.random.default_rng(1)
    x = _unit(rng, 64)
    vi = VideoIndex.build(x, [f"v{i}" for i in range(64)], factory_string="IVF8,Flat")
    vi.set_search_params("nprobe=1")
    padded_any = False
    for q in _unit(rng, 20):
        one, batch = vi.search(q, 30), vi.search(q[None, :], 30)
        _same(one, batch)
        missing = one.indices[0] < 0
        if missing.any():
            padded_any = True
            assert all(v is None for v in one.ids[0][missing])
            assert np.isneginf(one.scores[0][missing]).all()
            assert not missing[: (~missing).sum()].any()  # padding only at the tail
    assert padded_any  # 30 of 64 vectors cannot all sit in one of 8 lists


def test_after_remove_and_with_exclusions_the_results_skip_those_ids():
    rng = np.random.default_rng(2)
    x = _unit(rng, 50)
    ids = [f"v{i}" for i in range(50)]
    for factory in ("Flat", "HNSW8,Flat"):
        vi = VideoIndex.build(x, ids, factory_string=factory)
        q = x[3]
        assert vi.search(q, 1).ids[0, 0] == "v3"
        vi.remove(["v3"])
        one = vi.search(q, 5)
        _same(one, vi.search(q[None, :], 5))
        assert "v3" not in one.ids[0].tolist()
        assert "v4" not in vi.search(q, 5, exclude_ids=["v4"]).ids[0].tolist()


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_bad_single_queries_still_get_the_precise_errors():
    rng = np.random.default_rng(3)
    vi = VideoIndex.build(_unit(rng, 10), [f"v{i}" for i in range(10)])
    q = _unit(rng, 1)[0]
    bad = q.copy()
    bad[4] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        vi.search(bad, 3)
    with pytest.raises(ValueError, match="dimension 8"):
        vi.search(q[:8], 3)
    with pytest.raises(ValueError, match="k"):
        vi.search(q, 0)
    huge = q * np.float32(1e30)  # finite, but q @ q overflows: must still search
    assert vi.search(huge, 3).ids[0, 0] is not None
    assert vi.search(q, 50).ids.shape == (1, 50)  # k > ntotal: general path pads
    assert vi.search(q.astype(np.float64), 3).ids[0].tolist() == vi.search(q, 3).ids[0].tolist()
    strided = np.repeat(q, 2)[::2]
    assert not strided.flags.c_contiguous
    assert vi.search(strided, 3).ids[0].tolist() == vi.search(q, 3).ids[0].tolist()


def test_empty_index_single_query_is_padded():
    vi = VideoIndex.build(np.zeros((0, 16), np.float32), [], factory_string="Flat")
    out = vi.search(np.ones(16, np.float32) / 4, 3)
    assert out.indices.tolist() == [[-1, -1, -1]] and out.ids.tolist() == [[None] * 3]


def test_single_queries_from_threads_while_another_thread_adds_and_removes():
    import threading

    rng = np.random.default_rng(4)
    x = _unit(rng, 1200)
    ids = [f"v{i}" for i in range(1200)]
    vi = VideoIndex.build(x[:400], ids[:400], factory_string="Flat")
    errors, done = [], threading.Event()

    def searcher(offset):
        try:
            i = 0
            while not done.is_set() or i < 50:
                res = vi.search(x[(offset + i) % 400], 5)
                row = res.ids[0].tolist()
                assert all(v is not None for v in row) and len(set(row)) == 5
                i += 1
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(o,)) for o in (0, 100, 200)]
    for t in threads:
        t.start()
    for start in range(400, 1200, 100):
        vi.add(x[start:start + 100], ids[start:start + 100])  # dense ids: fast path
        if start >= 800:
            vi.remove([ids[start]])  # ids no longer dense: the general path from here
    done.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:1]
    assert vi.ntotal == 1200 - 4
