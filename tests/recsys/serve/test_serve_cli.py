"""`recsys serve` arguments, run-folder resolution, and /query backfill as a job end to end."""

import time

import pytest
from fastapi.testclient import TestClient

from recsys.cli import main
from recsys.cli.serve import is_loopback, resolve_folders


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_non_loopback_host_needs_a_token(tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err


def test_missing_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_folder_resolves_index_embeddings_and_first_model(tmp_path):
    for d in ("index", "embeddings", "models/popularity", "models/ease"):
        (tmp_path / d).mkdir(parents=True)
    got = resolve_folders(tmp_path)
    assert got["index_dir"] == tmp_path / "index"
    assert got["embeddings_dir"] == tmp_path / "embeddings"
    assert got["ranker_dir"] == tmp_path / "models" / "ease"
    assert resolve_folders(tmp_path / "index")["index_dir"] == tmp_path / "index"


@pytest.mark.slow
def test_query_backfill_runs_as_a_job_and_the_clip_is_served(tmp_path):
    from embeddings.video.samples import make_sample_catalog
    from recsys.app import stages
    from recsys.serve import create_app

    cat = make_sample_catalog(tmp_path / "clips", n_clips=4, seed=0, size=(32, 32), n_frames=16, fps=8)
    stages.embed_catalog(tmp_path / "clips", tmp_path / "run" / "embeddings",
                         captions=tmp_path / "clips" / "captions.csv", model="tiny-clip",
                         pretrained="none", device="cpu", frames=4, progress=False)
    stages.build_index(tmp_path / "run" / "embeddings", tmp_path / "run" / "index")
    app = create_app(**resolve_folders(tmp_path / "run"), device="cpu", token="t")
    auth = {"Authorization": "Bearer t"}
    with TestClient(app) as c:
        r = c.post("/query", json={"text": "a purple triangle", "k": 3, "backfill": "montage",
                                   "threshold": 1.0}, headers=auth)
        assert r.status_code == 202
        url = r.json()["status_url"]
        deadline = time.monotonic() + 120
        while (job := c.get(url).json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["status"] == "done", job
        res = job["result"]
        assert res["backfill_triggered"] is True and len(res["generated"]) == 1
        sid = res["generated"][0]
        assert c.get("/indices").json()["indices"]["video"]["n_synthetic"] == 1
        hit = c.get("/metadata", params={"ids": sid}).json()["items"][0]
        assert hit["synthetic"] is True and hit["provenance"]["prompt"] == "a purple triangle"
        assert c.get(f"/media/{sid}").status_code == 200
        assert 'recsys_step_seconds_count{step="generate"}' in c.get("/metrics").text
    assert len(cat) == 4
