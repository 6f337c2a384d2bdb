"""Recall@10 vs QPS of our FAISS indexes against hnswlib, our overhead, and the automatic choice.

Question: which index and search setting gives Recall@10 >= 0.95 fastest, does our
``VideoIndex.search`` add <= 5% over raw faiss, and does the automatic choice (``build_tuned``)
meet recall and latency targets, with and without a memory budget?

Datasets: the real SIFT-128 sample in ``../shared/data/sift5k`` (exact ground truth given,
L2) and clustered, L2-normalised 512-d synthetic vectors shaped like CLIP embeddings (inner
product), ground truth by exact search. Peer: hnswlib at the same M / efConstruction / ef.

Run: ``python benchmarks/bench_index.py [--quick] [--out DIR] [--threads 2] [--gpu]``; ``--gpu`` adds
curves of GPU copies (faiss-gpu) of the index types faiss runs on a GPU (Flat, IVF-Flat, IVF-PQ).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIFT = ROOT.parent / "shared" / "data" / "sift5k"  # ../shared beside the repository
M, EFC = 32, 40  # graph settings shared by faiss HNSW and hnswlib (faiss defaults)


def machine(threads: int) -> dict:
    import faiss
    import hnswlib

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if "model name" in ln),
               platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "faiss": faiss.__version__, "hnswlib": getattr(hnswlib, "__version__", "0.8.0"),
            "numpy": np.__version__, "load_average_at_start": os.getloadavg(),
            "note": "shared machine: other processes (other helpers' tests and benchmarks) were "
                    "running, so timings are noisy"}


def clustered(n: int, d: int, seed: int, n_clusters: int = 1000, noise: float = 0.6,
              point_seed: int | None = None):
    """Clustered unit vectors: cluster centre + isotropic noise, L2-normalised (float32).

    Centres come from ``seed``; with ``point_seed`` the points are fresh draws around the
    same centres (held-out queries of the same distribution, not in the collection).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if point_seed is not None:
        rng = np.random.default_rng(point_seed)
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        x = centres[rng.integers(0, n_clusters, e - s)] + \
            rng.standard_normal((e - s, d)).astype(np.float32) * (noise / np.sqrt(d))
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def recall(found, truth, k=10):
    from embeddings.index.tune import recall_at_k

    return recall_at_k(found, truth, k)


def timed(fn, reps=1):
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def faiss_curve(name, index, xq, gt, knob, values, n_single, gpu=False):
    """Batch and single-query QPS + Recall@10 of a raw faiss index per knob value (``gpu``:
    ``index`` is a GPU index, knobs set with ``faiss.GpuParameterSpace``)."""
    import faiss

    ps = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
    rows = []
    for v in values:
        if knob:
            ps.set_index_parameters(index, f"{knob}={v}")
        elif v:  # a whole parameter string, e.g. "nprobe=4,k_factor_rf=16"
            ps.set_index_parameters(index, v)
        (_, ids), t = timed(lambda: index.search(xq, 10))
        _, ts = timed(lambda: [index.search(q[None], 10) for q in xq[:n_single]])
        rows.append({"index": name, "param": f"{knob}={v}" if knob else v,
                     "recall@10": round(recall(ids, gt), 4), "qps_batch": round(len(xq) / t, 1),
                     "qps_single": round(n_single / ts, 1)})
        print(f"  {name:22s} {rows[-1]['param']!s:14s} R@10={rows[-1]['recall@10']:.4f} "
              f"batch {rows[-1]['qps_batch']:9.1f} q/s  single {rows[-1]['qps_single']:8.1f} q/s",
              flush=True)
    return rows


def hnswlib_curve(x, xq, gt, space, values, n_single, threads):
    import hnswlib

    p = hnswlib.Index(space=space, dim=x.shape[1])
    t = time.perf_counter()
    p.init_index(max_elements=len(x), M=M, ef_construction=EFC, random_seed=0)
    p.set_num_threads(threads)
    p.add_items(x, np.arange(len(x)))
    build_s = time.perf_counter() - t
    rows = []
    for ef in values:
        p.set_ef(max(ef, 10))
        (ids, _), tb = timed(lambda: p.knn_query(xq, k=10))
        _, ts = timed(lambda: [p.knn_query(q[None], k=10) for q in xq[:n_single]])
        rows.append({"index": f"hnswlib M={M} efC={EFC}", "param": f"ef={ef}",
                     "recall@10": round(recall(ids.astype(np.int64), gt), 4),
                     "qps_batch": round(len(xq) / tb, 1), "qps_single": round(n_single / ts, 1)})
        print(f"  {'hnswlib':22s} ef={ef:<11d} R@10={rows[-1]['recall@10']:.4f} batch "
              f"{rows[-1]['qps_batch']:9.1f} q/s  single {rows[-1]['qps_single']:8.1f} q/s", flush=True)
    return rows, build_s


