"""The one-query serving path of VideoIndex.search must give exactly what the general
(batch) path gives, in every case it handles and every case it hands back."""

import numpy as np
import pytest

from embeddings.index.video_index import VideoIndex


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


def test_cached_state_follows_adds_upserts_and_removes():
    """The one-query path caches its state (_snapshot); every write must be seen."""
    rng = np.random.default_rng(5)
    x = _unit(rng, 60)
    vi = VideoIndex.build(x[:40], [f"v{i}" for i in range(40)], factory_string="Flat")
    assert vi.search(x[3], 1).ids[0, 0] == "v3"  # builds the cache
    vi.add(x[40:], [f"v{i}" for i in range(40, 60)])
    assert vi.search(x[55], 1).ids[0, 0] == "v55"
    assert vi.search(x[55], 60).ids[0].tolist().count(None) == 0  # k up to the new count
    vi.upsert(x[7][None], ["v55"])  # v55 now holds v7's vector under a new faiss id
    top = vi.search(x[7], 2).ids[0].tolist()
    assert sorted(top) == ["v55", "v7"]
    vi.remove(["v7"])
    assert vi.search(x[7], 1).ids[0, 0] == "v55"
    assert "v7" not in vi.search(x[7], 59).ids[0].tolist()


def test_writer_waits_for_announced_one_query_readers():
    """A reader inside faiss on the one-query path (announced in lock.fast) holds writers off;
    while a writer waits or writes, new one-query readers take the general (mutex) path."""
    import threading
    import time

    rng = np.random.default_rng(6)
    x = _unit(rng, 20)
    vi = VideoIndex.build(x[:10], [f"v{i}" for i in range(10)], factory_string="Flat")
    lock = vi._lock
    lock.fast.append(None)  # a reader in the middle of its faiss call
    wrote = threading.Event()
    writer = threading.Thread(target=lambda: (vi.add(x[10:11], ["v10"]), wrote.set()))
    writer.start()
    time.sleep(0.2)
    assert not wrote.is_set() and lock.fast_closed  # the add waits for the reader
    lock.fast.pop()
    assert wrote.wait(5)
    writer.join(5)
    assert not lock.fast_closed and not lock.fast
    assert vi.search(x[10], 1).ids[0, 0] == "v10"

    lock.acquire_write()  # a writer holds the lock: a one-query search must wait for it
    got = []
    reader = threading.Thread(target=lambda: got.append(vi.search(x[4], 1).ids[0, 0]))
    reader.start()
    time.sleep(0.2)
    assert got == [] and not lock.fast  # queued on the mutex path, not inside faiss
    lock.release_write()
    reader.join(5)
    assert got == ["v4"]
