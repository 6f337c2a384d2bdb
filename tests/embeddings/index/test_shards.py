"""Sharded IVF build: a normal VideoIndex folder, equal to the in-memory build, movable, mmap-able.

The 2-worker case spawns processes (~10 s on the loaded 2-core machine): marked slow."""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pandas as pd
import pytest

from embeddings.index.io import IndexFileError
from embeddings.index.shards import NpyRows, build_from_embedding_folder, build_sharded
from embeddings.index.video_index import VideoIndex

N, D = 3000, 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Clustered unit vectors (30 clusters) saved as .npy, with ids and a metadata column."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((30, D))
    x = centres[rng.integers(0, 30, N)] + 0.4 * rng.standard_normal((N, D))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    path = tmp_path_factory.mktemp("vec") / "x.npy"
    np.save(path, x)
    ids = [f"v{i:05d}" for i in range(N)]
    meta = pd.DataFrame({"video_id": ids, "duration_s": np.arange(N, dtype=float)})
    return path, x, ids, meta


def _same(a, b, q):
    ra, rb = a.search(q, 10), b.search(q, 10)
    assert np.array_equal(ra.ids, rb.ids)
    np.testing.assert_allclose(ra.scores, rb.scores, atol=1e-5)


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8"])
def test_sharded_build_equals_in_memory_build(data, tmp_path, factory):
    path, x, ids, meta = data
    want = VideoIndex.build(x, ids, metadata=meta, factory_string=factory, train_sample=2000, device="cpu")
    q = x[::97] + 0.02
    for on_disk in (True, False):
        out = tmp_path / f"idx-{on_disk}"
        got = build_sharded(path, ids, out, factory_string=factory, metadata=meta, n_workers=1,
                            shard_size=1000, train_sample=2000, on_disk=on_disk, device="cpu")
        assert (out / "index.ivfdata").exists() is on_disk and got.read_only is on_disk
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["ivfdata"] == ("index.ivfdata" if on_disk else None)
        assert ("index.ivfdata" in manifest["checksums"]) is on_disk
        assert manifest["build"]["plan"]["shard_rows"] == 1000
        assert manifest["build"]["plan"]["estimated_peak"]
        for index in (got, VideoIndex.load(out), VideoIndex.load(out, mmap=True)):
            _same(index, want, q)
            pd.testing.assert_frame_equal(index.metadata, want.metadata)


def test_on_disk_folder_moved_then_loaded(data, tmp_path):
    path, x, ids, _ = data
    build_sharded(path, ids, tmp_path / "a", factory_string="IVF16,Flat", n_workers=1, shard_size=700,
                  on_disk=True)
    shutil.move(tmp_path / "a", tmp_path / "b")  # the header named a/index.ivfdata: now gone
    assert not (tmp_path / "a").exists()
    mapped = VideoIndex.load(tmp_path / "b", mmap=True)
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(mapped._index).invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists)
    assert lists.filename == str((tmp_path / "b" / "index.ivfdata").resolve())
    mapped.set_search_params("nprobe=16")  # every list: exact
    assert mapped.search(x[:5], 1).ids[:, 0].tolist() == ids[:5]
    with pytest.raises(ValueError, match="read-only"):
        mapped.remove(ids[:1])
    # saved again (copies the data file), loaded into memory: writable, saves as a plain index
    mapped.save(tmp_path / "c")
    mem = VideoIndex.load(tmp_path / "c")
    assert not mem.read_only
    mem.remove(ids[:10])
    mem.add(x[:3], ["new0", "new1", "new2"])
    mem.save(tmp_path / "d")
    assert not (tmp_path / "d" / "index.ivfdata").exists()
    again = VideoIndex.load(tmp_path / "d")
    again.set_search_params("nprobe=16")
    assert again.ntotal == N - 7 and again.search(x[0], 1).ids[0, 0] == "new0"