def gpu_copy(index):
    """``index`` copied to every GPU faiss sees (float16 PQ lookup tables, which faiss's GPU IVF-PQ
    needs above 48 code bytes), or None with the reason printed for types faiss cannot run on a GPU
    (HNSW, refinement)."""
    import faiss

    co = faiss.GpuMultipleClonerOptions()
    co.useFloat16 = True
    try:
        return faiss.index_cpu_to_all_gpus(index, co)
    except RuntimeError as exc:
        print(f"  (no GPU version: {str(exc).splitlines()[-1][:120]})", flush=True)
        return None


def peer_curves(label, x, xq, gt, metric, nlist, pq_m, n_single, threads, efs, gpu=False):
    """CPU curves of each faiss index type and of hnswlib; with ``gpu`` also each type faiss can
    copy to the GPU(s), as rows named ``"<factory> (GPU)"``."""
    import faiss

    from embeddings.index.video_index import disable_polysemous_training

    mt = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    out, builds = [], {}
    specs = [("Flat", None, [None]),
             (f"IVF{nlist},Flat", "nprobe", [p for p in (1, 2, 4, 8, 16, 32, 64, 128) if p <= nlist]),
             (f"IVF{nlist},PQ{pq_m}x8", "nprobe", [p for p in (1, 4, 16, 64, 128) if p <= nlist]),
             # exact re-ranking of k_factor * k PQ candidates (IndexRefineFlat keeps the vectors)
             (f"IVF{nlist},PQ{pq_m}x8,RFlat", None,
              [f"nprobe={p},k_factor_rf={kf}" for p in (1, 4, 16) if p <= nlist for kf in (4, 16, 64)]),
             (f"HNSW{M},Flat", "efSearch", efs)]
    for fs, knob, values in specs:
        index = faiss.index_factory(x.shape[1], fs, mt)
        disable_polysemous_training(index)
        if "HNSW" in fs:
            index.hnsw.efConstruction = EFC
        t = time.perf_counter()
        index.train(x[np.random.default_rng(0).choice(len(x), min(len(x), 64 * nlist), replace=False)])
        index.add(x)
        builds[fs] = round(time.perf_counter() - t, 2)
        print(f"  built {fs} in {builds[fs]} s", flush=True)
        out += faiss_curve(fs, index, xq, gt, knob, [v for v in values if v is not None] or [None],
                           n_single)
        if gpu:
            on_gpu = gpu_copy(index)
            if on_gpu is not None:
                out += faiss_curve(f"{fs} (GPU)", on_gpu, xq, gt, knob,
                                   [v for v in values if v is not None] or [None], n_single, gpu=True)
                del on_gpu
        if "HNSW" in fs:
            hnsw_index = index
        if fs.endswith(f"PQ{pq_m}x8"):
            builds["pq_diagnosis"] = pq_diagnosis(index, x, xq, gt, metric)
        del index
    rows, hb = hnswlib_curve(x, xq, gt, "ip" if metric == "ip" else "l2", efs, n_single, threads)
    builds["hnswlib"] = round(hb, 2)
    return out + rows, builds, hnsw_index


