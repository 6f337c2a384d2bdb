"""Backfill speed: latency of a query that does not trigger generation, and seconds per generated clip.

1. Non-triggering query (text encoding + search + confidence features, through
   ``generation.backfill.backfill`` with ``threshold=0.0``), p50/p99 over repeated short queries,
   with ``ClipEncoder.encode_text``'s exact EOT-truncation fast path, against the peer in the same
   run: the same path with open_clip's full 77-token ``encode_text`` (fast path disabled).
   Model: ViT-B-32 with seeded RANDOM weights (no weights can be downloaded here; latency does
   not depend on weight values). Index: faiss Flat (inner product) over ``--n-items`` random
   unit vectors.
2. Seconds per generated clip and peak memory: montage (CPU) on a rendered sample catalog;
   the toy-size diffusers Wan pipeline (random weights, CPU: plumbing cost only) when diffusers
   is installed. Wan 2.1 1.3B / LTX-Video on a GPU are not measured by this run unless
   ``torch.cuda.is_available()``; the JSON says so.

Ends with a correctness check: fast-path embeddings equal open_clip's within 1e-5, the
non-triggering query returns exact Flat search results, every clip has the requested shape.

Usage: ``python benchmarks/bench_backfill.py [--quick] [--out benchmarks/results/bench_backfill]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _common import load_note  # noqa: E402

from embeddings._platform import cpu_model  # noqa: E402

QUERIES = ["a dog on a beach", "a red car", "two people arm wrestling", "a boat on the water",
           "a man cooking pasta", "children playing football", "a cat sleeping", "city at night",
           "a bird flying over a lake", "someone playing the guitar"]


def machine() -> dict:
    cpu = cpu_model()
    import faiss
    import open_clip
    import torch

    info = {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0],
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "open_clip": open_clip.__version__, "faiss": faiss.__version__, "numpy": np.__version__,
            "cuda": torch.cuda.is_available(), "load_average_at_start": os.getloadavg()}
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        info["diffusers"] = None
    return info


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def bench_query(model: str, n_items: int, n_iter: int, seed: int) -> dict:
    from embeddings.encoders import open_clip as encoders
    from embeddings.encoders.open_clip import load_encoder
    from embeddings.index.video_index import VideoIndex
    from generation.backends import Backend
    from generation.backfill import backfill

    class NeverCalled(Backend):
        name = "never"

        def _generate(self, *a, **k):
            raise RuntimeError("a non-triggering query must not generate")

    enc = load_encoder(model, "none", device="cpu")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_items, enc.embed_dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(n_items)]
    index = VideoIndex.build(x, ids, factory_string="Flat", encoder=enc.describe())
    backend = NeverCalled()

    def run(n):
        total, parts = [], {"encode_query": [], "search": [], "cpu": []}
        for i in range(n):
            q = QUERIES[i % len(QUERIES)]
            c = time.process_time()
            t = time.perf_counter()
            r = backfill(q, encoder=enc, index=index, backend=backend, out_dir=tempfile.gettempdir(),
                         k=10, threshold=0.0)
            total.append(time.perf_counter() - t)
            parts["cpu"].append(time.process_time() - c)
            for key in ("encode_query", "search"):
                parts[key].append(r.timings[key])
            assert not r.triggered
        return total, parts

    out = {}
    real_can = encoders._can_truncate_text
    for name, can in (("fast_path", real_can), ("open_clip_full", lambda *a: False)):
        encoders._can_truncate_text = can
        try:
            run(5)  # warm-up
            total, parts = run(n_iter)
        finally:
            encoders._can_truncate_text = real_can
        out[name] = {"p50_ms": pct(total, 50), "p99_ms": pct(total, 99), "mean_ms": float(np.mean(total) * 1e3),
                     "encode_p50_ms": pct(parts["encode_query"], 50),
                     "search_p50_ms": pct(parts["search"], 50), "n": n_iter,
                     # CPU seconds this process spent per query: what the wall time would be on an
                     # idle core with threads=1 (the wall time includes waiting for other processes)
                     "cpu_p50_ms": pct(parts["cpu"], 50), "cpu_p99_ms": pct(parts["cpu"], 99)}
    out["speedup_p50"] = out["open_clip_full"]["p50_ms"] / out["fast_path"]["p50_ms"]
    # correctness: fast path vs open_clip, and the returned list vs exact search
    fast = enc.encode_text(QUERIES)
    encoders._can_truncate_text = lambda *a: False
    try:
        ref = enc.encode_text(QUERIES)
    finally:
        encoders._can_truncate_text = real_can
    out["max_abs_diff_vs_open_clip"] = float(np.abs(fast - ref).max())
    r = backfill(QUERIES[0], encoder=enc, index=index, backend=backend, out_dir=tempfile.gettempdir(),
                 k=10, threshold=0.0)
    exact = np.argsort(-(x @ fast[0]))[:10]
    out["results_equal_exact_search"] = [rec["video_id"] for rec in r.results] == [ids[i] for i in exact]
    out["settings"] = {"model": model, "weights": "seeded random (pretrained='none')", "precision": "fp32",
                       "index": "Flat (inner product)", "n_items": n_items, "dim": enc.embed_dim, "k": 10,
                       "path": "generation.backfill.backfill(threshold=0.0): encode + search + features "
                               "(incl. coherence via reconstruct) + result records"}
    return out


def _peak(fn):
    tracemalloc.start()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result, dt, peak, (rss1 - rss0) * 1024


def bench_generation(n_clips: int, workdir: Path, quick: bool) -> dict:
    import pandas as pd

    from embeddings.encoders.open_clip import TINY_MODEL, load_encoder
    from embeddings.video.decode import sample_frames
    from embeddings.video.samples import make_sample_catalog
    from generation.backends import MontageBackend

    out = {}
    catalog = make_sample_catalog(workdir / "catalog", n_clips=8, seed=0, size=(128, 128), n_frames=48, fps=24)
    enc = load_encoder(TINY_MODEL, "none", device="cpu")
    shots, emb = [], []
    for row in catalog.itertuples():
        s = sample_frames(row.path, n_frames=8)
        emb.append(enc.encode_images(s.frames))
        shots += [{"video_id": row.video_id, "path": str(row.path), "timestamp_s": float(t)} for t in s.timestamps_s]
    montage = MontageBackend(pd.DataFrame(shots), np.vstack(emb), enc.encode_text, shot_seconds=1.0)
    settings = dict(num_frames=48, height=128, width=128, fps=24)
    prompts = ["a red circle, then a blue square", "a green triangle and a yellow circle, followed by a square"]
    times, peaks, shapes = [], [], []
    for i in range(n_clips):
        clip, dt, peak, _ = _peak(lambda i=i: montage.generate(prompts[i % 2], seed=i, **settings))
        times.append(dt)
        peaks.append(peak)
        shapes.append(list(clip.frames.shape))
    out["memory_note"] = ("tracemalloc_peak_mb: peak Python/numpy allocations during one generation "
                          "(torch's CPU allocator is not traced); process_max_rss_mb: whole process peak")
    out["montage"] = {"seconds_per_clip_p50": float(np.median(times)), "seconds_per_clip_max": float(max(times)),
                      "tracemalloc_peak_mb": float(max(peaks) / 2**20), "n": n_clips,
                      "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "settings": {**settings, "shot_seconds": 1.0, "catalog": "8 rendered 128x128 clips",
                                   "device": "cpu"},
                      "shapes_ok": all(s == [48, 128, 128, 3] for s in shapes)}
    try:
        import diffusers  # noqa: F401
    except ImportError:
        out["diffusers_tiny_wan_cpu"] = "not measured: diffusers not installed"
        return out
    from generation.backends import DiffusersBackend
    from generation.backends.diffusers_tiny import tiny_pipeline

    wan = DiffusersBackend("wan", pipe=tiny_pipeline("wan"), device="cpu", max_sequence_length=16)
    small = dict(num_frames=9, height=16, width=16, fps=16, num_inference_steps=2)
    wan.generate("a red dog", seed=0, **small)  # warm-up
    times, peaks = [], []
    for i in range(max(2, n_clips // 2)):
        clip, dt, peak, _ = _peak(lambda i=i: wan.generate("a red dog", seed=i, **small))
        times.append(dt)
        peaks.append(peak)
    out["diffusers_tiny_wan_cpu"] = {
        "seconds_per_clip_p50": float(np.median(times)), "tracemalloc_peak_mb": float(max(peaks) / 2**20),
        "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "settings": {**small, "weights": "toy-size random (plumbing cost only, not Wan 2.1 1.3B)"},
        "shape_ok": list(clip.frames.shape) == [9, 16, 16, 3]}
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = result["query"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    names = ["fast_path", "open_clip_full"]
    a.bar([n + " wall p50" for n in names], [q[n]["p50_ms"] for n in names], color=["tab:green", "tab:gray"])
    a.bar([n + " cpu p50" for n in names], [q[n]["cpu_p50_ms"] for n in names], color=["tab:green", "tab:gray"],
          alpha=0.5)
    a.axhline(50, color="r", ls="--", lw=1, label="50 ms bar")
    a.set_ylabel("ms per non-triggering query (shared, loaded box)")
    a.tick_params(axis="x", labelsize=6)
    a.legend(fontsize=7)
    a.set_title(f"{q['settings']['model']} (random weights), Flat {q['settings']['n_items']}", fontsize=8)
    gen = result["generation"]
    labels, secs = [], []
    for key in ("montage", "diffusers_tiny_wan_cpu"):
        if isinstance(gen.get(key), dict):
            labels.append(key)
            secs.append(gen[key]["seconds_per_clip_p50"])
    b.bar(labels, secs)
    b.set_ylabel("seconds per clip (p50, CPU)")
    b.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    from embeddings._io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test in < 1 minute (tiny model, few runs)")
    p.add_argument("--out", default="benchmarks/results/bench_backfill")
    p.add_argument("--model", help="open_clip architecture (default ViT-B-32; tiny-clip with --quick)")
    p.add_argument("--n-items", type=int, default=10_000)
    p.add_argument("--n-iter", type=int, help="timed queries per variant (default 100; 20 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch and faiss (OpenMP) threads for one query (default 1: a single short "
                        "query gains little from 2 threads and suffers from contention on a shared box)")
    args = p.parse_args(argv)
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    model = args.model or ("tiny-clip" if args.quick else "ViT-B-32")
    n_iter = args.n_iter or (20 if args.quick else 100)
    info = machine()
    settings = {"model": model, "n_items": args.n_items, "n_iter": n_iter, "quick": args.quick,
                "threads": args.threads}
    print(json.dumps({"machine": info, "settings": settings}, indent=1), flush=True)
    result = {"machine": info, "settings": settings, "note": load_note(),
              "gpu": "not measured: no GPU in this run" if not info["cuda"] else "CUDA available (see generation)"}
    result["query"] = bench_query(model, args.n_items, n_iter, args.seed)
    print(json.dumps({"query": result["query"]}, indent=1), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result["generation"] = bench_generation(3 if args.quick else 6, Path(tmp), args.quick)
    print(json.dumps({"generation": result["generation"]}, indent=1), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from embeddings._io import write_json

    q, g = result["query"], result["generation"]
    checks = {"fast_path_within_1e-5": q["max_abs_diff_vs_open_clip"] <= 1e-5,
              "results_equal_exact_search": q["results_equal_exact_search"],
              "montage_shapes": g["montage"]["shapes_ok"]}
    if isinstance(g.get("diffusers_tiny_wan_cpu"), dict):
        checks["diffusers_shape"] = g["diffusers_tiny_wan_cpu"]["shape_ok"]
    result["correctness"] = checks
    write_json(out / "bench_backfill.json", result)
    plot(result, out / "bench_backfill.png")
    print("correctness:", checks)
    print(f"wrote {out / 'bench_backfill.json'} and {out / 'bench_backfill.png'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
