"""Tests for embeddings.index.video_index (VideoIndex) and embeddings.index.factory.

Fixture: clustered, L2-normalised random vectors whose exact neighbours come from a
numpy argsort, so every approximate index can be scored against the right answer.
"""

from __future__ import annotations

import json
import threading

import faiss
import numpy as np
import pandas as pd
import pytest

from embeddings.index.factory import choose_factory, estimate_memory_bytes, parse_size
from embeddings.index.video_index import IndexFileError, SearchResult, VideoIndex

D = 32


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n=2000, n_clusters=20, d=D, noise=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centers = _unit(rng.standard_normal((n_clusters, d)))
    labels = rng.integers(0, n_clusters, n)
    x = _unit(centers[labels] + noise * rng.standard_normal((n, d)).astype(np.float32))
    return x, [f"v{i:05d}" for i in range(n)]


def exact_topk(x, q, k):
    sims = q @ x.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


@pytest.fixture(scope="module")
def data():
    x, ids = clustered()
    rng = np.random.default_rng(1)
    q = _unit(x[rng.choice(len(x), 50, replace=False)]
              + 0.05 * rng.standard_normal((50, D)).astype(np.float32))
    return x, ids, q


def recall(result: SearchResult, truth_rows, ids):
    ids = np.asarray(ids, dtype=object)
    hits = [len(set(r) & set(ids[t])) / len(t) for r, t in zip(result.ids, truth_rows, strict=True)]
    return float(np.mean(hits))


def test_flat_exact_topk_equals_bruteforce(data):
    x, ids, q = data
    index = VideoIndex.build(x, ids, factory_string="Flat", device="cpu")
    res = index.search(q, k=10)
    order, sims = exact_topk(x, q, 10)
    np.testing.assert_array_equal(res.ids, np.asarray(ids, dtype=object)[order])
    np.testing.assert_allclose(res.scores, sims, rtol=1e-5, atol=1e-5)
    assert res.scores.dtype == np.float32 and res.indices.dtype == np.int64
    assert np.all(np.diff(res.scores, axis=1) <= 0)


def test_l2_metric_scores_are_negative_distances(data):
    x, ids, q = data
    index = VideoIndex.build(x * 3, ids, factory_string="Flat", metric="l2", device="cpu")
    res = index.search(q[:3], k=5)
    d2 = ((q[:3, None, :] - 3 * x[None]) ** 2).sum(-1)
    order = np.argsort(d2, axis=1)[:, :5]
    np.testing.assert_array_equal(res.ids, np.asarray(ids, dtype=object)[order])
    np.testing.assert_allclose(res.scores, -np.take_along_axis(d2, order, 1), rtol=1e-4)


@pytest.mark.parametrize("factory,params", [("IVF32,Flat", "nprobe=8"),
                                            ("HNSW16,Flat", "efSearch=64")])
def test_approximate_recall_high_on_clustered_data(data, factory, params):
    x, ids, q = data
    index = VideoIndex.build(x, ids, factory_string=factory, device="cpu")
    order, _ = exact_topk(x, q, 10)
    assert recall(index.search(q, k=10, search_params=params), order, ids) >= 0.9
    if factory.startswith("IVF"):  # probing every list is exact
        full = recall(index.search(q, k=10, search_params="nprobe=32"), order, ids)
        assert full == pytest.approx(1.0)


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "HNSW16,Flat"])
def test_exclude_ids_excludes_and_fills_k(data, factory):
    x, ids, q = data
    index = VideoIndex.build(x, ids, factory_string=factory, device="cpu")
    first = index.search(q[:4], k=10, search_params="nprobe=16" if "IVF" in factory else None)
    banned = {v for row in first.ids for v in row[:5]}
    res = index.search(q[:4], k=10, exclude_ids=banned,
                       search_params="nprobe=16" if "IVF" in factory else None)
    assert not banned & {v for row in res.ids for v in row}
    assert all(v is not None for v in res.ids.ravel())  # k results: plenty remain
    assert np.all(np.isfinite(res.scores))


def test_exclude_leaving_fewer_than_k_pads(data):
    x, ids, _ = data
    index = VideoIndex.build(x[:5], ids[:5], device="cpu")
    res = index.search(x[:1], k=4, exclude_ids=ids[:3])
    assert list(res.ids[0]) == [ids[3], ids[4], None, None] or list(res.ids[0]) == [
        ids[4], ids[3], None, None]
    assert list(res.indices[0, 2:]) == [-1, -1] and np.all(np.isneginf(res.scores[0, 2:]))