def pq_diagnosis(index, x, xq, gt, metric, n_q=200, depth=100):
    """Why IVF-PQ recall stays flat in nprobe: PQ score error against the gaps it must resolve.

    For ``n_q`` queries: the exact score gap between the 10th and 11th true neighbour, the
    spread of the top-``depth`` exact scores, and the error of the PQ-reconstructed scores of
    those neighbours (std over queries and neighbours). When the error is many times the gap,
    PQ cannot order the neighbours and more probing (nprobe) cannot help; re-ranking the PQ
    candidates with exact vectors (``,RFlat``) can.
    """
    import faiss

    from embeddings.index.tune import exact_knn

    q = xq[:n_q]
    nn = exact_knn(q, x, depth, metric="ip" if metric == "ip" else "l2")
    exact = np.einsum("qd,qkd->qk", q, x[nn]) if metric == "ip" else \
        -((q[:, None, :] - x[nn]) ** 2).sum(-1)
    ivf = faiss.extract_index_ivf(index)
    ivf.make_direct_map()
    rec = index.reconstruct_batch(nn.ravel()).reshape(len(q), depth, -1)
    approx = np.einsum("qd,qkd->qk", q, rec) if metric == "ip" else -((q[:, None, :] - rec) ** 2).sum(-1)
    err = approx - exact
    err_c = err - err.mean(axis=1, keepdims=True)  # a per-query offset does not change the order
    gap = exact[:, 9] - exact[:, 10]
    out = {"queries": len(q), "depth": depth,
           "median_gap_10th_11th": float(np.median(gap)),
           "median_spread_top1_to_top100": float(np.median(exact[:, 0] - exact[:, depth - 1])),
           "pq_score_error_std": float(err_c.std()),
           "error_over_gap": float(err_c.std() / max(np.median(gap), 1e-12))}
    print(f"  PQ diagnosis: {out}", flush=True)
    return out


def overhead(x, xq, n_single, reps=7):
    """QPS of VideoIndex.search vs raw faiss on the same index and queries (same run)."""
    from embeddings.index.video_index import VideoIndex

    vi = VideoIndex.build(x, [str(i) for i in range(len(x))], factory_string=f"HNSW{M},Flat",
                          check_norm=False)
    vi.set_search_params("efSearch=64")
    raw = vi._index
    res = {}
    # batch: whole query set per call; single: per query, raw and ours timed back to back
    # (order alternating), min over reps per query, so load changes hit both alike
    t_raw = t_our = np.inf
    for _ in range(reps):
        t_raw = min(t_raw, timed(lambda: raw.search(xq, 10))[1])
        t_our = min(t_our, timed(lambda: vi.search(xq, 10))[1])
    res["batch"] = {"qps_raw_faiss": round(len(xq) / t_raw, 1), "qps_videoindex": round(len(xq) / t_our, 1),
                    "ratio": round(t_raw / t_our, 4), "n_queries": len(xq), "reps_best_of": reps}
    best_raw = np.full(n_single, np.inf)
    best_our = np.full(n_single, np.inf)
    pc = time.perf_counter
    for rep in range(reps):
        for i, q in enumerate(xq[:n_single]):
            q1 = q[None]
            for which in ((0, 1) if (rep + i) % 2 else (1, 0)):
                t = pc()
                if which == 0:
                    raw.search(q1, 10)
                else:
                    vi.search(q, 10)
                dt = pc() - t
                if which == 0:
                    best_raw[i] = min(best_raw[i], dt)
                else:
                    best_our[i] = min(best_our[i], dt)
    res["single"] = {"qps_raw_faiss": round(n_single / best_raw.sum(), 1),
                     "qps_videoindex": round(n_single / best_our.sum(), 1),
                     "ratio": round(best_raw.sum() / best_our.sum(), 4), "n_queries": n_single,
                     "reps_min_per_query": reps,
                     "overhead_us_per_call": round((best_our.sum() - best_raw.sum()) / n_single * 1e6, 1)}
    for mode in ("batch", "single"):
        print(f"  overhead {mode}: {res[mode]}", flush=True)
    return res


