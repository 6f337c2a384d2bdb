"""The batch embedding job: sharded output, bad inputs skipped with reasons, resume after a kill."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embeddings.encoders.open_clip import TINY_MODEL, load_encoder
from embeddings.job import CatalogError, discover_inputs, run_embedding_job
from embeddings.store import EmbeddingFolder, EmbeddingFolderError
from embeddings.video.samples import make_sample_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    df = make_sample_catalog(folder, n_clips=6, size=(32, 32), n_frames=12, fps=6)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("this is not a video")
    return folder, df


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(TINY_MODEL, "none", device="cpu")


def test_discover_joins_captions_and_keeps_uncaptioned_files(catalog):
    folder, df = catalog
    inputs = discover_inputs(folder, folder / "captions.csv")
    assert inputs["video_id"].is_unique
    assert set(df["video_id"]) <= set(inputs["video_id"])
    assert {"empty", "notes"} <= set(inputs["video_id"])
    cap = inputs.set_index("video_id")["caption"]
    for rec in df.itertuples():
        assert cap[rec.video_id] == rec.caption
    assert "color" in inputs.columns  # extra caption columns are kept


def test_discover_errors_name_the_problem(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        discover_inputs(tmp_path / "nope")
    with pytest.raises(CatalogError, match="no videos or images"):
        discover_inputs(tmp_path)
    bad = tmp_path / "c.csv"
    bad.write_text("id,file\n1,a.mp4\n")
    (tmp_path / "a.mp4").write_bytes(b"x")
    with pytest.raises(CatalogError, match="video_id"):
        discover_inputs(tmp_path, bad)


def test_job_embeds_skips_bad_inputs_and_matches_direct_encoding(catalog, encoder, tmp_path):
    folder, df = catalog
    inputs = discover_inputs(folder, folder / "captions.csv")
    summary = run_embedding_job(inputs, encoder, tmp_path / "emb", n_frames=3, shard_size=3, batch_size=4,
                                progress=False)
    assert summary.n_embedded == len(df) and summary.n_failed == 2
    reasons = dict(zip(summary.errors["video_id"], summary.errors["error"], strict=True))
    assert set(reasons) == {"empty", "notes"}
    assert "zero-byte" in reasons["empty"]

    emb = EmbeddingFolder.open(tmp_path / "emb", verify=True)
    meta, vecs = emb.load_videos()
    assert sorted(meta["video_id"]) == sorted(df["video_id"])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # the stored video embedding is the pooled encoding of the sampled frames, whatever the batching
    from embeddings.encoders.open_clip import pool_frames
    from embeddings.video.decode import sample_frames

    row = meta.index[meta["video_id"] == df["video_id"].iloc[1]][0]
    s = sample_frames(meta.loc[row, "path"], 3, max_side=256)
    direct = pool_frames(encoder.encode_images(s.frames))
    np.testing.assert_allclose(vecs[row], direct, atol=1e-5)
    frames, fvecs = emb.load_frames()
    assert len(frames) == len(fvecs) == 3 * len(df)
    assert emb.manifest["random_weights"] is True


def test_rerun_skips_finished_shards_and_refuses_other_settings(catalog, encoder, tmp_path):
    folder, _ = catalog
    inputs = discover_inputs(folder)
    out = tmp_path / "emb"
    run_embedding_job(inputs, encoder, out, n_frames=2, shard_size=4, progress=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    again = run_embedding_job(inputs, encoder, out, n_frames=2, shard_size=4, progress=False)
    assert again.n_shards_skipped == 2 and again.n_embedded == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == mtimes
    with pytest.raises(EmbeddingFolderError, match="different"):
        run_embedding_job(inputs, encoder, out, n_frames=5, shard_size=4, progress=False)


def test_crash_between_files_of_a_shard_is_redone(catalog, encoder, tmp_path, monkeypatch):
    folder, _ = catalog
    inputs = discover_inputs(folder)
    out = tmp_path / "emb"
    import embeddings.job as job

    real = job.write_parquet
    calls = {"n": 0}

    def crash_on_second_shard(path, df):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill after the .npy files of shard 1")
        real(path, df)

    monkeypatch.setattr(job, "write_parquet", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        run_embedding_job(inputs, encoder, out, n_frames=2, shard_size=3, progress=False)
    assert not (out / "manifest.json").exists()
    with pytest.raises(EmbeddingFolderError, match="not finished"):
        EmbeddingFolder.open(out)
    monkeypatch.setattr(job, "write_parquet", real)
    summary = run_embedding_job(inputs, encoder, out, n_frames=2, shard_size=3, progress=False)
    assert summary.n_shards_skipped == 1
    meta, _ = EmbeddingFolder.open(out).load_videos()
    assert meta["video_id"].is_unique and len(meta) == len(inputs) - 2


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import embeddings.job as job
    from embeddings.encoders.open_clip import TINY_MODEL, load_encoder
    import embeddings.video.sampling as sampling
    real = sampling.sample_frames
    def slow(*a, **k):
        time.sleep(0.4)
        return real(*a, **k)
    sampling.sample_frames = slow
    inputs = job.discover_inputs(sys.argv[1])
    job.run_embedding_job(inputs, load_encoder(TINY_MODEL, "none", device="cpu"), sys.argv[2],
                          n_frames=2, shard_size=2, num_workers=1, progress=False)
""")