def test_empty_index_and_k_above_ntotal_are_padded(data):
    x, ids, q = data
    empty = VideoIndex.build(np.zeros((0, D), np.float32), [], device="cpu")
    res = empty.search(q[:2], k=3)
    assert res.ids.shape == (2, 3) and all(v is None for v in res.ids.ravel())
    assert np.all(res.indices == -1) and np.all(np.isneginf(res.scores))
    small = VideoIndex.build(x[:3], ids[:3], factory_string="HNSW8,Flat", device="cpu")
    res = small.search(q[:2], k=7)
    assert res.ids.shape == (2, 7)
    assert all(v is not None for v in res.ids[:, :3].ravel())
    assert all(v is None for v in res.ids[:, 3:].ravel()) and np.all(res.indices[:, 3:] == -1)
    assert res.to_records()[0][-1]["rank"] == 3 and len(res.to_records()[0]) == 3


def test_dim_mismatch_error_names_both_dims(data):
    x, ids, q = data
    index = VideoIndex.build(x, ids, device="cpu")
    with pytest.raises(ValueError, match=r"dimension 16.*dimension 32.*different encoder"):
        index.search(_unit(np.ones((1, 16), np.float32)))
    with pytest.raises(ValueError, match="32"):
        index.add(_unit(np.ones((2, 48), np.float32)), ["a", "b"])


def test_nan_rows_named_and_other_validation(data):
    x, ids, _ = data
    bad = x[:10].copy()
    bad[3, 0] = np.nan
    bad[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"rows \[3, 7\]"):
        VideoIndex.build(bad, ids[:10], device="cpu")
    with pytest.raises(ValueError, match="duplicates"):
        VideoIndex.build(x[:3], ["a", "b", "a"], device="cpu")
    with pytest.raises(ValueError, match="3 ids for 2"):
        VideoIndex.build(x[:2], ["a", "b", "c"], device="cpu")
    with pytest.raises(ValueError, match="strings"):
        VideoIndex.build(x[:2], ["a", 7], device="cpu")
    with pytest.raises(ValueError, match="dtype"):
        VideoIndex.build(np.ones((2, D), np.int64), ["a", "b"], device="cpu")
    with pytest.raises(ValueError, match="not L2-normalised"):
        VideoIndex.build(x[:2] * 2, ["a", "b"], device="cpu")
    with pytest.raises(ValueError, match="metric"):
        VideoIndex.build(x[:2], ["a", "b"], metric="cosine", device="cpu")
    with pytest.raises(ValueError, match="factory_string"):
        VideoIndex.build(x[:2], ["a", "b"], factory_string="NotAnIndex", device="cpu")
    with pytest.raises(ValueError, match=r"at least 1024 vectors \(nlist=1024"):
        VideoIndex.build(x[:100], ids[:100], factory_string="IVF1024,Flat", device="cpu")


def test_add_remove_upsert_keep_metadata_consistent(data):
    x, ids, _ = data
    meta = pd.DataFrame({"title": [f"t{i}" for i in range(10)], "duration_s": np.arange(10.0)})
    index = VideoIndex.build(x[:10], ids[:10], metadata=meta, device="cpu")
    assert list(index.metadata.columns) == ["video_id", "title", "duration_s", "synthetic"]
    index.add(x[10:12], ids[10:12], metadata=pd.DataFrame({"synthetic": [True, True],
                                                           "prompt": ["p1", "p2"]}))
    with pytest.raises(ValueError, match="upsert"):
        index.add(x[:1], ids[:1])
    assert index.remove([ids[2], ids[5]]) == 2
    with pytest.raises(ValueError, match="not in the index"):
        index.remove(["nope"])
    m = index.metadata
    expected_ids = [v for i, v in enumerate(ids[:12]) if i not in (2, 5)]
    assert m["video_id"].tolist() == expected_ids == list(index.video_ids)
    assert index.ntotal == 10
    assert m["synthetic"].tolist() == [False] * 8 + [True, True]
    assert m["title"].iloc[-1] is None or pd.isna(m["title"].iloc[-1])
    assert m.loc[m.video_id == ids[10], "prompt"].item() == "p1"
    # upsert an existing id with a new vector: it moves to the end, keeps its metadata
    index.upsert(x[100:101], [ids[0]])
    m = index.metadata
    assert m["video_id"].tolist()[-1] == ids[0] and m["title"].iloc[-1] == "t0"
    assert index.ntotal == 10
    np.testing.assert_allclose(index.reconstruct([ids[0]])[0], x[100], atol=1e-6)
    assert index.search(x[100:101], k=1).ids[0, 0] == ids[0]
    # mixed upsert: one existing id with new metadata, one new id
    index.upsert(x[200:202], [ids[1], "fresh"],
                 metadata=pd.DataFrame({"title": ["new t1", "t-fresh"]}))
    m = index.metadata
    assert m["video_id"].tolist()[-2:] == [ids[1], "fresh"] and index.ntotal == 11
    assert m["title"].tolist()[-2:] == ["new t1", "t-fresh"] and m["video_id"].is_unique
    index.remove(["fresh"])
    # removed ids are never returned, faiss ids never reused
    res = index.search(x[:12], k=10)
    assert not {ids[2], ids[5]} & set(res.ids.ravel())
    assert len(set(index.search(x[:1], k=10).indices[0])) == 10
    # faiss ids 0-11 by build/add, 12 by the first upsert, 13-14 by the second
    assert index.search(x[200:201], k=1).indices[0, 0] == 13
    assert res.indices.max() <= 13