def auto_vs_peer(x, xq, gt, peer_rows, n_single, tune_queries=None):
    """build_tuned without a memory limit; its QPS vs hnswlib's at the same recall."""
    from embeddings.index.tune import build_tuned

    ids = [str(i) for i in range(len(x))]
    t = time.perf_counter()
    vi = build_tuned(x, ids, max_memory=None, latency_ms=None, min_recall=0.95, n_queries=300,
                     queries=tune_queries)
    build_s = time.perf_counter() - t
    (res), tb = timed(lambda: vi.search(xq, 10))
    found = np.where(res.indices >= 0, res.indices, -1)
    r = recall(found, gt)
    _, ts = timed(lambda: [vi.search(q, 10) for q in xq[:n_single]])
    ours = {"factory_string": vi.factory_string, "search_params": vi.tuning["search_params"],
            "tuning_recall@10_holdout": vi.tuning["recall@10"], "recall@10": round(r, 4),
            "qps_batch": round(len(xq) / tb, 1), "qps_single": round(n_single / ts, 1),
            "build_and_tune_s": round(build_s, 1), "tried": vi.tuning["tried"],
            "tuning_holdout": vi.tuning["holdout"]}
    peer = sorted([p for p in peer_rows if p["index"].startswith("hnswlib")], key=lambda p: p["recall@10"])
    at = next((p for p in peer if p["recall@10"] >= r), peer[-1])
    ours["hnswlib_at_same_recall"] = at
    for mode in ("batch", "single"):
        ours[f"qps_ratio_vs_hnswlib_{mode}"] = round(ours[f"qps_{mode}"] / at[f"qps_{mode}"], 3)
    print(f"  auto: {ours}", flush=True)
    return ours


_STATUS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")

CHILD_HEAD = r"""
import json, resource, sys, time, numpy as np
sys.path.insert(0, {root!r})
import faiss
faiss.omp_set_num_threads({threads})

def status():
    return {{ln.split(":")[0]: int(ln.split()[1]) for ln in open("/proc/self/status")
            if ln.startswith({status!r})}}

def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

from embeddings.index.tune import build_tuned, tune_search_params
from embeddings.index.shards import build_sharded
from embeddings.index.video_index import VideoIndex
before = status()
"""

AUTO_CHILD = CHILD_HEAD + r"""
x = np.load({path!r}, mmap_mode="r")
ids = [str(i) for i in range(len(x))]
t = time.perf_counter()
vi = build_tuned(x, ids, max_memory={budget!r}, latency_ms=10.0, min_recall=0.95, n_queries=300,
                 max_candidates=2, nlist={nlist!r}, train_sample={train_sample!r},
                 queries=np.load({qpath!r}))
build_s = time.perf_counter() - t
tu = vi.tuning
print("RESULT " + json.dumps({{"factory_string": vi.factory_string, "search_params": tu["search_params"],
      "recall@10": tu["recall@10"], "ms_per_query": tu["ms_per_query"], "meets_recall": tu["meets_recall"],
      "meets_latency": tu["meets_latency"], "build_and_tune_s": round(build_s, 1),
      "ru_maxrss_kib": peak_kib(), "status_before_kib": before, "status_end_kib": status(),
      "build_plan": vi.build_info["plan"], "tried": tu["tried"], "ranking": tu["ranking"],
      "budget": tu.get("budget")}}))
"""

STREAM_CHILD = CHILD_HEAD + r"""
ids = [str(i) for i in range(np.load({path!r}, mmap_mode="r").shape[0])]
t = time.perf_counter()
vi = build_sharded({path!r}, ids, {out!r}, factory_string={factory!r}, max_memory_bytes={budget!r},
                   n_workers=1, device="cpu")
build_s = time.perf_counter() - t
build_peak, after_build = peak_kib(), status()
q, gt = np.load({qpath!r}), np.load({gtpath!r})
tu = tune_search_params(vi, q, np.asarray(ids, dtype=object)[gt], latency_ms=10.0, min_recall=0.95)
print("RESULT " + json.dumps({{"factory_string": vi.factory_string, "path": vi.build_info["path"],
      "build_plan": vi.build_info["plan"], "timings_s": {{k: vi.build_info[k] for k in
      ("train_s", "add_s", "merge_s", "save_s")}}, "build_s": round(build_s, 1),
      "search_params": tu["search_params"], "recall@10": tu["recall@10"], "ms_per_query": tu["ms_per_query"],
      "meets_recall": tu["meets_recall"], "meets_latency": tu["meets_latency"],
      "ru_maxrss_after_build_kib": build_peak, "status_before_kib": before,
      "status_after_build_kib": after_build, "ru_maxrss_end_kib": peak_kib(),
      "index_files_mib": {{f.name: round(f.stat().st_size / 2**20, 1)
                          for f in __import__("pathlib").Path({out!r}).iterdir()}}}}))
"""


