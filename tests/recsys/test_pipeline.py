"""`recsys run` and `recsys quickstart` end to end: every stage's outputs, errors recorded, resumable."""

import json
from pathlib import Path

import pandas as pd
import pytest

from recsys.cli import main
from recsys.config import load_pipeline

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


def _check_run_folder(out: Path) -> None:
    for f in ("settings.toml", "run.json", "run.log", "report.md", "metrics.json", "per_user_metrics.parquet",
              "recommendations.parquet", "queries.json", "queries.parquet", "errors.csv",
              "embeddings/manifest.json", "index/manifest.json", "plots/metrics.png",
              "plots/query_confidence.png"):
        assert (out / f).is_file(), f
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not list(out.rglob(".*.tmp"))


def test_quickstart_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "random weights" in printed and str(out / "report.md") in printed
    _check_run_folder(out)
    report = (out / "report.md").read_text()
    assert "random weights" in report and "![metrics](plots/metrics.png)" in report
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors["video_id"]) == ["truncated_upload"]  # the planted bad file, skipped with a reason
    metrics = json.loads((out / "metrics.json").read_text())
    by = {m["model"]: m for m in metrics["models"]}
    # the synthetic log has latent taste groups: EASE must find them, popularity cannot
    assert by["ease"]["ndcg@5"] > by["popularity"]["ndcg@5"]
    queries = json.loads((out / "queries.json").read_text())
    assert all(q["backfill_triggered"] for q in queries)  # quickstart gates at 1.0 to show the loop
    generated = [g for q in queries for g in q["generated"]]
    assert generated and all((out / "synthetic").glob("*.mp4"))
    from embeddings.index.video_index import VideoIndex

    idx = VideoIndex.load(out / "index")
    assert set(generated) <= set(idx.metadata.loc[idx.metadata["synthetic"].astype(bool), "video_id"])


def test_run_fails_with_exit_1_when_nothing_decodes(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.mp4").write_bytes(b"")
    (clips / "b.mp4").write_text("not a video")
    p = tmp_path / "p.toml"
    p.write_text('[catalog]\nvideos = "clips"\n[encoder]\nmodel = "tiny-clip"\npretrained = "none"\n')
    assert main(["run", str(p), "--out", str(tmp_path / "out"), "-q"]) == 1
    assert "could be decoded" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "failed"
    assert not (tmp_path / "out" / "report.md").exists()


def test_unknown_key_in_pipeline_is_exit_1_with_valid_keys(tmp_path, capsys):
    p = tmp_path / "p.toml"
    p.write_text('[catalog]\nvideos = "clips"\nframez = 3\n')
    assert main(["run", str(p)]) == 1
    assert "valid keys" in capsys.readouterr().err


@pytest.mark.realdata
def test_example_pipeline_on_shared_real_data(tmp_path):
    if not (SHARED / "videos" / "manifest.csv").is_file() or not (SHARED / "ml-100k" / "u.data").is_file():
        pytest.skip(f"real data not found at {SHARED}")
    cfg = load_pipeline(REPO / "examples" / "shared_data.toml")
    assert cfg["catalog"]["videos"] == str((SHARED / "videos").resolve())
    out = tmp_path / "shared"
    assert main(["run", str(REPO / "examples" / "shared_data.toml"), "--out", str(out), "-q"]) == 0
    _check_run_folder(out)
    manifest = json.loads((out / "embeddings" / "manifest.json").read_text())
    assert manifest["n_videos"] == 16 and manifest["random_weights"] is True
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["n_users"] == 943 and metrics["protocol"]["n_items"] == 1682
    by = {m["model"]: m for m in metrics["models"]}
    assert by["ease"]["ndcg@10"] > by["popularity"]["ndcg@10"] > 0.05


def test_quickstart_reruns_into_its_own_folder_but_never_over_other_data(tmp_path):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "-q"]) == 0
    assert main(["quickstart", "--out", str(out), "-q"]) == 0  # an earlier quickstart is replaced
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert len(list((out / "embeddings" / "shards").glob("*.parquet"))) == 1
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    assert main(["quickstart", "--out", str(other), "-q"]) == 1
    assert (other / "precious.txt").read_text() == "keep me"