@pytest.mark.parametrize("factory", ["IVF8,Flat", "HNSW8,Flat"])
def test_remove_on_ivf_and_hnsw(data, factory):
    x, ids, _ = data
    index = VideoIndex.build(x[:500], ids[:500], factory_string=factory, device="cpu")
    index.remove(ids[:250])
    res = index.search(x[:10], k=20, search_params="nprobe=8" if "IVF" in factory else None)
    assert not set(ids[:250]) & set(res.ids.ravel())
    assert index.ntotal == 250
    np.testing.assert_allclose(index.reconstruct([ids[300]]), x[300:301], atol=1e-6)


def test_save_load_round_trip_identical(tmp_path, data):
    x, ids, q = data
    enc = {"model": "tiny-clip", "pretrained": "none", "embed_dim": D}
    for factory in ("Flat", "IVF16,Flat", "HNSW16,Flat"):
        index = VideoIndex.build(x, ids, factory_string=factory, encoder=enc, device="cpu",
                                 metadata=pd.DataFrame({"caption": [f"c{i}" for i in range(len(ids))]}))
        index.remove(ids[:7])
        before = index.search(q, k=10, exclude_ids=ids[10:20])
        folder = index.save(tmp_path / factory.replace(",", "_"))
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["ntotal"] == len(ids) - 7 and manifest["dim"] == D
        assert manifest["next_id"] == len(ids) and manifest["encoder"] == enc
        assert set(manifest["checksums"]) == {"index.faiss", "ids.parquet", "metadata.parquet"}
        loaded = VideoIndex.load(folder, expected_encoder=enc)
        after = loaded.search(q, k=10, exclude_ids=ids[10:20])
        np.testing.assert_array_equal(before.ids, after.ids)
        np.testing.assert_array_equal(before.scores, after.scores)
        pd.testing.assert_frame_equal(index.metadata, loaded.metadata)
        loaded.add(x[:1], ["new"])
        assert loaded.search(x[:1], k=1).indices[0, 0] == len(ids)  # ids never reused


def test_mmap_load_is_read_only(tmp_path, data):
    x, ids, q = data
    index = VideoIndex.build(x, ids, factory_string="IVF16,Flat", device="cpu")
    folder = index.save(tmp_path / "ivf")
    loaded = VideoIndex.load(folder, mmap=True)
    np.testing.assert_array_equal(loaded.search(q, k=5).ids, index.search(q, k=5).ids)
    with pytest.raises(ValueError, match="read-only"):
        loaded.add(x[:1], ["new"])
    loaded.save(tmp_path / "copy")
    assert VideoIndex.load(tmp_path / "copy").ntotal == len(ids)


