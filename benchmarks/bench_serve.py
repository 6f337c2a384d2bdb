"""`recsys serve` over loopback HTTP against the same calls in process.

Questions (issue 18's targets):
1. A text query over HTTP with the ViT-B-32 text tower: p50 (target <= 50 ms) and the HTTP
   overhead against the in-process ``Service`` call (target <= 10 %), measured in the same run; p99.
2. Throughput with 1, 4 and 16 concurrent clients for a fixed number of requests: QPS, p50, p99,
   errors (target 0). clip-retrieval's back end (the peer, ``--peer clip-retrieval --peer-python
   VENV/bin/python``: it pins numpy<2 and older pandas/pyarrow/open_clip, so it lives in its own
   venv) serves about 20 queries/s; it runs on the same vectors (IndexFlatIP + Parquet metadata)
   through benchmarks/_clip_back_peer.py, first as shipped, then, where its weights cannot be
   fetched, with its model loader replaced by the same random-weight open_clip tower; where it
   cannot run at all the JSON says why.
3. Large result counts: ``num_result_ids=10000`` with a page of 50 against a ``k=50`` call
   (target: at most a few times; clip back goes from 0.3 s to 20 s there, its issue #256).

``--engine uvicorn|ray|both``: the same request mix against ``recsys serve`` (uvicorn, one process)
and ``recsys serve --engine ray`` (Ray Serve: its HTTP proxy passes each request to one replica of
the same FastAPI app), one server at a time, in the same run.

Each server runs as a separate process (``python -m recsys serve``), loopback only; every phase is
bounded by a request count. The encoder is ViT-B-32 with seeded random weights (no weights can be
downloaded here): its cost is the real tower's cost; results are not meaningful, timings are.
Ends with a correctness check: HTTP and in-process results agree, and page 0 of the 10000-id
call equals the k=50 call.

Run: ``python benchmarks/bench_serve.py [--quick] [--engine both] [--out DIR] [--n-items N]
[--model ViT-B-32] [--ray-replicas 1] [--ray-cpus-per-replica 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import load_note  # noqa: E402

COLORS = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple"]
THINGS = ["dog", "cat", "car", "beach", "city street", "forest", "kitchen", "concert", "river", "ball"]


def queries(n: int) -> list[str]:
    return [f"a {COLORS[i % 8]} {THINGS[(i // 8) % 10]} seen in clip {i}" for i in range(n)]


def pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


def build_index(folder: Path, n: int, model: str, seed: int = 0):
    from embeddings.encoders import load_encoder
    from embeddings.index import VideoIndex

    enc = load_encoder(model, "none", device="cpu", seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, enc.embed_dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    import pandas as pd

    ids = [f"v{i:07d}" for i in range(n)]
    meta = pd.DataFrame({"video_id": ids, "caption": [f"clip {i}" for i in range(n)]})
    VideoIndex.build(x, ids, metadata=meta, encoder=enc.describe(), device="cpu").save(folder)
    return enc, x, meta


def start_server(index_dir: Path, port: int, engine: str = "uvicorn", ray_replicas: int = 1,
                 ray_cpus: float = 2.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "recsys", "-q", "serve", str(index_dir), "--port", str(port),
           "--device", "cpu", "--engine", engine]
    if engine == "ray":
        cmd += ["--replicas", str(ray_replicas), "--num-cpus-per-replica", str(ray_cpus)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"recsys serve --engine {engine} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"recsys serve --engine {engine} did not answer /healthz in 240 s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (Ray Serve shuts its local Ray instance down on it), then wait."""
    proc.terminate()
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_clients(url: str, texts: list[str], n_clients: int, k: int, send=None) -> dict:
    """``len(texts)`` text queries shared by ``n_clients`` threads (one connection each).

    ``send(client, text, k) -> bool`` makes one request (default ``GET /search``)."""
    import httpx

    if send is None:
        def send(c, t, k):
            return c.get("/search", params={"text": t, "k": k}).status_code == 200
    lat, errors, lock = [], [0], threading.Lock()
    chunks = [texts[i::n_clients] for i in range(n_clients)]

    def client(part):
        with httpx.Client(base_url=url, timeout=60) as c:
            for t in part:
                t0 = time.perf_counter()
                try:
                    ok = send(c, t, k)
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    errors[0] += not ok

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(p,)) for p in chunks]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {"clients": n_clients, "requests": len(texts), "seconds": wall, "qps": len(texts) / wall,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "errors": errors[0]}


