"""Benchmark the Ray engine on this machine: embedding throughput with 1 and 2 encoder actors
against the local job, and the driver's memory during a sharded IVF build.

Questions: (1) how many clips/s does ``recsys embed --engine ray`` reach with 1 and 2 encoder
actors, next to the local job on the same clips (peer measured in the same run)? (2) how much
memory does the driver hold while ``recsys index build --engine ray`` builds an IVF index, in
memory and with on-disk inverted lists, next to the local build that loads every vector?

Everything runs on ONE host (a local Ray, ``ray.init(num_cpus=...)``): Ray workers and the driver
share its cores, so this measures the engine's overhead and scaling inside one machine, not a
cluster (see ``beyond_one_host`` in the JSON for what a multi-host measurement needs).
Weights are random (``pretrained="none"``; no download is possible here): a forward pass costs
the same whatever the weight values. Ends with correctness checks: the Ray embeddings equal the
local ones (max abs difference) and the Ray index returns the local index's results.

Usage::

    python benchmarks/bench_ray.py            # ViT-B-32 on 32 clips, 300k x 128 vectors, IVF256,SQ8 (minutes)
    python benchmarks/bench_ray.py --quick    # tiny-clip on 8 clips, 20k vectors (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embeddings.catalog import discover_inputs  # noqa: E402
from embeddings.encoders import load_encoder  # noqa: E402
from embeddings.job import check_job_folder, finish_job, run_embedding_job, write_shard  # noqa: E402
from embeddings.samples import make_sample_catalog  # noqa: E402
from embeddings.sampling import FrameSampler  # noqa: E402
from embeddings.store import EmbeddingFolder  # noqa: E402

BEYOND = ("Start a head node (`ray start --head`) and >= 2 worker nodes (`ray start --address HEAD:6379`), each "
          "with this package and the same model files installed, the clips on a filesystem every node mounts at "
          "the same path (NFS, or an object-store mount), and the output folders on storage the driver writes "
          "(embedding) or every node reads and writes (index shards). Then run this script with --address HEAD:6379 "
          "and --encoders 1 2 4 ... while the nodes run nothing else, and report clips/s per node count, network "
          "bytes (preprocessed frames travel from readers to encoders: ~4.8 MB per 8-frame 224px clip) and the "
          "driver's RSS. Not done here: only one 2-core host was available.")


def rss_mib() -> float:
    """This process's resident memory (MiB) from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Sample this process's RSS every 10 ms in a thread; ``peak`` minus the value at start."""

    def __enter__(self):
        self.base = self.peak = rss_mib()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mib())
        self.delta = self.peak - self.base


def machine() -> dict:
    import faiss
    import ray
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
            "faiss": faiss.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "note": "other processes (other helpers' tests and builds) were running on this shared machine; "
                    "timings are noisy"}


def bench_embed(args, tmp: Path) -> dict:
    from embeddings.ray_engine.embed import run_embedding_job_ray

    make_sample_catalog(tmp / "clips", n_clips=args.clips, size=(64, 64), n_frames=24, fps=12)
    inputs = discover_inputs(tmp / "clips")
    sampler = FrameSampler("uniform", n_frames=args.frames)
    kw = {"model": args.model, "pretrained": "none", "device": "cpu", "precision": "fp32", "seed": 0}
    shard = max(1, args.clips // 4)
    rows = []
    t0 = time.perf_counter()
    s = run_embedding_job(inputs, load_encoder(**kw), tmp / "local", sampler=sampler, shard_size=shard,
                          batch_size=args.batch_size, num_workers=2, progress=False)
    rows.append({"engine": "local (2 reader threads)", "encoders": 1, "seconds": time.perf_counter() - t0,
                 "n_frames": s.n_frames})
    for n in args.encoders:
        t0 = time.perf_counter()
        s = run_embedding_job_ray(inputs, kw, tmp / f"ray{n}", sampler=sampler, shard_size=shard,
                                  batch_size=args.batch_size, num_encoders=n, progress=False)
        rows.append({"engine": "ray", "encoders": n, "seconds": time.perf_counter() - t0, "n_frames": s.n_frames})
    for r in rows:
        r["clips_per_s"] = round(len(inputs) / r["seconds"], 3)
        r["frames_per_s"] = round(r["n_frames"] / r["seconds"], 2)
        r["seconds"] = round(r["seconds"], 2)
        print(f"  embed {r['engine']:>26} encoders={r['encoders']}: {r['seconds']:7.2f} s, "
              f"{r['clips_per_s']:.2f} clips/s, {r['frames_per_s']:.1f} frames/s", flush=True)
    _, ref = EmbeddingFolder.open(tmp / "local").load_videos()
    diffs = {f"ray{n}": float(np.abs(EmbeddingFolder.open(tmp / f"ray{n}").load_videos()[1] - ref).max())
             for n in args.encoders}
    return {"n_clips": len(inputs), "frames_per_clip": args.frames, "model": args.model, "rows": rows,
            "max_abs_diff_vs_local": diffs,
            "timing_includes": "Ray Data pipeline start and encoder actor start-up (model load) per run; "
                               "ray.init once before all Ray runs is not included"}


class _Enc:
    def __init__(self, d):
        self.d = d

    def describe(self):
        return {"model": "synthetic", "pretrained": "none", "device": "cpu", "precision": "fp32",
                "embed_dim": self.d, "random_weights": True, "seed": 0}


def make_vector_folder(out: Path, n: int, d: int, shard: int) -> np.ndarray:
    """Write an embedding folder of ``n`` clustered unit vectors with the job's own writer."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((256, d)).astype(np.float32)
    inputs = pd.DataFrame({"video_id": [f"v{i:07d}" for i in range(n)], "path": [f"/x/{i}.mp4" for i in range(n)],
                           "caption": None})
    enc = _Enc(d).describe()
    settings = check_job_folder(out, inputs, enc, FrameSampler("uniform", n_frames=1), shard, 256, "float32")
    cols = {"model": "synthetic", "pretrained": "none", "precision": "fp32", "sampling": "uniform"}
    queries = []
    for s in range(-(-n // shard)):
        lo, hi = s * shard, min(n, (s + 1) * shard)
        x = centers[rng.integers(0, 256, hi - lo)] + 0.5 * rng.standard_normal((hi - lo, d)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        queries.append(x[:2])
        recs = [{"video_id": inputs.video_id[i], "path": inputs.path[i], "caption": None, "duration_s": 1.0,
                 "fps": 1.0, "width": 8, "height": 8, "n_frames": 1, "frame_offset": r,
                 "frame_timestamps_s": [0.0], "row": r, "error": None, **cols} for r, i in enumerate(range(lo, hi))]
        write_shard(out, s, recs, x, "float32")
    finish_job(out, -(-n // shard), enc, settings, n, "float32")
    return np.concatenate(queries)


def bench_index(args, tmp: Path) -> dict:
    from embeddings.index import VideoIndex
    from recsys import stages

    folder = tmp / "vectors"
    q = make_vector_folder(folder, args.vectors, args.dim, args.vector_shard)
    data_mib = args.vectors * args.dim * 4 / 2**20
    print(f"  index: {args.vectors} x {args.dim} float32 = {data_mib:.0f} MiB in "
          f"{-(-args.vectors // args.vector_shard)} shards, {args.factory}", flush=True)
    rows = []
    results = {}
    for name, kwargs in (("local", {"engine": "local"}), ("ray in-memory merge", {"engine": "ray", "on_disk": False}),
                         ("ray on-disk merge", {"engine": "ray", "on_disk": True})):
        out = tmp / name.replace(" ", "_")
        t0 = time.perf_counter()
        with PeakRSS() as mem:
            vi = stages.build_index(folder, out, factory=args.factory, **kwargs)
            del vi
        secs = time.perf_counter() - t0
        results[name] = VideoIndex.load(out).search(q, 10)
        rows.append({"build": name, "seconds": round(secs, 2), "driver_peak_rss_delta_mib": round(mem.delta, 1),
                     "driver_rss_before_mib": round(mem.base, 1)})
        print(f"  index {name:>22}: {secs:7.2f} s, driver peak RSS +{mem.delta:.0f} MiB "
              f"(before {mem.base:.0f} MiB)", flush=True)
    same = {k: float(np.mean(v.ids == results["local"].ids)) for k, v in results.items() if k != "local"}
    return {"n_vectors": args.vectors, "dim": args.dim, "factory": args.factory, "data_mib": round(data_mib, 1),
            "rows": rows, "fraction_same_ids_as_local": same,
            "note": "ray rows: rows_per_task 250000 (library default), 1 OpenMP thread per task; RSS sampled every "
                    "10 ms in the driver (Ray workers are separate processes and not counted)"}


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    er = res["embed"]["rows"]
    labels = [f"{r['engine'].split(' ')[0]}\n{r['encoders']} enc" for r in er]
    vals = [r["clips_per_s"] for r in er]
    a.bar(labels, vals, color=["grey"] + ["tab:blue"] * (len(er) - 1))
    for i, v in enumerate(vals):
        a.text(i, v, f"{v:.2f}", ha="center", va="bottom")
    a.set_ylabel("clips / s (wall, incl. start-up)")
    a.set_title(f"embed: {res['embed']['n_clips']} clips, {res['embed']['model']}")
    ir = res["index"]["rows"]
    vals = [r["driver_peak_rss_delta_mib"] for r in ir]
    b.bar([r["build"].replace(" merge", "\nmerge") for r in ir], vals, color=["grey", "tab:blue", "tab:green"])
    for i, v in enumerate(vals):
        b.text(i, v, f"{v:.0f}", ha="center", va="bottom")
    b.axhline(res["index"]["data_mib"], ls="--", color="k", lw=1, label="raw vectors")
    b.legend()
    b.set_ylabel("driver peak RSS increase (MiB)")
    b.set_title(f"index build: {res['index']['n_vectors']} x {res['index']['dim']}, {res['index']['factory']}")
    fig.suptitle("one 2-core host, local Ray; other processes were running", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, < 1 minute after Ray starts")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_ray"))
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default all)")
    p.add_argument("--encoders", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    if args.quick:
        args.model, args.clips, args.frames, args.batch_size = "tiny-clip", 8, 4, 16
        args.vectors, args.dim, args.vector_shard, args.factory = 20_000, 64, 5_000, "IVF64,SQ8"
    else:
        args.model, args.clips, args.frames, args.batch_size = "ViT-B-32", 32, 8, 32
        args.vectors, args.dim, args.vector_shard, args.factory = 300_000, 128, 50_000, "IVF256,SQ8"
    import logging

    import ray

    logging.basicConfig(level=logging.WARNING)
    res = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k != "out"},
           "beyond_one_host": BEYOND}
    print(json.dumps(res["machine"], indent=1))
    print(json.dumps(res["settings"]))
    t0 = time.perf_counter()
    ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    res["ray_init_s"] = round(time.perf_counter() - t0, 2)
    res["ray_cluster_resources"] = {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
    print(f"ray.init {res['ray_init_s']} s; resources {res['ray_cluster_resources']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        res["embed"] = bench_embed(args, Path(tmp))
        res["index"] = bench_index(args, Path(tmp))
    ray.shutdown()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    plot(res, out / "results.png")
    ok_embed = all(v <= 1e-5 for v in res["embed"]["max_abs_diff_vs_local"].values())
    ok_index = all(v == 1.0 for v in res["index"]["fraction_same_ids_as_local"].values())
    print(f"correctness: ray embeddings within 1e-5 of local: {ok_embed} {res['embed']['max_abs_diff_vs_local']}; "
          f"ray index returns the local index's ids: {ok_index} {res['index']['fraction_same_ids_as_local']}")
    print(f"wrote {out / 'results.json'} and {out / 'results.png'}")
    return 0 if ok_embed and ok_index else 1


if __name__ == "__main__":
    sys.exit(main())