def _run_watched(code: str) -> tuple[dict, dict, float]:
    """Run ``code`` in a fresh Python; sample its /proc status every 20 ms from here.

    Returns (the child's RESULT dict, sampled peaks in KiB of RssAnon / RssFile / RssShmem /
    VmRSS, wall seconds). Sampling from the parent works while the child is inside faiss.
    """
    with tempfile.TemporaryDirectory() as td:
        out_f, err_f = open(Path(td) / "out", "w+"), open(Path(td) / "err", "w+")
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", code], stdout=out_f, stderr=err_f, text=True)
        peaks = dict.fromkeys(("RssAnon", "RssFile", "RssShmem", "VmRSS"), 0)
        while p.poll() is None:
            try:
                for ln in open(f"/proc/{p.pid}/status"):
                    key = ln.split(":")[0]
                    if key in peaks:
                        peaks[key] = max(peaks[key], int(ln.split()[1]))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - t
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"budgeted build failed (rc {p.returncode}): {stderr[-3000:]}")
    return json.loads(line[7:]), {f"sampled_peak_{k}_kib": v for k, v in peaks.items()}, wall


def _memory_verdict(res: dict, budget_bytes: int, status_key: str) -> dict:
    """Peak memory of the child against the budget.

    The peak is the child's own ``VmHWM`` (/proc/self/status), not ``ru_maxrss``: a child
    started by ``subprocess`` (vfork + exec) inherits the parent's RSS at the fork in
    ``ru_maxrss`` (measured here: a child of a 626 MiB parent reported 626 MiB, VmHWM 11 MiB).
    """
    base = res["status_before_kib"]["VmRSS"]
    total = res[status_key]["VmHWM"]
    anon = res["sampled_peak_RssAnon_kib"]
    return {"baseline_rss_before_build_mib": round(base / 1024, 1),
            "peak_rss_mib": round(total / 1024, 1),
            "peak_rss_minus_baseline_mib": round((total - base) / 1024, 1),
            "sampled_peak_anon_mib": round(anon / 1024, 1),
            "sampled_peak_file_backed_mib": round(res["sampled_peak_RssFile_kib"] / 1024, 1),
            "estimated_peak_mib": round(res["build_plan"]["peak_bytes"] / 2**20, 1),
            "anon_growth_within_budget": bool((anon - res["status_before_kib"]["RssAnon"]) * 1024
                                              <= budget_bytes),
            "peak_rss_within_budget": bool(total * 1024 <= budget_bytes)}


