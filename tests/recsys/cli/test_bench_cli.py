"""`recsys bench retrieval` and `recsys bench index` end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embeddings._io import save_npy, write_parquet
from embeddings.store import write_manifest
from recsys.cli import main

SHARED_VIDEOS = Path(__file__).resolve().parents[4] / "shared" / "data" / "videos"


def write_folder(path: Path, video_emb, frame_emb, n_frames: int, captions=None) -> list[str]:
    """A finished embedding folder with one shard (the layout `recsys embed` writes)."""
    n, d = video_emb.shape
    ids = [f"v{i:03d}" for i in range(n)]
    (path / "shards").mkdir(parents=True)
    save_npy(path / "shards" / "shard-00000.npy", video_emb.astype(np.float32))
    save_npy(path / "shards" / "shard-00000.frames.npy", frame_emb.astype(np.float32))
    write_parquet(path / "shards" / "shard-00000.parquet", pd.DataFrame({
        "video_id": ids, "path": [f"/x/{v}.mp4" for v in ids], "caption": captions or [None] * n,
        "duration_s": 1.0, "fps": 8.0, "width": 32, "height": 32, "n_frames": n_frames,
        "frame_offset": np.arange(n) * n_frames, "frame_timestamps_s": [list(np.arange(n_frames) * 0.1)] * n,
        "row": np.arange(n), "error": None}))
    write_manifest(path, {"encoder": {"model": "fake", "pretrained": "none", "device": "cpu", "precision": "fp32",
                                      "embed_dim": d, "random_weights": True, "seed": 0},
                          "settings": {"n_frames": n_frames, "sampling": "uniform", "pooling": "mean",
                                       "max_side": 256}, "shards": [{"name": "shard-00000"}], "n_inputs": n})
    return ids


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class LookupEncoder:
    """Text 'encoder' that embeds caption 'v007 ...' as the stored embedding of video v007."""

    random_weights = False

    def __init__(self, table):
        self.table = table

    def encode_text(self, texts):
        return np.stack([self.table[t.split()[0]] for t in texts])


def test_known_answer_through_the_command(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    n, f, d = 12, 3, 16
    frames = unit(rng.standard_normal((n, f, d)))
    videos = unit(frames.mean(axis=1))
    ids = write_folder(tmp_path / "emb", videos, frames.reshape(n * f, d), f)
    # two captions per video, one in the test split; caption text names the video it matches
    caps = pd.DataFrame({"video_id": ids * 2, "caption": [f"{v} first" for v in ids] + [f"{v} second" for v in ids],
                         "split": ["test"] * n + ["train"] * n})
    caps.to_csv(tmp_path / "caps.csv", index=False)
    from recsys.app import stages

    monkeypatch.setattr(stages, "open_encoder_for_index",
                        lambda *a, **k: LookupEncoder(dict(zip(ids, videos, strict=True))))
    out = tmp_path / "bench"
    assert main(["bench", "retrieval", "--embeddings", str(tmp_path / "emb"), "--captions", str(tmp_path / "caps.csv"),
                 "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    video_level = [r for r in res["summary"] if r["level"] == "video"]
    assert {r["direction"] for r in video_level} == {"text_to_video", "video_to_text"}
    for r in video_level:  # caption embedding == its video's embedding: perfect at video level
        assert r["recall_1"] == 1.0 and r["median_rank"] == 1.0 and r["mean_rank"] == 1.0
    t2v = next(r for r in video_level if r["direction"] == "text_to_video")
    assert t2v["n_queries"] == 2 * n and t2v["n_candidates"] == n  # every caption is a query
    ranks = pd.read_parquet(out / "ranks.parquet")
    assert len(ranks) == 2 * (2 * n + n)
    for name in ("summary.md", "summary.csv", "summary.json", "comparison.png", "settings.json",
                 "fake_none/metrics.md", "fake_none/metrics.csv", "fake_none/metrics.json"):
        assert (out / name).is_file(), name
    s = json.loads((out / "settings.json").read_text())["encoders"]["fake:none"]
    assert s["frames_per_clip"] == f and s["sampling"] == "uniform" and s["precision"] == "fp32"
    # the split column restricts the queries (and the candidates) to that split
    assert main(["bench", "retrieval", "--embeddings", str(tmp_path / "emb"), "--captions", str(tmp_path / "caps.csv"),
                 "--split", "test", "--out", str(tmp_path / "b2"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert all(r["n_queries"] == n for r in res["summary"])
    assert main(["bench", "retrieval", "--embeddings", str(tmp_path / "emb"), "--captions", str(tmp_path / "caps.csv"),
                 "--split", "val", "--out", str(tmp_path / "b3")]) == 1
    assert "split='val'" in capsys.readouterr().err


def test_shuffled_captions_fall_to_chance(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(1)
    n, d = 200, 32
    videos = unit(rng.standard_normal((n, d)))
    ids = write_folder(tmp_path / "emb", videos, videos, 1)
    perm = rng.permutation(n)
    caps = pd.DataFrame({"video_id": ids, "caption": [f"{ids[p]} text" for p in perm]})  # wrong videos
    caps.to_csv(tmp_path / "caps.csv", index=False)
    from recsys.app import stages

    monkeypatch.setattr(stages, "open_encoder_for_index",
                        lambda *a, **k: LookupEncoder(dict(zip(ids, videos, strict=True))))
    assert main(["bench", "retrieval", "--embeddings", str(tmp_path / "emb"), "--captions", str(tmp_path / "caps.csv"),
                 "--out", str(tmp_path / "b"), "--json"]) == 0
    for r in json.loads(capsys.readouterr().out)["summary"]:
        assert r["recall_10"] < 0.15 and abs(r["mean_rank"] - (n + 1) / 2) < 25


def test_bench_index_command(tmp_path, capsys):
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((10, 16))
    x = unit(centers[rng.integers(0, 10, 800)] + 0.3 * rng.standard_normal((800, 16)))
    write_folder(tmp_path / "emb", x, np.repeat(x, 2, axis=0), 2)  # two frames per video
    args = ["bench", "index", str(tmp_path / "emb"), "--factory", "IVF8,Flat", "--factory", "HNSW16,Flat",
            "--holdout", "40", "--single", "3", "--threads", "1", "--target-recall", "0.99",
            "--out", str(tmp_path / "idx"), "--json"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["settings"]["threads"] == 1 and not res["settings"]["ground_truth_cached"]
    assert {b["factory_string"] for b in res["builds"]} == {"Flat", "IVF8,Flat", "HNSW16,Flat"}
    ivf = [p for p in res["points"] if p["factory_string"] == "IVF8,Flat"]
    assert ivf[-1]["search_params"] == "nprobe=8" and ivf[-1]["recall"] == 1.0
    assert res["choice"]["recall"] >= 0.99 and res["pareto_front"]
    assert (tmp_path / "idx" / "curves.png").is_file() and (tmp_path / "idx" / "curves.json").is_file()
    assert main(args[:-1]) == 0  # human output; exact search comes from the cache this time
    text = capsys.readouterr().out
    assert "Pareto front" in text and "For recall >= 0.99" in text
    assert json.loads((tmp_path / "idx" / "curves.json").read_text())["settings"]["ground_truth_cached"]
    assert main(["bench", "index", str(tmp_path / "emb"), "--factory", "HNSW16,Flat", "--level", "frame",
                 "--holdout", "10", "--single", "2", "--out", str(tmp_path / "frames"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["settings"]
    assert res["level"] == "frame" and res["n_collection"] == 2 * 800 - 10
    np.save(tmp_path / "q.npy", x[:5, :8])
    assert main(["bench", "index", str(tmp_path / "emb"), "--factory", "Flat", "--queries", str(tmp_path / "q.npy"),
                 "--out", str(tmp_path / "idx2")]) == 1
    assert "(n_queries, 16)" in capsys.readouterr().err


def test_usage_errors(tmp_path, capsys):
    (tmp_path / "emb").mkdir()
    assert main(["bench", "retrieval", "--videos", str(tmp_path), "--embeddings", str(tmp_path / "emb"),
                 "--out", str(tmp_path / "o")]) == 2
    assert main(["bench", "retrieval", "--embeddings", str(tmp_path / "emb"), "--split", "test",
                 "--out", str(tmp_path / "o")]) == 2
    assert main(["bench", "retrieval", "--videos", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--encoder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_VIDEOS.is_dir(), reason="needs ../shared/data/videos")
def test_random_weights_on_shared_videos_sit_at_chance(tmp_path, capsys):
    """16 clips, one caption each: chance is R@1 = 1/16, R@5 = 5/16, median and mean rank 8.5."""
    assert main(["bench", "retrieval", "--videos", str(SHARED_VIDEOS), "--captions",
                 str(SHARED_VIDEOS / "manifest.csv"), "--encoder", "tiny-clip:none", "--frames", "2",
                 "--out", str(tmp_path / "b"), "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["summary"]) == 4
    for r in res["summary"]:
        assert r["n_queries"] == 16 and r["n_candidates"] == 16 and r["random_weights"]
        # loose bounds around chance (sd of R@1 over 16 queries ~ 0.06, of the mean rank ~ 1.2)
        assert r["recall_1"] <= 0.25 and r["recall_5"] <= 0.7 and abs(r["mean_rank"] - 8.5) <= 4
        assert abs(r["median_rank"] - 8.5) <= 5.5
    used = res["settings"]["encoders"]["tiny-clip:none"]
    assert used["frames_per_clip"] == 2 and used["sampling"] == "uniform" and used["precision"] == "fp32"
    chance = used["chance_level"]["text_to_video"]
    assert chance == pytest.approx({"recall@1": 1 / 16, "recall@5": 5 / 16, "recall@10": 10 / 16,
                                    "median_rank": 8.5, "mean_rank": 8.5})


def test_captions_stored_in_the_embedding_folder_and_caption_lists(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(3)
    n, d = 6, 8
    videos = unit(rng.standard_normal((n, d)))
    ids = [f"v{i:03d}" for i in range(n)]
    write_folder(tmp_path / "emb", videos, videos, 1, captions=[f"{v} stored" for v in ids[:-1]] + [None])
    from recsys.app import stages

    monkeypatch.setattr(stages, "open_encoder_for_index",
                        lambda *a, **k: LookupEncoder(dict(zip(ids, videos, strict=True))))
    assert main(["bench", "retrieval", "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "b"),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert all(r["n_queries"] == n - 1 and r["recall_1"] == 1.0 for r in res["summary"])  # uncaptioned: no query
    from recsys.bench.retrieval import load_captions

    pd.DataFrame({"video_id": ["a", "b"], "captions": ['["a one", "a two"]', '["b one"]']}).to_csv(
        tmp_path / "lists.csv", index=False)
    caps = load_captions(tmp_path / "lists.csv")
    assert caps["video_id"].tolist() == ["a", "a", "b"] and caps["caption"].tolist() == ["a one", "a two", "b one"]
