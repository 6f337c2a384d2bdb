"""Query results ranked with collaborative evidence: synthetic clips scored through the cold-start mapping."""

import json

import pandas as pd

from recsys.app.stages import rank_with_collab
from recsys.cli import main


def test_rrf_of_retrieval_and_collab_orders():
    results = [{"rank": 1, "video_id": "a", "score": 0.9, "collab_score": -1.0},
               {"rank": 2, "video_id": "b", "score": 0.8, "collab_score": 2.0},
               {"rank": 3, "video_id": "c", "score": 0.7, "collab_score": 1.0},
               {"rank": 4, "video_id": "d", "score": 0.6}]  # unknown to the ranker
    out = rank_with_collab([dict(r) for r in results])
    # b: 1/62 + 1/61 = 0.03252 > a: 1/61 + 1/63 = 0.03227 > c: 1/63 + 1/62 = 0.03200; d only 1/64
    assert [r["video_id"] for r in out] == ["b", "a", "c", "d"]
    assert [r["rank"] for r in out] == [1, 2, 3, 4]
    assert out[0]["retrieval_rank"] == 2 and out[0]["collab_rank"] == 1
    assert out[-1]["collab_rank"] is None
    assert abs(out[0]["fused_score"] - (1 / 62 + 1 / 61)) < 1e-12
    fused = [r["fused_score"] for r in out]
    assert fused == sorted(fused, reverse=True)
    assert rank_with_collab([]) == []


def test_query_with_hybrid_ranker_scores_and_ranks_synthetic_clips(tmp_path, capsys):
    from embeddings.video.samples import make_sample_catalog, make_sample_interactions

    clips, emb, idx = tmp_path / "clips", tmp_path / "emb", tmp_path / "idx"
    cat = make_sample_catalog(clips, n_clips=6, size=(32, 32), n_frames=12, fps=6)
    assert main(["embed", str(clips), "--out", str(emb), "--captions", str(clips / "captions.csv"),
                 "--model", "tiny-clip", "--pretrained", "none", "--frames", "2", "-q"]) == 0
    assert main(["index", "build", str(emb), "--out", str(idx), "-q"]) == 0
    log = make_sample_interactions(30, cat["video_id"].tolist(), seed=1, n_per_user=(2, 4))
    log.to_csv(tmp_path / "log.csv", index=False)
    assert main(["train", str(tmp_path / "log.csv"), "--model", "hybrid", "--embeddings", str(emb),
                 "--out", str(tmp_path / "m"), "--param", "factors=4", "--param", "iterations=3", "-q"]) == 0
    capsys.readouterr()
    user = str(log["user_id"].iloc[0])
    assert main(["query", str(idx), "--text", "a red circle", "-k", "4", "--backfill", "montage",
                 "--threshold", "1.0", "--embeddings", str(emb), "--out", str(tmp_path / "bf"),
                 "--num-frames", "8", "--height", "32", "--width", "32", "--ranker", str(tmp_path / "m"),
                 "--user", user, "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)[0]
    assert res["backfill_triggered"]
    rows = pd.DataFrame(res["results"])
    assert rows["collab_score"].notna().all()  # real items via their factors, synthetic via the mapping
    assert rows["synthetic"].astype(bool).any()
    assert list(rows["rank"]) == list(range(1, len(rows) + 1))
    assert list(rows["fused_score"]) == sorted(rows["fused_score"], reverse=True)