def test_sigkill_mid_run_then_resume_gives_exactly_one_row_per_input(catalog, encoder, tmp_path):
    folder, _ = catalog
    out = tmp_path / "emb"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder), str(out)])
    first = out / "shards" / "shard-00000.parquet"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (out / "manifest.json").exists()
    done_before = {p.name for p in (out / "shards").glob("*.parquet")}
    mtime0 = first.stat().st_mtime_ns
    inputs = discover_inputs(folder)
    summary = run_embedding_job(inputs, encoder, out, n_frames=2, shard_size=2, num_workers=1, progress=False)
    assert summary.n_shards_skipped == len(done_before)
    assert first.stat().st_mtime_ns == mtime0  # finished work is not redone
    folder_ = EmbeddingFolder.open(out, verify=True)
    all_rows = pd.concat([m for m, _, _ in folder_.iter_shards()])
    assert sorted(all_rows["video_id"]) == sorted(inputs["video_id"])  # exactly one row per input
    assert not any(Path(out, "shards").glob(".*.tmp"))  # no temporary files left behind


def test_metadata_fields_float16_storage_and_auto_batch(catalog, encoder, tmp_path, caplog):
    import logging

    folder, df = catalog
    inputs = discover_inputs(folder, folder / "captions.csv")
    with caplog.at_level(logging.INFO, logger="embeddings.job"):
        s16 = run_embedding_job(inputs, encoder, tmp_path / "e16", n_frames=2, shard_size=4, batch_size=None,
                                storage_dtype="float16", progress=False)
    assert s16.batch_size >= 1 and s16.skipped_reasons() == {"zero-byte file": 1, "not a video": 1}
    assert any("waited for readers" in r.getMessage() for r in caplog.records)  # per-batch timings
    assert any(r.getMessage().startswith("summary:") for r in caplog.records)
    run_embedding_job(inputs, encoder, tmp_path / "e32", n_frames=2, shard_size=4, batch_size=3, progress=False)
    f16, f32 = EmbeddingFolder.open(tmp_path / "e16"), EmbeddingFolder.open(tmp_path / "e32")
    assert f16.storage_dtype == "float16"
    assert np.load(tmp_path / "e16" / "shards" / "shard-00000.npy").dtype == np.float16
    m16, v16 = f16.load_videos()
    m32, v32 = f32.load_videos()
    assert v16.dtype == np.float32
    np.testing.assert_allclose(v16, v32, atol=2e-3)  # batching does not change results; fp16 rounding only
    meta = next(f32.iter_shards())[0]
    for col in ("video_id", "path", "duration_s", "fps", "width", "height", "n_frames", "frame_timestamps_s",
                "caption", "model", "pretrained", "precision", "error"):
        assert col in meta.columns
    ok = meta[meta["row"] >= 0].iloc[0]
    assert (ok["width"], ok["height"]) == (32, 32) and ok["model"] == encoder.model_name
    assert ok["precision"] == "fp32" and ok["pretrained"] == "none" and len(ok["frame_timestamps_s"]) == 2
    with pytest.raises(ValueError, match="storage_dtype"):
        run_embedding_job(inputs, encoder, tmp_path / "x", storage_dtype="int8", progress=False)


def test_other_sampling_strategies_run_through_the_job(catalog, encoder, tmp_path):
    from embeddings.video.sampling import FrameSampler

    folder, df = catalog
    inputs = discover_inputs(folder)
    summary = run_embedding_job(inputs, encoder, tmp_path / "kf", sampler=FrameSampler("fps", fps=3.0),
                                shard_size=8, batch_size=5, progress=False)
    assert summary.n_embedded == len(df)
    frames, _ = EmbeddingFolder.open(tmp_path / "kf").load_frames()
    per_video = frames.groupby("video_id")["timestamp_s"].apply(list)
    # 12 frames at 6 fps = 2 s; one frame every 1/3 s -> 6 frames at 0, 1/3, ..., 5/3
    for ts in per_video:
        np.testing.assert_allclose(ts, np.arange(6) / 3, atol=1e-6)
    with pytest.raises(ValueError, match="both given"):
        run_embedding_job(inputs, encoder, tmp_path / "y", n_frames=3, sampler=FrameSampler(), progress=False)


@pytest.mark.slow
def test_process_readers_give_the_same_embeddings_as_threads(catalog, encoder, tmp_path):
    folder, _ = catalog
    inputs = discover_inputs(folder)
    run_embedding_job(inputs, encoder, tmp_path / "t", n_frames=2, progress=False)
    run_embedding_job(inputs, encoder, tmp_path / "p", n_frames=2, executor="process", progress=False)
    _, a = EmbeddingFolder.open(tmp_path / "t").load_videos()
    _, b = EmbeddingFolder.open(tmp_path / "p").load_videos()
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_still_images_and_covers_go_through_the_same_job(tmp_path, encoder):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((24, 40, 3), 120, np.uint8)).save(folder / "cover.png")
    Image.fromarray(np.full((24, 40, 3), 30, np.uint8)).save(folder / "still.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    summary = run_embedding_job(discover_inputs(folder), encoder, tmp_path / "emb", n_frames=4, progress=False)
    assert summary.n_embedded == 2 and summary.n_failed == 1
    meta, vecs = EmbeddingFolder.open(tmp_path / "emb").load_videos()
    assert meta["n_frames"].tolist() == [1, 1] and (meta["width"] == 40).all()
    assert [list(t) for t in meta["frame_timestamps_s"]] == [[0.0], [0.0]]
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