def budget_build(n, d, budget, threads, tmp: Path, nlist=None, train_sample=None, stream_factory=None):
    """The automatic choice under ``budget`` (build_tuned over a memory-mapped .npy), and a
    streamed build (build_sharded: input read with file reads, lists on disk when the plan says so)
    of ``stream_factory``, each in a fresh process whose memory is sampled from here."""
    from embeddings.index.factory import parse_size
    from embeddings.index.tune import exact_knn

    both = clustered(n + 300, d, seed=7)
    x, q = both[:n], np.ascontiguousarray(both[n:])
    del both
    gt = exact_knn(q, x, 10)
    work = Path(tempfile.mkdtemp(dir=tmp))
    path, qpath, gtpath = work / f"budget_{n}x{d}.npy", work / "q.npy", work / "gt.npy"
    np.save(path, x)
    np.save(qpath, q)
    np.save(gtpath, gt)
    del x
    fmt = {"root": str(ROOT), "threads": threads, "status": _STATUS, "path": str(path), "qpath": str(qpath),
           "gtpath": str(gtpath), "budget": budget}
    budget_bytes = parse_size(budget)
    out = {"n": n, "d": d, "budget": budget, "queries": "300 fresh draws around the same centres (held out)",
           "what_counts": "peak_rss (VmHWM of the child's own memory; ru_maxrss of a subprocess also "
                          "holds the parent's RSS at the fork) counts every resident page: the interpreter and "
                          "libraries (baseline), memory-mapped input .npy pages read (file-backed, reclaimable) "
                          "and on-disk lists; sampled_peak_anon is the process's own heap (sampled every 20 ms "
                          "from the parent). The plan's estimate covers the build's allocations above the "
                          "baseline, not file-backed pages."}
    try:
        res, peaks, wall = _run_watched(AUTO_CHILD.format(**fmt, nlist=nlist, train_sample=train_sample))
        res.update(peaks, wall_s=round(wall, 1))
        res["memory"] = _memory_verdict(res, budget_bytes, "status_end_kib")
        out["auto"] = res
        print(f"  auto under {budget}: {json.dumps(res)}", flush=True)
        if stream_factory:
            res, peaks, wall = _run_watched(STREAM_CHILD.format(**fmt, out=str(work / "idx"),
                                                                factory=stream_factory))
            res.update(peaks, wall_s=round(wall, 1))
            res["memory"] = _memory_verdict(res, budget_bytes, "status_after_build_kib")
            out["streamed"] = res
            print(f"  streamed {stream_factory} under {budget}: {json.dumps(res)}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def plot(curves, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(curves), 2, figsize=(11, 4.2 * len(curves)), squeeze=False)
    for row, (label, rows) in enumerate(curves.items()):
        for col, mode in enumerate(("batch", "single")):
            ax = axes[row][col]
            for name in dict.fromkeys(r["index"] for r in rows):
                pts = [r for r in rows if r["index"] == name]
                ax.plot([p["recall@10"] for p in pts], [p[f"qps_{mode}"] for p in pts], "o-",
                        label=name, ms=3)
            ax.set_yscale("log")
            ax.set_xlabel("Recall@10")
            ax.set_ylabel("queries per second")
            ax.set_title(f"{label}: {mode} mode")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def save(report, out: Path):
    """Write results.json now (the run is long; partial results survive an interruption)."""
    from embeddings._io import dumps_strict  # strict JSON: null, never NaN
    (out / "results.json").write_text(dumps_strict(report, indent=1, default=_plain) + "\n")


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, < 1 minute (smoke test)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/bench_index"))
    ap.add_argument("--threads", type=int, default=2, help="faiss OpenMP and hnswlib threads")
    ap.add_argument("--n-peer", type=int, default=200_000)
    ap.add_argument("--n-budget", type=int, default=1_000_000)
    ap.add_argument("--budget", default="1G")
    ap.add_argument("--skip-budget", action="store_true")
    ap.add_argument("--gpu", action="store_true",
                    help="also measure each index type faiss can run on a GPU (a GPU copy, faiss-gpu); "
                         "fails when faiss sees no GPU")
    ap.add_argument("--skip-peer", action="store_true", help="only the budgeted build")
    ap.add_argument("--reuse-peer", metavar="JSON",
                    help="take the SIFT and synthetic peer curves from an earlier results.json "
                         "(same sizes) and rerun only overhead and the automatic choice")
    ap.add_argument("--budget-nlist", type=int, default=None,
                    help="IVF nlist for the budgeted build (default ~4*sqrt(n))")
    ap.add_argument("--budget-train", type=int, default=None, help="training sample size")
    args = ap.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if args.gpu and n_gpus == 0:
        ap.error("--gpu: faiss sees no GPU (faiss-cpu build or no CUDA); install the gpu extra "
                 "(faiss-gpu-cu12) on a machine with a CUDA GPU, or drop --gpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_peer = 10_000 if args.quick else args.n_peer
    # quick: 48M, not a proportional 20M: at 20k rows the fixed parts (id tables ~7.6 MiB) dominate
    n_budget, budget = (20_000, "48M") if args.quick else (args.n_budget, args.budget)
    nq = 200 if args.quick else 1000
    n_single = 100 if args.quick else 300
    efs = [16, 32, 64, 128] if args.quick else [16, 24, 32, 48, 64, 96, 128, 256]
    report = {"machine": machine(args.threads),
              "settings": {"quick": args.quick, "n_peer": n_peer, "n_budget": n_budget, "budget": budget,
                           "n_queries": nq, "n_single_queries": n_single, "k": 10, "hnsw_M": M,
                           "efConstruction": EFC, "threads_pinned": args.threads,
                           "gpu_curves": bool(args.gpu), "gpus_seen_by_faiss": n_gpus}}
    print(json.dumps(report, indent=1), flush=True)
    curves = {}

    if not args.skip_peer:
        if not args.reuse_peer:
            print("SIFT-128 (real, 5k base, L2, given ground truth)", flush=True)
            xb = np.load(SIFT / "base.npy")
            xq = np.load(SIFT / "bench_queries.npy")
            gt = np.load(SIFT / "bench_gt100.npy")[:, :10].astype(np.int64)
            rows, builds, _ = peer_curves("sift5k", xb, xq, gt, "l2", 64, 16, len(xq), args.threads, efs,
                                          gpu=args.gpu)
            curves["sift5k (real, 5000x128)"] = rows
            report["sift5k"] = {"curves": rows, "build_s": builds}

        print(f"synthetic clustered {n_peer} x 512 (ip)", flush=True)
        both = clustered(n_peer + nq, 512, seed=1)  # queries from the same distribution, held out
        x, xq = both[:n_peer], np.ascontiguousarray(both[n_peer:])
        del both
        from embeddings.index.tune import exact_knn

        t0 = time.perf_counter()
        gt = exact_knn(xq, x, 10)
        t_gt = time.perf_counter() - t0
        nlist = 1024 if not args.quick else 128
        if args.reuse_peer:
            old = json.loads(Path(args.reuse_peer).read_text())
            for key in ("sift5k", "synthetic"):
                report[key] = old[key]
            report["reused_peer_curves_from"] = {"file": args.reuse_peer, "machine": old["machine"]}
            rows = old["synthetic"]["curves"]
            curves = {"sift5k (real, 5000x128)": old["sift5k"]["curves"],
                      f"synthetic ({n_peer}x512)": rows}
        else:
            rows, builds, _ = peer_curves("synthetic", x, xq, gt, "ip", nlist, 16 if args.quick else 64,
                                          n_single, args.threads, efs, gpu=args.gpu)
            curves[f"synthetic ({n_peer}x512)"] = rows
            report["synthetic"] = {"curves": rows, "build_s": builds, "ground_truth_s": round(t_gt, 1)}
        save(report, out)
        print("overhead of VideoIndex.search over raw faiss (HNSW32, efSearch=64)", flush=True)
        report["overhead"] = overhead(x, xq, n_single)
        save(report, out)
        print("automatic choice without a memory limit (tuned on 300 fresh held-out queries)", flush=True)
        tune_q = clustered(300, 512, seed=1, point_seed=12345)
        report["auto_no_limit"] = auto_vs_peer(x, xq, gt, rows, n_single, tune_queries=tune_q)
        save(report, out)
        del x
        plot(curves, out / "recall_qps.png")
    if not args.skip_budget:
        print(f"automatic choice under a {budget} budget, {n_budget} x 512", flush=True)
        from embeddings.index.factory import default_nlist

        stream = f"IVF{args.budget_nlist or default_nlist(n_budget)},Flat"  # ~2 GiB at 1M x 512: on disk
        report["auto_budget"] = budget_build(n_budget, 512, budget, args.threads, Path(tempfile.gettempdir()),
                                             nlist=args.budget_nlist, train_sample=args.budget_train,
                                             stream_factory=stream)
        save(report, out)

    # correctness checks
    checks = {}
    if not args.skip_peer:
        flat_sift = next(r for r in report["sift5k"]["curves"] if r["index"] == "Flat")
        checks = {"flat_exact_on_sift": bool(flat_sift["recall@10"] >= 0.999),
                  "overhead_batch_ratio>=0.95": bool(report["overhead"]["batch"]["ratio"] >= 0.95),
                  "overhead_single_ratio>=0.95": bool(report["overhead"]["single"]["ratio"] >= 0.95),
                  "auto_no_limit_recall>=0.95": bool(report["auto_no_limit"]["recall@10"] >= 0.95)}
    if "auto_budget" in report:
        for name in ("auto", "streamed"):
            r = report["auto_budget"].get(name)
            if r is None:
                continue
            checks[f"budget_{name}_recall>=0.95_and_<=10ms"] = bool(r["meets_recall"] and r["meets_latency"])
            checks[f"budget_{name}_heap_growth_within_budget"] = r["memory"]["anon_growth_within_budget"]
            checks[f"budget_{name}_peak_rss_within_budget"] = r["memory"]["peak_rss_within_budget"]
    report["checks"] = checks
    report["machine"]["load_average_at_end"] = os.getloadavg()
    save(report, out)
    print("checks:", json.dumps(checks), flush=True)
    if not checks.get("flat_exact_on_sift", True):
        raise SystemExit("correctness check failed: Flat is not exact on SIFT")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
