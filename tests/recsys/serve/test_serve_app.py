"""The HTTP service with FastAPI's TestClient over the tiny served world (conftest)."""

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.data.interactions import load_interactions
from recsys.serve import Limits, create_app


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    root = served["root"]
    app = create_app(root / "index", root / "ranker", frames_dir=root / "frames", device="cpu",
                     feedback_log=tmp_path_factory.mktemp("fb") / "feedback.csv",
                     limits=Limits(max_k=50, max_result_ids=100, max_text_chars=80,
                                   max_upload_bytes=200_000))
    with TestClient(app) as c:
        yield c


def test_healthz_and_indices(client):
    assert client.get("/healthz").json() == {"status": "ok", "ntotal": 9}
    info = client.get("/indices").json()
    assert info["indices"]["video"]["ntotal"] == 9
    assert info["indices"]["video"]["n_synthetic"] == 1
    assert info["ranker"]["n_users"] == 6
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/search", "/recommend", "/feedback", "/media/{video_id}", "/metrics"} <= set(paths)


def test_text_search_ranks_like_the_encoder(client, served):
    cap = served["catalog"].caption.iloc[3]
    q = served["encoder"].encode_text([cap])[0]
    emb = np.vstack([served["video_emb"], served["video_emb"][:1]])  # + syn-0 (a copy of clip 0)
    ids = served["catalog"].video_id.tolist() + ["syn-0"]
    want = [ids[i] for i in np.argsort(-(emb @ q), kind="stable")[:5]]
    r = client.get("/search", params={"text": cap, "k": 5})
    assert r.status_code == 200
    body = r.json()
    got = [x["video_id"] for x in body["results"]]
    assert set(got[:5]) == set(want) and got[0] in want[:2]
    assert [x["rank"] for x in body["results"]] == [1, 2, 3, 4, 5]
    assert "path" not in body["results"][0]  # file paths stay on the server
    assert set(body["seconds"]) >= {"encode", "search"}


def test_vector_search_finds_itself_and_pages(client, served):
    v = served["video_emb"][5].tolist()
    full = client.post("/search", json={"embedding": v, "k": 9}).json()["results"]
    assert full[0]["video_id"] == served["catalog"].video_id.iloc[5]
    assert full[0]["score"] == pytest.approx(1.0, abs=1e-4)
    page1 = client.post("/search", json={"embedding": v, "k": 3, "page": 1,
                                         "num_result_ids": 9}).json()
    assert [x["video_id"] for x in page1["results"]] == [x["video_id"] for x in full[3:6]]
    assert [x["rank"] for x in page1["results"]] == [4, 5, 6]
    assert page1["n_found"] == 9


def test_filters_exclusions_and_synthetic(client, served):
    v = served["video_emb"][0].tolist()
    res = client.post("/search", json={"embedding": v, "k": 9}).json()["results"]
    syn = [x for x in res if x["synthetic"]]
    assert [x["video_id"] for x in syn] == ["syn-0"]
    assert syn[0]["provenance"]["backend"] == "montage"
    assert syn[0]["provenance"]["source_shots"][0]["timestamp_s"] == 0.5
    assert syn[0]["caption"] is None  # NaN/None metadata is null in strict JSON
    real = client.post("/search", json={"embedding": v, "k": 9, "exclude_synthetic": True}).json()
    assert len(real["results"]) == 8 and not any(x["synthetic"] for x in real["results"])
    excl = client.post("/search", json={"embedding": v, "k": 3,
                                        "exclude_ids": [served["catalog"].video_id.iloc[0], "syn-0"]})
    assert served["catalog"].video_id.iloc[0] not in [x["video_id"] for x in excl.json()["results"]]
    red = client.get("/search", params={"text": "a red thing", "k": 9, "filter": "color:red"}).json()
    colors = served["catalog"].set_index("video_id").color
    assert red["results"] and all(colors[x["video_id"]] == "red" for x in red["results"])
    assert len(red["results"]) == int((colors == "red").sum())


def test_frame_level_search_has_timestamps(client, served):
    cap = served["catalog"].caption.iloc[2]
    body = client.get("/search", params={"text": cap, "k": 3, "level": "frame"}).json()
    assert body["level"] == "frame" and len(body["results"]) == 3
    assert all(x["timestamp_s"] is not None and x["timestamp_s"] >= 0 for x in body["results"])