def test_checksum_tamper_and_truncation_detected(tmp_path, data):
    x, ids, _ = data
    folder = VideoIndex.build(x[:200], ids[:200], device="cpu").save(tmp_path / "idx")
    raw = (folder / "index.faiss").read_bytes()
    (folder / "index.faiss").write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(IndexFileError, match=r"index\.faiss.*checksum"):
        VideoIndex.load(folder)
    (folder / "index.faiss").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IndexFileError, match=r"index\.faiss.*(truncated|corrupt)"):
        VideoIndex.load(folder, verify_checksums=False)
    (folder / "index.faiss").write_bytes(raw)
    assert VideoIndex.load(folder).ntotal == 200
    (folder / "ids.parquet").unlink()
    with pytest.raises(IndexFileError, match="ids.parquet"):
        VideoIndex.load(folder)
    with pytest.raises(IndexFileError, match="manifest.json"):
        VideoIndex.load(tmp_path / "nowhere")


def test_expected_encoder_mismatch(tmp_path, data):
    x, ids, _ = data
    enc = {"model": "ViT-B-32", "pretrained": "openai", "embed_dim": D}
    folder = VideoIndex.build(x[:20], ids[:20], encoder=enc, device="cpu").save(tmp_path / "i")
    with pytest.raises(ValueError, match=r"model: index 'ViT-B-32' vs expected 'tiny-clip'"):
        VideoIndex.load(folder, expected_encoder={**enc, "model": "tiny-clip"})
    assert VideoIndex.load(folder, expected_encoder={**enc, "device": "cuda"}).ntotal == 20


def test_search_params_validation(data):
    x, ids, q = data
    index = VideoIndex.build(x[:100], ids[:100], device="cpu")
    with pytest.raises(ValueError, match="nprobe"):
        index.search(q, search_params="nprobe=4")  # Flat has no nprobe
    with pytest.raises(ValueError, match="search_params"):
        index.search(q, search_params="bogus=1")
    with pytest.raises(ValueError, match="k"):
        index.search(q, k=0)


def test_persistent_search_params_and_filter_support(tmp_path, data):
    x, ids, q = data
    ivf = VideoIndex.build(x, ids, factory_string="IVF32,Flat", device="cpu")
    order, _ = exact_topk(x, q, 10)
    ivf.set_search_params("nprobe=32")
    assert recall(ivf.search(q, k=10), order, ids) == pytest.approx(1.0)
    loaded = VideoIndex.load(ivf.save(tmp_path / "ivf"))
    assert recall(loaded.search(q, k=10), order, ids) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rejected"):
        ivf.set_search_params("efSearch=abc")
    one = ivf.search(q[0], k=3)  # a 1-D query is one row
    assert one.ids.shape == (1, 3)
    # a pre-transform in front of IVF. PQ trains with one OpenMP thread: many tiny k-means
    # regions are slowed several-fold by thread oversubscription on the shared 2-core box.
    pca = VideoIndex.build(x, ids, factory_string="PCAR16,IVF16,Flat", device="cpu")
    res = pca.search(q[:2], k=5, exclude_ids=ids[:100], search_params="nprobe=16")
    assert not set(ids[:100]) & set(res.ids.ravel()) and res.ids[0, 4] is not None
    pq = VideoIndex.build(x, ids, factory_string="PQ8x8", device="cpu", train_threads=1)
    assert pq.search(q[:1], k=3).ids[0, 2] is not None
    with pytest.raises(ValueError, match="IDSelector"):
        pq.search(q[:1], k=3, exclude_ids=ids[:1])


def test_to_records_with_metadata(data):
    x, ids, _ = data
    meta = pd.DataFrame({"caption": [f"clip {i}" for i in range(20)]})
    index = VideoIndex.build(x[:20], ids[:20], metadata=meta, device="cpu")
    recs = index.search(x[3:5], k=2).to_records(index.metadata)
    assert recs[0][0] == {"rank": 1, "video_id": ids[3], "score": pytest.approx(1.0, abs=1e-5),
                          "caption": "clip 3", "synthetic": False}
    assert len(recs) == 2 and len(recs[1]) == 2


def test_auto_factory_and_ivf_training_sample(data):
    x, ids, q = data
    index = VideoIndex.build(x, ids, factory_string="auto", device="cpu")
    assert index.factory_string == "Flat"
    ivf = VideoIndex.build(x, ids, factory_string="IVF16,Flat", train_sample=500, device="cpu")
    assert ivf.ntotal == len(ids)