def test_corrupt_ivfdata_is_named(data, tmp_path):
    path, _, ids, _ = data
    build_sharded(path, ids, tmp_path / "i", factory_string="IVF16,Flat", n_workers=1, on_disk=True)
    with open(tmp_path / "i" / "index.ivfdata", "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    with pytest.raises(IndexFileError, match="index.ivfdata"):
        VideoIndex.load(tmp_path / "i")


def test_npy_rows_reads_across_files(tmp_path):
    a = np.arange(20, dtype=np.float32).reshape(10, 2)
    np.save(tmp_path / "a.npy", a[:4])
    np.save(tmp_path / "b.npy", a[4:].astype(np.float16))
    rows = NpyRows([tmp_path / "a.npy", tmp_path / "b.npy"])
    assert rows.shape == (10, 2)
    np.testing.assert_array_equal(rows.read(2, 7), a[2:7])
    np.testing.assert_array_equal(rows[np.array([0, 1, 3, 4, 9])], a[[0, 1, 3, 4, 9]])
    np.save(tmp_path / "c.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        NpyRows([tmp_path / "a.npy", tmp_path / "c.npy"])


def test_sharded_build_rejects_non_ivf_and_bad_rows(data, tmp_path):
    path, x, ids, _ = data
    with pytest.raises(ValueError, match="not an IVF"):
        build_sharded(path, ids, tmp_path / "o", factory_string="HNSW32,Flat", n_workers=1)
    bad = x.copy()
    bad[2500] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="NaN"):
        build_sharded(tmp_path / "bad.npy", ids, tmp_path / "o", factory_string="IVF16,Flat", n_workers=1,
                      train_sample=1000)
    assert not (tmp_path / "o").exists()


def test_budget_switches_to_disk_and_refuses(data, tmp_path):
    path, x, ids, _ = data
    # IVF16,Flat over 3000 x 16: id tables 1.2 MB, lists 216 KB, an add batch 196 KB: in memory
    # (~1.62 MB) does not fit 1.6 MB, streaming shards of ~2,800 rows to disk does
    vi = build_sharded(path, ids, tmp_path / "b", factory_string="IVF16,Flat", n_workers=1,
                       max_memory_bytes=1_600_000)
    plan = vi.build_info["plan"]
    assert vi.build_info["path"] == "sharded on disk" and plan["on_disk"]
    assert plan["in_memory_peak_bytes"] > 1_600_000 >= plan["peak_bytes"]
    with pytest.raises(ValueError, match=r"needs ~.*budget.*build_sharded"):
        VideoIndex.build(x, ids, factory_string="IVF16,Flat", max_memory_bytes=1_600_000)
    with pytest.raises(ValueError, match="budget"):
        build_sharded(path, ids, tmp_path / "c", factory_string="IVF16,Flat", n_workers=1,
                      max_memory_bytes=400_000)


@pytest.mark.slow
def test_two_workers_equal_one(data, tmp_path):
    path, x, ids, _ = data
    one = build_sharded(path, ids, tmp_path / "1", factory_string="IVF16,Flat", n_workers=1, shard_size=800,
                        on_disk=True)
    two = build_sharded(path, ids, tmp_path / "2", factory_string="IVF16,Flat", n_workers=2, shard_size=800,
                        on_disk=True)
    _same(one, two, x[::50])


@pytest.mark.slow  # embeddings.job imports torch (~7 s on the 2-core machine)
def test_from_embedding_folder_and_cli(tmp_path, capsys):
    from embeddings.encoders.open_clip import TINY_MODEL
    from embeddings.job import check_job_folder, finish_job, write_shard
    from embeddings.video.sampling import FrameSampler
    from recsys.cli import main

    class Enc:
        def describe(self):
            return {"model": TINY_MODEL, "pretrained": "none", "device": "cpu", "precision": "fp32",
                    "embed_dim": 16, "random_weights": True, "seed": 0}

    rng = np.random.default_rng(1)
    x = rng.standard_normal((900, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    inputs = pd.DataFrame({"video_id": [f"v{i:04d}" for i in range(900)],
                           "path": [f"/nowhere/v{i}.mp4" for i in range(900)], "caption": None})
    emb = tmp_path / "emb"
    settings = check_job_folder(emb, inputs, Enc().describe(), FrameSampler("uniform", n_frames=1), 300, 256,
                                "float32")
    cols = {"model": TINY_MODEL, "pretrained": "none", "precision": "fp32", "sampling": "uniform"}
    for s in range(3):
        recs = [{"video_id": inputs.video_id[i], "path": inputs.path[i], "caption": None, "duration_s": 1.0,
                 "fps": 1.0, "width": 8, "height": 8, "n_frames": 1, "frame_offset": row,
                 "frame_timestamps_s": [0.0], "row": row, "error": None, **cols}
                for row, i in enumerate(range(s * 300, (s + 1) * 300))]
        write_shard(emb, s, recs, x[s * 300:(s + 1) * 300], "float32")
    finish_job(emb, 3, Enc().describe(), settings, 900, "float32")
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "idx"), "--factory", "IVF8,Flat",
                 "--workers", "1", "--on-disk", "yes", "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)  # faiss's printf did not leak into the JSON
    assert out["ntotal"] == 900 and out["build"]["path"] == "sharded on disk"
    vi = VideoIndex.load(tmp_path / "idx", mmap=True)
    vi.set_search_params("nprobe=8")
    assert vi.search(x[:3], 1).ids[:, 0].tolist() == ["v0000", "v0001", "v0002"]
    assert vi.encoder["model"] == TINY_MODEL
    from recsys.app import stages  # the pipeline's index stage takes the same budgeted/on-disk path

    vi2 = stages.build_index(emb, tmp_path / "idx2", factory="IVF8,Flat", on_disk=True)
    assert vi2.build_info["path"] == "sharded on disk" and (tmp_path / "idx2" / "index.ivfdata").is_file()
    with pytest.raises(ValueError, match="frame-level index"):
        stages.build_index(emb, tmp_path / "idx3", factory="IVF8,Flat", max_memory="1G",
                           frames_out=tmp_path / "frames")
    with pytest.raises(ValueError, match="metadata"):
        build_from_embedding_folder(emb, tmp_path / "x", metadata=pd.DataFrame({"video_id": ["a"]}),
                                    factory_string="IVF8,Flat")