def test_limits_answer_4xx_naming_the_limit(client):
    r = client.get("/search", params={"text": "a red circle", "k": 51})
    assert r.status_code == 400 and "limit of 50" in r.json()["detail"]
    r = client.get("/search", params={"text": "x" * 81})
    assert r.status_code == 400 and "limit of 80" in r.json()["detail"]
    r = client.get("/search", params={"text": "a", "num_result_ids": 101})
    assert r.status_code == 400 and "limit of 100" in r.json()["detail"]
    r = client.post("/search/upload", files={"file": ("big.png", b"0" * 200_001, "image/png")})
    assert r.status_code == 413 and "200000 bytes" in r.json()["detail"]
    r = client.get("/search", params={"text": "   "})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = client.post("/search", json={"embedding": [0.1, 0.2]})
    assert r.status_code == 400 and "dimension" in r.json()["detail"]


def test_upload_image_and_clip(client, served):
    import io

    from PIL import Image

    from embeddings.video import sample_frames

    path = served["catalog"].path.iloc[4]
    frame = sample_frames(path, n_frames=1).frames[0]
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    r = client.post("/search/upload", files={"file": ("f.png", buf.getvalue(), "image/png")},
                    data={"k": "3"})
    assert r.status_code == 200, r.text
    assert len(r.json()["results"]) == 3
    with open(path, "rb") as f:
        r = client.post("/search/upload", files={"file": ("c.mp4", f.read(), "video/mp4")},
                        data={"k": "1", "exclude_synthetic": "true"})
    # the clip's own pooled embedding (8 frames vs the index's 3) is nearest to itself
    assert r.json()["results"][0]["video_id"] == served["catalog"].video_id.iloc[4]
    r = client.post("/search/upload", files={"file": ("x.bin", b"not a video", "application/x")})
    assert r.status_code == 400 and "not a readable image or video" in r.json()["detail"]


def test_similar_and_metadata(client, served):
    vid = served["catalog"].video_id.iloc[0]
    body = client.get("/similar", params={"video_id": vid, "k": 3}).json()
    assert vid not in [x["video_id"] for x in body["results"]]
    assert body["results"][0]["video_id"] == "syn-0"  # the synthetic copy is the nearest
    assert client.get("/similar", params={"video_id": "nope"}).status_code == 404
    md = client.get("/metadata", params={"ids": f"{vid},nope"}).json()
    assert md["missing"] == ["nope"] and md["items"][0]["caption"] == served["catalog"].caption.iloc[0]


def test_recommend_known_and_cold_start(client, served):
    ids = served["catalog"].video_id.tolist()
    body = client.get("/recommend", params={"user_id": "u0", "k": 2}).json()
    assert body["cold_start_user"] is False and body["fallback"] is None
    # u0 saw clips 1-3 of the first block: clip 0 is its obvious next item
    assert body["results"][0]["item_id"] == ids[0]
    assert "ease" in body["results"][0]["sources"]
    cold = client.get("/recommend", params={"user_id": "stranger", "k": 3}).json()
    assert cold["cold_start_user"] is True and "popularity" in cold["fallback"]
    assert all(x["fallback"] for x in cold["results"]) and len(cold["results"]) == 3
    assert client.get("/users").json()["users"][:2] == ["u0", "u1"]


def test_feedback_appends_a_log_that_train_reads(client, served):
    r = client.post("/feedback", json={"events": [{"user_id": "u9", "item_id": "v1", "rating": 4},
                                                  {"user_id": "u9", "item_id": "v2"}]})
    assert r.status_code == 200 and r.json()["appended"] == 2
    client.post("/feedback", json={"events": [{"user_id": "u8", "item_id": "v3", "timestamp": 7}]})
    df = load_interactions(r.json()["log"])
    assert list(df.user_id) == ["u9", "u9", "u8"] and list(df.rating) == [4.0, 1.0, 1.0]
    assert df.timestamp.iloc[2] == 7
    bad = client.post("/feedback", json={"events": [{"user_id": "a,b", "item_id": "v1"}]})
    assert bad.status_code == 400