def _tail(text: str, n: int = 6) -> str:
    return " | ".join(ln.strip() for ln in text.strip().splitlines()[-n:])


def start_clip_back(python: str, folder: Path, port: int, extra: list[str]):
    """Start clip back (benchmarks/_clip_back_peer.py under ``python``); (process, None) once it
    answers, or (None, why) with the tail of its stderr when it exits or stays silent."""
    import httpx

    log_path = folder / f"clip_back_{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([python, str(ROOT / "benchmarks" / "_clip_back_peer.py"), str(folder),
                                 str(port), *extra], stdout=log, stderr=subprocess.STDOUT,
                                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None, f"clip back exited with {proc.returncode}: {_tail(log_path.read_text(), 1)}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/indices-list", timeout=1).status_code == 200:
                return proc, None
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    return None, f"clip back did not answer in 300 s: {_tail(log_path.read_text())}"


def run_peer(python: str | None, x: np.ndarray, meta, svc, model: str, n_lat: int, n_tput: int,
             n_big: int, tmp: Path) -> dict:
    """clip-retrieval's back end on the same vectors (an IndexFlatIP, metadata as Parquet), or
    why it could not run. Tried first as shipped (its model loader fetches weights), then with
    its loader replaced by open_clip ``model`` with random weights, like our server."""
    import faiss
    import httpx

    if python is None:
        return {"ran": False, "why": "no --peer-python given (clip-retrieval pins numpy<2 and older "
                                     "pandas/pyarrow/open_clip: it lives in its own venv)"}
    probe = subprocess.run([python, "-c", "import clip_retrieval.clip_back, importlib.metadata as m; "
                                          "print(m.version('clip_retrieval'))"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        # e.g. clip-retrieval 2.45 from pip today: clip-anytorch imports pkg_resources, which
        # setuptools 81+ no longer has (fix in the peer venv: pip install 'setuptools<81')
        return {"ran": False, "why": f"clip_retrieval.clip_back does not import under {python}: "
                                     f"{_tail(probe.stderr, 1)}"}
    version = probe.stdout.strip()
    folder = tmp / "clip_back_index"
    (folder / "metadata").mkdir(parents=True)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    faiss.write_index(flat, str(folder / "image.index"))
    meta.to_parquet(folder / "metadata" / "0.parquet", index=False)
    out = {"ran": False, "clip_retrieval": version, "python": python}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, why = start_clip_back(python, folder, port, [])
    out["as_shipped"] = "started" if proc else why
    print(f"[clip-retrieval {version}] as shipped: {out['as_shipped']}")
    if proc is None:
        proc, why = start_clip_back(python, folder, port, ["--random-weights", model])
        if proc is None:
            out["why"] = why
            return out
        out["model"] = f"open_clip {model}, random weights (clip back's loader replaced)"
    url = f"http://127.0.0.1:{port}"

    def knn(c, text=None, embedding=None, k=10, num_result_ids=None):
        body = {"modality": "image", "indice_name": "bench", "num_images": k,
                "num_result_ids": num_result_ids or k}
        body.update({"text": text} if text is not None else {"embedding_input": embedding})
        return c.post("/knn-service", json=body)

    try:
        texts = queries(n_lat)
        with httpx.Client(base_url=url, timeout=120) as c:
            for t in texts[:3]:
                knn(c, t)
            http = []
            for t in texts:
                t0 = time.perf_counter()
                knn(c, t).raise_for_status()
                http.append(time.perf_counter() - t0)
        lat = {"http_p50_ms": pct(http, 50), "http_p99_ms": pct(http, 99)}
        print(f"  text query, {n_lat} requests: HTTP p50 {lat['http_p50_ms']:.1f} ms p99 "
              f"{lat['http_p99_ms']:.1f}")
        tput = []
        for n_clients in (1, 4, 16):
            r = run_clients(url, queries(n_tput), n_clients, 10,
                            send=lambda c, t, k: knn(c, t, k=k).status_code == 200)
            tput.append(r)
            print(f"  {n_clients:>2} clients x {n_tput} requests: {r['qps']:.1f} QPS, p50 "
                  f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']}")
        rng = np.random.default_rng(1)
        vecs = rng.standard_normal((n_big, x.shape[1])).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        small, big, same = [], [], 0
        with httpx.Client(base_url=url, timeout=300) as c:
            for v in vecs:
                t0 = time.perf_counter()
                a = knn(c, embedding=v.tolist(), k=50).json()
                small.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                knn(c, embedding=v.tolist(), k=50, num_result_ids=10_000).raise_for_status()
                big.append(time.perf_counter() - t0)
                ours = [r["video_id"] for r in svc.search(v, k=10)["results"]]
                same += [r.get("video_id") for r in a[:10]] == ours
        large = {"k50_p50_ms": pct(small, 50), "ids10000_page50_p50_ms": pct(big, 50)}
        large["ratio_p50"] = large["ids10000_page50_p50_ms"] / large["k50_p50_ms"]
        print(f"  num_result_ids=10000, 50 images: p50 {large['ids10000_page50_p50_ms']:.1f} ms vs 50 "
              f"{large['k50_p50_ms']:.1f} ms: x{large['ratio_p50']:.2f}; top-10 by vector equal to "
              f"ours {same}/{n_big}")
        out.update({"ran": True, "latency": lat, "throughput": tput, "large_result_counts": large,
                    "top10_by_vector_equal_ours": f"{same}/{n_big}"})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def measure(url: str, svc, enc, n_lat: int, n_tput: int, n_big: int) -> dict:
    """Latency (in process vs HTTP, interleaved), throughput at 1/4/16 clients, large result counts,
    against the server at ``url``; with the correctness counts."""
    import httpx

    texts = queries(n_lat)
    for t in texts[:3]:  # warm-up the server
        httpx.get(f"{url}/search", params={"text": t, "k": 10}, timeout=120)
    # 1. latency: in-process vs HTTP, interleaved so load drifts hit both alike
    # The in-process call runs on a worker thread, as the server runs its routes (anyio's
    # thread pool): measured on this machine under load, torch's 2-thread OpenMP team in
    # the MAIN thread took 1.6 s per ViT-B-32 text encode against 41 ms on a worker thread.
    worker = ThreadPoolExecutor(max_workers=1)

    def call(t):
        return svc.search(svc.encode_text(t, {}), k=10)

    worker.submit(call, texts[0]).result()
    inproc, http, checks = [], [], 0
    with httpx.Client(base_url=url, timeout=60) as c:
        for t in texts:
            t0 = time.perf_counter()
            a = worker.submit(call, t).result()
            inproc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = c.get("/search", params={"text": t, "k": 10}).json()
            http.append(time.perf_counter() - t0)
            checks += [r["video_id"] for r in a["results"]] == [r["video_id"] for r in b["results"]]
    worker.shutdown()
    lat = {"inprocess_p50_ms": pct(inproc, 50), "inprocess_p99_ms": pct(inproc, 99),
           "http_p50_ms": pct(http, 50), "http_p99_ms": pct(http, 99)}
    lat["http_overhead_p50"] = lat["http_p50_ms"] / lat["inprocess_p50_ms"] - 1
    print(f"  text query, {n_lat} requests: in process p50 {lat['inprocess_p50_ms']:.1f} ms "
          f"p99 {lat['inprocess_p99_ms']:.1f}; HTTP p50 {lat['http_p50_ms']:.1f} ms p99 "
          f"{lat['http_p99_ms']:.1f}; overhead {100 * lat['http_overhead_p50']:.1f} %")
    # 2. throughput
    tput = []
    for n_clients in (1, 4, 16):
        r = run_clients(url, queries(n_tput), n_clients, 10)
        tput.append(r)
        print(f"  {n_clients:>2} clients x {n_tput} requests: {r['qps']:.1f} QPS, p50 "
              f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']}")
    # 3. large result counts, by vector (the search, not the text tower, is what grows)
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((n_big, enc.embed_dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    small, big, page_ok = [], [], 0
    with httpx.Client(base_url=url, timeout=60) as c:
        for v in vecs:
            body = {"embedding": v.tolist(), "k": 50}
            t0 = time.perf_counter()
            a = c.post("/search", json=body).json()
            small.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = c.post("/search", json={**body, "num_result_ids": 10_000, "page": 0}).json()
            big.append(time.perf_counter() - t0)
            page_ok += [r["video_id"] for r in a["results"]] == [r["video_id"] for r in b["results"]]
    large = {"k50_p50_ms": pct(small, 50), "ids10000_page50_p50_ms": pct(big, 50),
             "k50_p99_ms": pct(small, 99), "ids10000_page50_p99_ms": pct(big, 99)}
    large["ratio_p50"] = large["ids10000_page50_p50_ms"] / large["k50_p50_ms"]
    print(f"  num_result_ids=10000 page of 50: p50 {large['ids10000_page50_p50_ms']:.1f} ms vs k=50 "
          f"{large['k50_p50_ms']:.1f} ms: x{large['ratio_p50']:.2f}")
    correct = {"http_equals_inprocess": f"{checks}/{n_lat}", "page0_equals_k50": f"{page_ok}/{n_big}",
               "errors": sum(r["errors"] for r in tput)}
    ok = checks == n_lat and page_ok == n_big and correct["errors"] == 0
    return {"latency": lat, "throughput": tput, "large_result_counts": large,
            "correctness": correct, "passed": ok}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer items and requests (a few minutes)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve"))
    ap.add_argument("--n-items", type=int, default=None, help="index size (default 100000; quick 20000)")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--engine", choices=("uvicorn", "ray", "both"), default="both",
                    help="server(s) to measure, one after the other (default %(default)s)")
    ap.add_argument("--ray-replicas", type=int, default=1)
    ap.add_argument("--ray-cpus-per-replica", type=float, default=float(os.cpu_count() or 1),
                    help="Ray CPUs per replica (default: all cores, as uvicorn's one process has; "
                         "Ray sets the replica's torch threads to this number)")
    ap.add_argument("--peer", choices=("none", "clip-retrieval"), default="clip-retrieval",
                    help="same-run peer (default %(default)s; skipped, with the reason, when it cannot run)")
    ap.add_argument("--peer-python", default=None, help="Python of the venv where clip-retrieval is "
                    "installed (e.g. ../venv-clipret/bin/python)")
    args = ap.parse_args(argv)
    n_items = args.n_items or (20_000 if args.quick else 100_000)
    n_lat = 30 if args.quick else 200
    n_tput = 48 if args.quick else 400
    n_big = 10 if args.quick else 50
    engines = ["uvicorn", "ray"] if args.engine == "both" else [args.engine]

    import faiss
    import fastapi
    import httpx
    import torch
    import uvicorn

    versions = {"fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__,
                "httpx": httpx.__version__, "torch": torch.__version__, "faiss": faiss.__version__}
    for mod in ("uvloop", "httptools", "ray"):  # uvicorn's "auto" loop/http pick uvloop/httptools
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    settings = {"n_items": n_items, "model": args.model, "pretrained": "none (seeded random weights)",
                "latency_requests": n_lat, "throughput_requests": n_tput, "big_page_requests": n_big,
                "factory_string": "Flat", "k": 10, "quick": args.quick, "engines": engines,
                "ray_replicas": args.ray_replicas, "ray_cpus_per_replica": args.ray_cpus_per_replica}
    info = {"machine": {"cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                                     if "model name" in ln), platform.processor()),
                        "cores": os.cpu_count(), "python": platform.python_version(),
                        "load_average_at_start": os.getloadavg(), "note": load_note()},
            "versions": versions, "settings": settings}
    print(json.dumps(info, indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        t0 = time.perf_counter()
        enc, x, meta = build_index(index_dir, n_items, args.model)
        print(f"index of {n_items} built in {time.perf_counter() - t0:.1f} s")
        from recsys.serve import Service

        svc = Service(index_dir, device="cpu", encoder=enc)
        for engine in engines:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            url = f"http://127.0.0.1:{port}"
            t0 = time.perf_counter()
            proc = start_server(index_dir, port, engine, args.ray_replicas, args.ray_cpus_per_replica)
            startup = time.perf_counter() - t0
            print(f"[{engine}] server up in {startup:.1f} s (encoder + index loaded once); "
                  f"load average {os.getloadavg()[0]:.1f}")
            try:
                results[engine] = {"startup_seconds": startup, "load_average_before": os.getloadavg(),
                                   **measure(url, svc, enc, n_lat, n_tput, n_big)}
            finally:
                stop_server(proc)
            results[engine]["load_average_after"] = os.getloadavg()
        if args.peer == "clip-retrieval":
            print("[peer] clip-retrieval back end (clip back) on the same vectors")
            try:
                peer = run_peer(args.peer_python, x, meta, svc, args.model, n_lat, n_tput, n_big,
                                Path(tmp))
            except Exception as e:  # noqa: BLE001 - the peer's failure is a result, reported as such
                peer = {"ran": False, "why": f"{type(e).__name__}: {e}"}
            if not peer["ran"]:
                print(f"  not run: {peer['why']}")
        else:
            peer = {"ran": False, "why": "--peer none"}
    ok = all(r["passed"] for r in results.values())
    if peer.get("ran"):  # exact search on both sides: the same top 10 for the same vector
        same, n = map(int, peer["top10_by_vector_equal_ours"].split("/"))
        ok = ok and same == n
    result = {**info, "engines": results, "peer": peer, "passed": ok}
    (out / "bench_serve.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "bench_serve.png")
    for engine, r in results.items():
        print(f"correctness [{engine}]: {r['correctness']} -> {'PASS' if r['passed'] else 'FAIL'}")
    print(f"{'PASS' if ok else 'FAIL'}; wrote {out}/bench_serve.json and .png")
    return 0 if ok else 1


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = dict(result["engines"])
    if result.get("peer", {}).get("ran"):
        series["clip back"] = result["peer"]
    colors = {"uvicorn": "#2563eb", "ray": "#f59e0b", "clip back": "#6b7280"}
    width = 0.8 / len(series)
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for e, (name, r) in enumerate(series.items()):
        off = (e - (len(series) - 1) / 2) * width
        lat = r["latency"]
        ax[0].bar(np.arange(4) + off, [lat.get("inprocess_p50_ms", np.nan), lat["http_p50_ms"],
                                       lat.get("inprocess_p99_ms", np.nan), lat["http_p99_ms"]],
                  width, color=colors.get(name), label=name)
        t = r["throughput"]
        ax[1].bar(np.arange(len(t)) + off, [x["qps"] for x in t], width, color=colors.get(name),
                  label=name)
        lg = r["large_result_counts"]
        ax[2].bar(np.arange(2) + off, [lg["k50_p50_ms"], lg["ids10000_page50_p50_ms"]], width,
                  color=colors.get(name), label=f"{name} (x{lg['ratio_p50']:.2f})")
    ax[0].set_xticks(range(4), ["in-process\np50", "HTTP\np50", "in-process\np99", "HTTP\np99"])
    ax[0].axhline(50, color="r", ls="--", lw=1, label="target p50 50 ms")
    ax[0].set_ylabel("ms")
    ax[0].set_title("text query (ViT-B-32 text tower)")
    ax[0].legend(fontsize=8)
    t = next(iter(series.values()))["throughput"]
    ax[1].set_xticks(range(len(t)), [str(x["clients"]) for x in t])
    ax[1].axhline(20, color="r", ls="--", lw=1, label="clip back ~20 QPS (issue figure)")
    ax[1].set_xlabel("concurrent clients")
    ax[1].set_ylabel("queries / s")
    ax[1].legend(loc="lower right", fontsize=8)
    ax[1].set_title("throughput (text queries)")
    ax[2].set_xticks(range(2), ["k=50", "10000 ids, page 50"])
    ax[2].set_ylabel("p50 ms")
    ax[2].set_title("large result counts (by vector)")
    ax[2].legend(fontsize=8)
    fig.suptitle(f"recsys serve ({' vs '.join(series)}), {result['settings']['n_items']} items, load "
                 f"{result['machine']['load_average_at_start'][0]:.1f} on {result['machine']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
