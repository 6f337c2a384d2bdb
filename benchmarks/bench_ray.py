"""Benchmark the Ray engine on this machine: embedding throughput with 1 and 2 encoder actors
against the local job, and the driver's memory during a sharded IVF build.

Questions: (1) how many clips/s does ``recsys embed --engine ray`` reach with 1 and 2 encoder
actors, next to the local job on the same clips (peer measured in the same run)? (2) how much
memory does the driver hold while ``recsys index build --engine ray`` builds an IVF index, in
memory and with on-disk inverted lists, next to the local build that loads every vector?

Everything runs on ONE host (a local Ray, ``ray.init(num_cpus=...)``): Ray workers and the driver
share its cores, so this measures the engine's overhead and scaling inside one machine, not a
cluster (see ``beyond_one_host`` in the JSON for what a multi-host measurement needs).
(3) ``two_nodes_simulated``: ONE host simulating two nodes (``ray.cluster_utils.Cluster``: a head
and a worker node, each with its own raylet): ``recsys embed --engine ray --address`` connects to
it, the worker node is killed half way (``cluster.remove_node``), a node rejoins and the command
is rerun; it records where inputs were encoded, the exit codes, and that the result has one row per
input equal to the local job. It proves the address path and the recovery, not multi-host speed.
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

from _common import load_note  # noqa: E402

from embeddings.encoders.open_clip import load_encoder  # noqa: E402
from embeddings.job import check_job_folder, finish_job, run_embedding_job, write_shard  # noqa: E402
from embeddings.store import EmbeddingFolder  # noqa: E402
from embeddings.video.catalog import discover_inputs  # noqa: E402
from embeddings.video.samples import make_sample_catalog  # noqa: E402
from embeddings.video.sampling import FrameSampler  # noqa: E402

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
            "note": load_note()}


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


def bench_two_nodes(args, tmp: Path) -> dict:
    """``recsys embed --engine ray --address`` on a SIMULATED two-node cluster; a worker node killed half way."""
    import subprocess

    from ray.cluster_utils import Cluster

    n = args.clips
    make_sample_catalog(tmp / "clips2", n_clips=n, size=(32, 32), n_frames=6, fps=6)
    inputs = discover_inputs(tmp / "clips2")
    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        start_s = time.perf_counter() - t0
        nodes = {"head": cluster.head_node.node_id, "worker": worker.node_id}
        print(f"  two-node cluster at {cluster.address} up in {start_s:.1f} s: {nodes}", flush=True)
        out = tmp / "two_nodes"
        cmd = [sys.executable, "-m", "recsys", "embed", str(tmp / "clips2"), "--out", str(out), "--model",
               "tiny-clip", "--pretrained", "none", "--device", "cpu", "--frames", "2", "--shard-size", "1",
               "--batch-size", "2", "--engine", "ray", "--address", cluster.address, "--num-encoders", "2",
               "--json", "-q"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        while proc.poll() is None and len(list((out / "shards").glob("*.parquet"))) < 2:
            time.sleep(0.02)
        done_at_kill = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.parquet")}
        kill_s = time.perf_counter() - t0
        cluster.remove_node(worker)
        # the lost actor restarts on the head, where the two actors then hold every CPU and readers
        # wait; a replacement node joins (as an autoscaler or an operator would add one)
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        try:
            first_out, _ = proc.communicate(timeout=args.stall_timeout)
            driver_killed = False
        except subprocess.TimeoutExpired:  # still stalled: kill the driver; the rerun resumes
            proc.kill()
            first_out, _ = proc.communicate()
            driver_killed = True
        first_s = time.perf_counter() - t0
        print(f"  worker node removed at {kill_s:.1f} s with {len(done_at_kill)} of {n} shards written, replacement "
              f"node added; first run exit {proc.returncode} after {first_s:.1f} s"
              f"{' (driver killed: stalled)' if driver_killed else ''}", flush=True)
        t0 = time.perf_counter()
        again = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        rerun_s = time.perf_counter() - t0
    finally:
        cluster.shutdown()
    def summary(text):  # the --json summary; Ray's raylet may print retry notices to stdout before it
        return json.loads(text[text.index('{\n  "n_inputs"'):])

    first = summary(first_out) if proc.returncode == 0 else None
    rerun = summary(again.stdout) if again.returncode == 0 else None
    run_embedding_job(inputs, load_encoder(model="tiny-clip", pretrained="none", device="cpu", seed=0),
                      tmp / "two_nodes_local", sampler=FrameSampler("uniform", n_frames=2), shard_size=1,
                      batch_size=2, progress=False)
    meta, vecs = EmbeddingFolder.open(out, verify=True).load_videos()
    ref = EmbeddingFolder.open(tmp / "two_nodes_local").load_videos()[1]
    kept = all((out / "shards" / k).stat().st_mtime_ns == v for k, v in done_at_kill.items())
    named = {v: k for k, v in nodes.items()}
    return {"what": "ONE host simulating two Ray nodes (ray.cluster_utils.Cluster: a head node and a worker node, "
                    "each its own raylet and workers, 2 logical CPUs each, sharing this machine's 2 cores); "
                    "the CLI connects with --address like to a real `ray start --head` cluster",
            "n_clips": n, "cluster_start_s": round(start_s, 1), "node_ids": nodes,
            "killed": "worker node (cluster.remove_node) once 2 shards were written; a replacement node was added "
                      "right after; the first run's driver is killed if it has not finished after "
                      f"{args.stall_timeout} s",
            "first_run_driver_killed_after_stall": driver_killed,
            "shards_written_at_kill": len(done_at_kill), "kill_after_s": round(kill_s, 1),
            "first_run_exit_code": proc.returncode, "first_run_s": round(first_s, 1),
            "first_run_inputs_encoded_per_node": None if first is None else {
                named.get(k, k): v for k, v in first["encoder_nodes"].items()},
            "rerun_exit_code": again.returncode, "rerun_s": round(rerun_s, 1),
            "rerun_shards_skipped": None if rerun is None else rerun["n_shards_skipped"],
            "rerun_inputs_encoded_per_node": None if rerun is None else {
                named.get(k, k): v for k, v in rerun["encoder_nodes"].items()},
            "finished_shards_untouched": kept,
            "one_row_per_input": list(meta["video_id"]) == list(inputs["video_id"]),
            "max_abs_diff_vs_local": float(np.abs(vecs - ref).max()) if len(vecs) == len(ref) else None}


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
    from embeddings.index.video_index import VideoIndex
    from recsys.app import stages

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
    p.add_argument("--stall-timeout", type=float, default=180.0,
                   help="seconds the two-node run may take after the node loss before its driver is killed")
    p.add_argument("--no-two-nodes", action="store_true",
                   help="skip the simulated two-node cluster (head + worker node on this host, worker killed)")
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
        if not args.no_two_nodes:
            res["two_nodes_simulated"] = bench_two_nodes(args, Path(tmp))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from embeddings._io import dumps_strict  # strict JSON: null, never NaN
    (out / "results.json").write_text(dumps_strict(res, indent=1) + "\n")
    plot(res, out / "results.png")
    ok_embed = all(v <= 1e-5 for v in res["embed"]["max_abs_diff_vs_local"].values())
    ok_index = all(v == 1.0 for v in res["index"]["fraction_same_ids_as_local"].values())
    two = res.get("two_nodes_simulated")
    ok_two = two is None or (two["rerun_exit_code"] == 0 and two["one_row_per_input"]
                             and two["finished_shards_untouched"] and two["max_abs_diff_vs_local"] is not None
                             and two["max_abs_diff_vs_local"] <= 1e-5)
    if two is not None:
        print(f"correctness (simulated two nodes): rerun after the lost node exit {two['rerun_exit_code']}, "
              f"one row per input {two['one_row_per_input']}, finished shards untouched "
              f"{two['finished_shards_untouched']}, max abs diff vs local {two['max_abs_diff_vs_local']}")
    print(f"correctness: ray embeddings within 1e-5 of local: {ok_embed} {res['embed']['max_abs_diff_vs_local']}; "
          f"ray index returns the local index's ids: {ok_index} {res['index']['fraction_same_ids_as_local']}")
    print(f"wrote {out / 'results.json'} and {out / 'results.png'}")
    return 0 if ok_embed and ok_index and ok_two else 1


if __name__ == "__main__":
    sys.exit(main())