def test_media_serves_registered_files_with_ranges(client, served):
    vid = served["catalog"].video_id.iloc[1]
    size = served["catalog"].path.iloc[1].stat().st_size if hasattr(
        served["catalog"].path.iloc[1], "stat") else None
    full = client.get(f"/media/{vid}")
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    assert size is None or len(full.content) == size
    part = client.get(f"/media/{vid}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == full.content[:100]
    assert client.get("/media/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/media/nope").status_code == 404
    t = client.get(f"/thumb/{vid}")
    assert t.status_code == 200 and t.content[:2] == b"\xff\xd8"  # JPEG magic


def test_metrics_count_requests_and_steps(client):
    client.get("/search", params={"text": "a blue square", "k": 2})
    text = client.get("/metrics").text
    assert 'recsys_requests_total{method="GET",route="/search",status="200"}' in text
    assert 'recsys_step_seconds_count{step="encode"}' in text
    assert 'recsys_step_seconds_bucket{le="0.5",step="search"}' in text


def test_query_without_backfill_reports_confidence(client, served):
    r = client.post("/query", json={"text": served["catalog"].caption.iloc[0], "k": 3})
    body = r.json()
    assert r.status_code == 200 and 0.0 <= body["confidence"] <= 1.0
    assert body["backfill_triggered"] is False and len(body["results"]) == 3
    json.loads(r.text)  # strict


def test_token_guards_writes(served, tmp_path):
    app = create_app(service=None, index_dir=served["root"] / "index", device="cpu", token="s3cret",
                     feedback_log=tmp_path / "fb.csv")
    with TestClient(app) as c:
        ev = {"events": [{"user_id": "u1", "item_id": "v1"}]}
        r = c.post("/feedback", json=ev)
        assert r.status_code == 401 and "--token" in r.json()["detail"]
        assert c.post("/feedback", json=ev, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/feedback", json=ev, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/search", params={"text": "a red circle"}).status_code == 200  # reads stay open
        assert c.post("/query", json={"text": "x", "backfill": "montage"}).status_code == 401


def test_json_safe_turns_nan_into_null():
    from recsys.serve.service import json_safe

    out = json_safe({"a": float("nan"), "b": np.float32(1.5), "c": np.int64(3), "d": [np.inf],
                     "e": np.array([1, 2]), "f": np.bool_(True)})
    assert out == {"a": None, "b": 1.5, "c": 3, "d": [None], "e": [1, 2], "f": True}
    assert json.dumps(out, allow_nan=False)


def test_concurrent_feedback_loses_no_rows(served, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from recsys.serve import Service

    svc = Service(served["root"] / "index", device="cpu", encoder=served["encoder"],
                  feedback_log=tmp_path / "log.csv")

    def post(t):
        return svc.add_feedback([{"user_id": f"t{t}", "item_id": f"i{j}"} for j in range(10)])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, range(8)))
    df = load_interactions(tmp_path / "log.csv")
    assert len(df) == 80 and df.groupby("user_id").size().eq(10).all()
    assert not list(tmp_path.glob(".log.csv.*"))  # no temporary files left behind


def test_search_confidence_is_top1_real_cosine_without_calibration(client, served):
    cap = served["catalog"].caption.iloc[2]
    body = client.get("/search", params={"text": cap, "k": 9, "confidence": "true"}).json()
    top_real = next(x["score"] for x in body["results"] if not x["synthetic"])
    assert body["calibrated"] is False and body["threshold"] is None
    assert body["confidence"] == pytest.approx(min(1.0, max(0.0, top_real)), abs=1e-6)
    assert "confidence" in body["seconds"]
    assert "confidence" not in client.get("/search", params={"text": cap}).json()


def test_feedback_from_several_processes_loses_no_rows(served, tmp_path):
    """Ray Serve replicas are processes: the file lock, not the thread lock, keeps every row."""
    import multiprocessing as mp

    from recsys.serve import Service

    svc = Service(served["root"] / "index", device="cpu", encoder=served["encoder"],
                  feedback_log=tmp_path / "log.csv")
    ctx = mp.get_context("fork")  # each child has its own copy of the thread lock

    procs = [ctx.Process(target=_post_many, args=(svc, p)) for p in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    df = load_interactions(tmp_path / "log.csv")
    assert len(df) == 3 * 150 and df.groupby("user_id").size().eq(150).all()


def _post_many(svc, p):
    for j in range(150):
        svc.add_feedback([{"user_id": f"p{p}", "item_id": f"i{j}"}])


def test_backfill_refused_where_the_app_may_not_generate(served, tmp_path):
    app = create_app(served["root"] / "index", device="cpu", encoder=served["encoder"],
                     feedback_log=tmp_path / "fb.csv", allow_backfill=False)
    with TestClient(app) as c:
        r = c.post("/query", json={"text": "a red circle", "backfill": "montage"})
        assert r.status_code == 409 and "--replicas 1" in r.json()["detail"]
        assert c.post("/query", json={"text": "a red circle", "k": 2}).status_code == 200