def test_concurrent_search_while_adding(data):
    x, ids, q = data
    index = VideoIndex.build(x[:500], ids[:500], device="cpu")
    errors, counts = [], []

    def searcher():
        try:
            for _ in range(30):
                res = index.search(q[:5], k=5)
                assert all(v is not None for v in res.ids.ravel())
                counts.append(index.ntotal)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(500, 1500, 100):
        index.add(x[start:start + 100], ids[start:start + 100])
    for t in threads:
        t.join()
    assert not errors
    assert index.ntotal == 1500 == len(index.metadata) == len(set(index.video_ids))
    assert all(500 <= c <= 1500 for c in counts)


def test_choose_factory_ranked_and_budgeted():
    small = choose_factory(10_000, 512)
    assert small[0][0] == "Flat" and all(isinstance(r, str) and r for _, r in small)
    big = choose_factory(2_000_000, 512)
    assert big[0][0] == "HNSW32,Flat" and big[-1][0] == "Flat"
    assert any(f.startswith("IVF") for f, _ in big)
    nlist = int(big[1][0].split(",")[0][3:])
    assert nlist == 4096  # nearest power of two to 4*sqrt(2e6) ~ 5657
    budget = 300 * 1024**2
    tight = choose_factory(2_000_000, 512, max_memory_bytes=budget)
    assert tight and all(estimate_memory_bytes(f, 2_000_000, 512) <= budget for f, _ in tight)
    assert "PQ" in tight[0][0] and 512 % int(tight[0][0].split("PQ")[1].split("x")[0]) == 0
    assert choose_factory(2_000_000, 512, max_memory_bytes="300M") == tight
    with pytest.raises(ValueError, match="too small"):
        choose_factory(2_000_000, 512, max_memory_bytes="1M")
    assert estimate_memory_bytes("Flat", 1000, 8) == 1000 * (32 + 8)
    assert estimate_memory_bytes("HNSW32,Flat", 10, 8) == 10 * (32 + 256 + 8)


@pytest.mark.parametrize("text,expected", [
    ("4G", 4 * 1024**3), ("512M", 512 * 1024**2), ("1.5GB", 1610612736), ("100000", 100000),
    ("2 KiB", 2048), ("1k", 1024), (123, 123), ("0.5K", 512)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1G", "4X", "1.5", "GB", None, True, -3])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.gpu
def test_gpu_build_matches_cpu(data):
    if faiss.get_num_gpus() == 0:
        pytest.skip("faiss sees no GPU (faiss-cpu build or no CUDA)")
    x, ids, q = data
    gpu = VideoIndex.build(x, ids, factory_string="IVF16,Flat", device="cuda")
    assert gpu.device == "cuda" and gpu._replica is not None  # searches run on a GPU copy
    order, _ = exact_topk(x, q, 10)
    assert recall(gpu.search(q, k=10, search_params="nprobe=16"), order, ids) == pytest.approx(1.0)
    gpu.set_search_params("nprobe=16")
    assert recall(gpu.search(q, k=10), order, ids) == pytest.approx(1.0)  # on the GPU copy
    one = gpu.search(q[0], k=10)
    assert one.ids[0].tolist() == gpu.search(q[:1], k=10).ids[0].tolist()
    flat = VideoIndex.build(x, ids, factory_string="Flat", device="cuda")
    np.testing.assert_allclose(flat.search(q, k=10).scores, exact_topk(x, q, 10)[1], atol=1e-4)


@pytest.mark.gpu
def test_gpu_index_saves_as_a_cpu_index(data, tmp_path):
    if faiss.get_num_gpus() == 0:
        pytest.skip("faiss sees no GPU (faiss-cpu build or no CUDA)")
    x, ids, q = data
    gpu = VideoIndex.build(x, ids, factory_string="IVF16,Flat", device="cuda")
    gpu.add(x[:3] * -1, ["n0", "n1", "n2"])  # a write drops the GPU copy; the next search recopies
    assert gpu.search(-x[1], k=1).ids[0, 0] == "n1"
    gpu.save(tmp_path / "ix")
    cpu = faiss.read_index(str(tmp_path / "ix" / "index.faiss"))  # readable by faiss-cpu
    assert cpu.ntotal == len(ids) + 3
    back = VideoIndex.load(tmp_path / "ix", device="cpu")
    assert back.device == "cpu" and back.search(-x[1], k=1).ids[0, 0] == "n1"


def test_cuda_without_gpu_raises(data):
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible")
    x, ids, _ = data
    with pytest.raises(RuntimeError, match="GPU"):
        VideoIndex.build(x[:500], ids[:500], factory_string="IVF8,Flat", device="cuda")
