"""The Ray engine gives what the local engine gives: same embeddings, ids, index and search results.

Runs a local Ray (``ray.init(num_cpus=2)``); skipped where Ray is not installed. Starting Ray and
its actors takes tens of seconds on the 2-core machine, hence ``slow``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from embeddings.encoders.open_clip import TINY_MODEL, load_encoder  # noqa: E402
from embeddings.index.video_index import VideoIndex  # noqa: E402
from embeddings.job import check_job_folder, finish_job, run_embedding_job, write_shard  # noqa: E402
from embeddings.ray_engine.embed import run_embedding_job_ray  # noqa: E402
from embeddings.ray_engine.index_build import build_ivf_index_ray  # noqa: E402
from embeddings.store import EmbeddingFolder  # noqa: E402
from embeddings.video.samples import make_sample_catalog  # noqa: E402
from embeddings.video.sampling import FrameSampler  # noqa: E402
from recsys.app import stages  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

KW = {"model": TINY_MODEL, "pretrained": "none", "device": "cpu", "precision": "fp32", "seed": 0}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    make_sample_catalog(folder, n_clips=7, size=(32, 32), n_frames=12, fps=6)
    (folder / "empty.mp4").write_bytes(b"")
    from embeddings.video.catalog import discover_inputs

    return discover_inputs(folder, folder / "captions.csv")


def _rows(path):
    return pd.concat([m for m, _, _ in EmbeddingFolder.open(path, verify=True).iter_shards()], ignore_index=True)


def test_ray_embed_killed_half_way_resumes_and_matches_local(catalog, tmp_path, monkeypatch):
    sampler = FrameSampler("uniform", n_frames=3)
    run_embedding_job(catalog, load_encoder(**KW), tmp_path / "local", sampler=sampler, shard_size=3,
                      batch_size=4, progress=False)

    import embeddings.job as job

    real, calls = job.write_parquet, {"n": 0}

    def crash_on_second_shard(path, df):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill after the .npy files of the second shard")
        real(path, df)

    monkeypatch.setattr(job, "write_parquet", crash_on_second_shard)
    out = tmp_path / "ray"
    with pytest.raises(KeyboardInterrupt):
        run_embedding_job_ray(catalog, KW, out, sampler=sampler, shard_size=3, batch_size=4, progress=False)
    assert not (out / "manifest.json").exists()
    finished = sorted(p.name for p in (out / "shards").glob("*.parquet"))
    assert len(finished) == 1
    mtime = (out / "shards" / finished[0]).stat().st_mtime_ns
    monkeypatch.setattr(job, "write_parquet", real)

    summary = run_embedding_job_ray(catalog, KW, out, sampler=sampler, shard_size=3, batch_size=4,
                                    num_encoders=2, progress=False)
    assert summary.n_shards_skipped == 1 and len(summary.errors) == 1  # all runs
    assert (out / "shards" / finished[0]).stat().st_mtime_ns == mtime  # finished work not redone
    assert not list((out / "shards").glob(".*.tmp"))

    local, remote = _rows(tmp_path / "local"), _rows(out)
    assert list(remote["video_id"]) == list(catalog["video_id"])  # exactly one row per input, in order
    pd.testing.assert_frame_equal(local.drop(columns="frame_timestamps_s"),
                                  remote.drop(columns="frame_timestamps_s"))
    m1, v1 = EmbeddingFolder.open(tmp_path / "local").load_videos()
    m2, v2 = EmbeddingFolder.open(out).load_videos()
    assert list(m1["video_id"]) == list(m2["video_id"])
    np.testing.assert_allclose(v2, v1, atol=1e-5)
    np.testing.assert_allclose(EmbeddingFolder.open(out).load_frames()[1],
                               EmbeddingFolder.open(tmp_path / "local").load_frames()[1], atol=1e-5)
    # the same job description, so either engine resumes a folder the other started
    assert json.loads((out / "job.json").read_text()) == json.loads((tmp_path / "local" / "job.json").read_text())
    again = run_embedding_job(catalog, load_encoder(**KW), out, sampler=sampler, shard_size=3, batch_size=4,
                              progress=False)
    assert again.n_embedded == 0 and again.n_shards_skipped == 3


class _Enc:
    def describe(self):
        return {"model": TINY_MODEL, "pretrained": "none", "device": "cpu", "precision": "fp32",
                "embed_dim": 16, "random_weights": True, "seed": 0}


@pytest.fixture(scope="module")
def vector_folder(tmp_path_factory):
    """An embedding folder of 1,200 clustered unit vectors (d=16) in 5 shards, written by the job's writer."""
    out = tmp_path_factory.mktemp("vectors")
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((12, 16))
    x = centers[rng.integers(0, 12, 1200)] + 0.3 * rng.standard_normal((1200, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    inputs = pd.DataFrame({"video_id": [f"v{i:05d}" for i in range(1200)],
                           "path": [f"/nowhere/v{i}.mp4" for i in range(1200)], "caption": None})
    settings = check_job_folder(out, inputs, _Enc().describe(), FrameSampler("uniform", n_frames=1), 250, 256,
                                "float32")
    cols = {"model": TINY_MODEL, "pretrained": "none", "precision": "fp32", "sampling": "uniform"}
    for s in range(5):
        recs = []
        for row, i in enumerate(range(s * 250, min(1200, (s + 1) * 250))):
            recs.append({"video_id": inputs.video_id[i], "path": inputs.path[i], "caption": None,
                         "duration_s": 1.0, "fps": 1.0, "width": 8, "height": 8, "n_frames": 1,
                         "frame_offset": row, "frame_timestamps_s": [0.0], "row": row, "error": None, **cols})
        write_shard(out, s, recs, x[s * 250:(s + 1) * 250], "float32")
    finish_job(out, 5, _Enc().describe(), settings, 1200, "float32")
    return out, x


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,PQ8x4"])
def test_ray_index_build_is_the_local_index(vector_folder, tmp_path, factory):
    folder, x = vector_folder
    local = stages.build_index(folder, tmp_path / "local", factory=factory)
    md = stages.index_metadata(stages.video_metadata(EmbeddingFolder.open(folder)))
    q = x[::37] + 0.05
    want = local.search(q, 10)
    for on_disk in (False, True):
        out = tmp_path / f"ray-{on_disk}"
        vi, info = build_ivf_index_ray(folder, out, factory_string=factory, metadata=md, rows_per_task=500,
                                       on_disk=on_disk)
        assert info["n_tasks"] == 3 and info["on_disk"] is on_disk
        for index in (vi, VideoIndex.load(out)):
            got = index.search(q, 10)
            assert np.array_equal(got.ids, want.ids)
            np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
            pd.testing.assert_frame_equal(index.metadata, local.metadata)
        man = json.loads((out / "manifest.json").read_text())
        ref = json.loads((tmp_path / "local" / "manifest.json").read_text())
        for key in ("factory_string", "dim", "metric", "ntotal", "next_id", "encoder", "tombstones"):
            assert man[key] == ref[key]
        assert (out / "index.ivfdata").exists() is on_disk


def test_ray_index_through_stages_and_cli(vector_folder, tmp_path, capsys):
    from recsys.cli import main

    folder, x = vector_folder
    vi = stages.build_index(folder, tmp_path / "idx", factory="IVF16,Flat", engine="ray")
    assert vi.ntotal == len(x)
    assert main(["index", "build", str(folder), "--out", str(tmp_path / "idx2"), "--factory", "IVF16,SQ8",
                 "--engine", "ray", "--on-disk", "yes", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["ntotal"] == len(x)
    assert VideoIndex.load(tmp_path / "idx2").search(x[:3], 1).ids[:, 0].tolist() == ["v00000", "v00001", "v00002"]
    assert main(["index", "build", str(folder), "--out", str(tmp_path / "h"), "--factory", "HNSW32,Flat",
                 "--engine", "ray"]) == 1
    assert "IVF1024,Flat" in capsys.readouterr().err


def test_cli_embed_engine_ray(catalog, tmp_path, capsys):
    from recsys.cli import main

    folder = str(tmp_path / "emb")
    clips = str(catalog["path"].iloc[0].rsplit("/", 1)[0])
    args = ["embed", clips, "--out", folder, "--model", TINY_MODEL, "--pretrained", "none", "--device", "cpu",
            "--frames", "2", "--shard-size", "4", "--engine", "ray", "--num-encoders", "1", "--json", "-q"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["n_embedded"] == len(catalog) - 1 and first["skipped_reasons"] == {"zero-byte file": 1}
    assert main(args) == 0  # rerun: everything already done
    assert json.loads(capsys.readouterr().out)["n_shards_skipped"] == 2
    meta, vecs = EmbeddingFolder.open(folder, verify=True).load_videos()
    assert meta["video_id"].is_unique and len(vecs) == len(catalog) - 1


KILL_SCRIPT = """
import sys, time
import ray
import embeddings.ray_engine.embed as embed
from embeddings.video.catalog import discover_inputs
from embeddings.video.sampling import FrameSampler
real = embed.write_shard
def slow(*a, **k):  # the driver writes shards; slowing it leaves time to kill between shards
    real(*a, **k)
    time.sleep(1.0)
embed.write_shard = slow
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
kw = {"model": "tiny-clip", "pretrained": "none", "device": "cpu", "precision": "fp32", "seed": 0}
embed.run_embedding_job_ray(discover_inputs(sys.argv[1], sys.argv[1] + "/captions.csv"), kw, sys.argv[2],
                            sampler=FrameSampler("uniform", n_frames=3), shard_size=1, batch_size=4,
                            progress=False)
"""


def test_sigkilled_ray_driver_resumes_with_one_row_per_input(catalog, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    clips = catalog["path"].iloc[0].rsplit("/", 1)[0]
    out = tmp_path / "emb"
    # its own process group: the kill takes the driver and the local Ray it started (no orphans left)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, clips, str(out)], start_new_session=True)
    first = out / "shards" / "shard-00000.parquet"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name for p in (out / "shards").glob("*.parquet")}
    assert first.exists() and not (out / "manifest.json").exists() and len(done) < len(catalog)
    mtime = first.stat().st_mtime_ns
    summary = run_embedding_job_ray(catalog, KW, out, sampler=FrameSampler("uniform", n_frames=3), shard_size=1,
                                    batch_size=4, progress=False)
    assert summary.n_shards_skipped == len(done) and first.stat().st_mtime_ns == mtime
    rows = _rows(out)
    assert list(rows["video_id"]) == list(catalog["video_id"])  # exactly one row per input
    assert not list((out / "shards").glob(".*.tmp"))
