"""`recsys serve --engine ray`: the same FastAPI app as a Ray Serve deployment.

The end-to-end test starts the CLI in a subprocess (a local Ray instance, one replica with half a
CPU), asks it the same questions as the in-process app (FastAPI's TestClient over create_app with
the same folders) and wants the same answers, then stops it with SIGTERM and wants Ray gone.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys.cli import main
from recsys.serve.ray_serve import check_resources, replica_device

ROOT = Path(__file__).resolve().parents[3]


def test_replica_device_never_falls_back_silently():
    assert replica_device("auto", 0) == "cpu"
    assert replica_device("auto", 0.5) == "cuda"
    assert replica_device("cuda:1", 1) == "cuda:1"
    with pytest.raises(ValueError, match="--num-gpus-per-replica 1"):
        replica_device("cuda", 0)
    with pytest.raises(ValueError, match="sit idle"):
        replica_device("cpu", 1)


def test_resources_the_cluster_lacks_are_refused_before_deploying():
    check_resources({"CPU": 2.0}, replicas=4, num_cpus=0.5, num_gpus=0)
    with pytest.raises(ValueError, match=r"--num-gpus-per-replica 1 x --replicas 2 needs 2 GPUs but "
                                         r"the Ray cluster has 0"):
        check_resources({"CPU": 2.0}, replicas=2, num_cpus=1, num_gpus=1)
    with pytest.raises(ValueError, match=r"needs 3 CPUs but the Ray cluster has 2"):
        check_resources({"CPU": 2.0}, replicas=3, num_cpus=1, num_gpus=0)
    with pytest.raises(ValueError, match="replicas: got 0"):
        check_resources({"CPU": 2.0}, replicas=0, num_cpus=1, num_gpus=0)


def test_ray_flags_need_the_ray_engine(served, capsys):
    assert main(["serve", str(served["root"] / "index"), "--replicas", "2"]) == 2
    assert "--replicas need --engine ray" in capsys.readouterr().err


def test_missing_ray_serve_names_the_extra(served, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.serve", None)  # import ray.serve -> ImportError
    assert main(["serve", str(served["root"] / "index"), "--engine", "ray"]) == 2
    assert "pip install -e .[serve-ray]" in capsys.readouterr().err


def test_gpus_requested_where_none_exist_is_a_usage_error(served, capsys):
    pytest.importorskip("ray.serve", reason="Ray Serve not installed: pip install -e .[serve-ray]")
    # refused by replica_device before Ray starts: cpu was asked for with GPUs reserved
    assert main(["serve", str(served["root"] / "index"), "--engine", "ray", "--device", "cpu",
                 "--num-gpus-per-replica", "1"]) == 2
    assert "sit idle" in capsys.readouterr().err


def _non_loopback_ip() -> str | None:
    """This machine's address on its default route (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same(a, b, where="") -> None:
    """Equal JSON, timings left out and floats to 1e-5: Ray gives a replica OMP_NUM_THREADS = its
    CPUs, and another torch thread count sums the text tower in another order (~1e-7 apart)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) - {"seconds"}
        assert keys == set(b) - {"seconds"}, where
        for k in keys:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for n, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{n}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), where
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.ray
def test_ray_serve_answers_like_the_in_process_app(served, tmp_path):
    pytest.importorskip("ray.serve", reason="Ray Serve not installed: pip install -e .[serve-ray]")
    import httpx

    from recsys.serve import create_app

    root = served["root"]
    folders = ["--ranker", str(root / "ranker"), "--frames", str(root / "frames")]
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recsys", "-q", "serve", str(root / "index"), *folders, "--engine", "ray",
         "--port", str(port), "--num-cpus-per-replica", "0.5", "--feedback-log", str(tmp_path / "fb.csv")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "Ray Serve did not answer /healthz in 180 s"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        ip = _non_loopback_ip()
        if ip is not None:  # Serve's proxy bound 127.0.0.1 only (http_options host)
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://{ip}:{port}/healthz", timeout=2)
        local = TestClient(create_app(root / "index", root / "ranker", frames_dir=root / "frames",
                                      device="cpu", feedback_log=tmp_path / "fb_local.csv"))
        vid = served["catalog"].video_id.iloc[5]
        vec = served["video_emb"][5].tolist()
        with httpx.Client(base_url=url, timeout=60) as c, local:
            assert c.get("/healthz").json() == {"status": "ok", "ntotal": 9}
            checks = [("GET", "/indices", {}), ("POST", "/search", {"json": {"embedding": vec, "k": 4}}),
                      ("GET", "/search", {"params": {"text": served["catalog"].caption.iloc[3], "k": 3}}),
                      ("POST", "/search", {"json": {"embedding": vec, "k": 3, "level": "frame"}}),
                      ("GET", "/recommend", {"params": {"user_id": "u0", "k": 3}}),
                      ("GET", "/recommend", {"params": {"user_id": "nobody", "k": 2}}),
                      ("GET", "/similar", {"params": {"video_id": vid, "k": 3}}),
                      ("GET", "/metadata", {"params": {"ids": f"{vid},syn-0,nope"}}),
                      ("POST", "/search", {"json": {"embedding": [1.0, 2.0]}}),  # 400, same detail
                      ("GET", "/search", {"params": {"text": "x", "k": 100000}})]  # over the limit
            for method, path, kw in checks:
                a, b = c.request(method, path, **kw), local.request(method, path, **kw)
                assert a.status_code == b.status_code, (path, a.text)
                _same(a.json(), b.json(), path)
            rec = c.get("/recommend", params={"user_id": "u0", "k": 1}).json()
            assert rec["results"][0]["item_id"] == served["catalog"].video_id.iloc[0]  # u0's unseen one
            assert c.post("/search", json={"embedding": vec, "k": 1}).json()["results"][0]["video_id"] == vid
            assert c.get("/").text == local.get("/").text  # the page
            part = c.get(f"/media/{vid}", headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and part.content == local.get(
                f"/media/{vid}", headers={"Range": "bytes=0-99"}).content
            assert c.get(f"/thumb/{vid}").headers["content-type"] == "image/jpeg"
            assert c.get("/docs").status_code == 200
            assert c.post("/feedback", json={"events": [{"user_id": "u9", "item_id": vid}]}).json()[
                "appended"] == 1
            assert (tmp_path / "fb.csv").read_text().splitlines()[1].startswith(f"u9,{vid},1,")
            assert 'route="/recommend"' in c.get("/metrics").text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0, proc.stderr.read()[-3000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/healthz", timeout=2)


@pytest.mark.slow
@pytest.mark.ray
def test_gpus_the_cluster_lacks_are_refused_not_served_on_cpu(served):
    pytest.importorskip("ray.serve", reason="Ray Serve not installed: pip install -e .[serve-ray]")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal needs a cluster without one")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "recsys", "-q", "serve", str(served["root"] / "index"),
                        "--engine", "ray", "--port", str(_free_port()), "--num-gpus-per-replica", "1"],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "--num-gpus-per-replica 1 x --replicas 1 needs 1 GPUs but the Ray cluster has 0" in r.stderr
