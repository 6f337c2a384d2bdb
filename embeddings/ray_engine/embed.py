"""``recsys embed --engine ray``: the embedding job on a Ray cluster, same folder format and resume.

Stages (one Ray Data pipeline, streaming):

* **list**: the driver lists the inputs (:func:`embeddings.video.catalog.discover_inputs`) and keeps the
  rows of unfinished shards (the same plan as the local job: shard ``i`` is
  ``inputs[i*shard_size:(i+1)*shard_size]``);
* **read** (CPU tasks): :func:`embeddings.job.read_input` (decode, sample, preprocess), the local
  job's reader;
* **encode** (an actor pool of ``num_encoders`` actors, one GPU each where the cluster has GPUs):
  :meth:`embeddings.encoders.open_clip.ClipEncoder.encode_preprocessed` in batches of ``batch_size`` frames,
  the local job's mapper;
* **write** (the driver, streaming): rows are gathered per shard and a shard is written with
  :func:`embeddings.job.write_shard` as soon as all its inputs are back, so the driver holds the
  embeddings of the shards in flight only. The manifest is written by
  :func:`embeddings.job.finish_job`.

A shard is finished exactly when its Parquet exists, so a rerun after a crash, a lost node or a
killed driver (Ray retries lost tasks and restarts lost actors by itself while the driver lives)
skips finished shards and redoes the others; every input ends with exactly one row. Local and
Ray runs write the same ``job.json``, so either engine can resume a folder the other started.

Multi-host: the input files must be readable at the same paths on every node (a shared
filesystem or object-store mount) and the output folder writable by the driver.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from embeddings.job import (
    JobSummary,
    check_job_folder,
    finish_job,
    plan_shards,
    read_input,
    shard_record,
    write_shard,
)
from embeddings.ray_engine.cluster import ray_session
from embeddings.store import STORAGE_DTYPES
from embeddings.video.sampling import FrameSampler

__all__ = ["run_embedding_job_ray", "RayJobSummary", "encoder_placement", "actor_cpus"]

log = logging.getLogger(__name__)


@dataclass
class RayJobSummary(JobSummary):
    """:class:`embeddings.job.JobSummary` of a Ray run, plus where the inputs were encoded.

    Attributes
    ----------
    encoder_nodes : dict[str, int]
        Ray node id (hex) -> inputs of this run encoded by an actor on that node (an input whose
        block was retried after a lost node counts once, on the node that finished it).
    """

    encoder_nodes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form: :meth:`JobSummary.to_dict` plus ``encoder_nodes``."""
        return {**super().to_dict(), "encoder_nodes": dict(self.encoder_nodes)}


def encoder_placement(device: str, cluster_gpus: float) -> tuple[str, int]:
    """Where the encoder actors run: ``(actor_device, gpus_per_actor)``.

    ``device="cpu"`` gives CPU actors; ``"auto"`` one GPU per actor when the cluster has any GPU,
    else CPU actors; ``"cuda"``/``"cuda:N"`` one GPU per actor (Ray chooses which GPU).

    Raises
    ------
    RuntimeError
        ``device`` asks for CUDA and the cluster reports no GPU (there is no CPU fallback).
    ValueError
        An unknown ``device``.
    """
    if device == "cpu":
        return "cpu", 0
    if device == "auto":
        return ("cuda", 1) if cluster_gpus >= 1 else ("cpu", 0)
    if device == "cuda" or device.startswith("cuda:"):
        if cluster_gpus < 1:
            raise RuntimeError(f"device={device!r} but the Ray cluster reports no GPU; start GPU nodes "
                               "(`ray start --num-gpus N`) or pass device='cpu'")
        return "cuda", 1
    raise ValueError(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def actor_cpus(cluster_cpus: float, num_encoders: int) -> float:
    """Logical CPUs per encoder actor: 1, or less so that 0.5 CPU stays free for a reader task.

    An actor pool that takes every CPU would leave the reader tasks unscheduled (a deadlock), e.g.
    2 encoders on a 2-CPU machine; then each actor asks for ``(cluster_cpus - 0.5) / num_encoders``
    (at least 0.1). Ray CPUs are logical: the actors still use the cores they need.
    """
    return float(min(1.0, max(0.1, (float(cluster_cpus) - 0.5) / int(num_encoders))))


def _read_row(row: dict, sampler: FrameSampler, max_side, transform) -> dict:
    """Ray Data ``map``: the local job's reader on one input; frames as a float32 array."""
    sampled, batch, secs = read_input(row["path"], sampler, max_side, transform)
    out = {"shard": row["shard"], "pos": row["pos"], "read_s": secs}
    if sampled is None:
        return {**out, "ok": False, "error": str(batch), "frames": np.zeros((1, 1), np.float32),
                "duration_s": 0.0, "fps": 0.0, "width": 0, "height": 0, "timestamps_s": np.zeros(0)}
    info = sampled.info
    return {**out, "ok": True, "error": "", "frames": batch.numpy().reshape(len(batch), -1),
            "duration_s": float(info.duration_s), "fps": float(info.fps), "width": int(info.width),
            "height": int(info.height), "timestamps_s": np.asarray(sampled.timestamps_s, np.float64)}


class _EncodeActor:
    """Ray Data actor: loads the encoder once, then encodes batches of rows (the local mapper)."""

    def __init__(self, encoder_kwargs: dict, device: str, batch_size: int, expected: dict):
        from embeddings.encoders.open_clip import load_encoder

        self.encoder = load_encoder(**{**encoder_kwargs, "device": device})
        got = {k: v for k, v in self.encoder.describe().items() if k != "device"}
        want = {k: v for k, v in expected.items() if k != "device"}
        if got != want:
            raise RuntimeError(f"an encoder actor built {got}, the driver {want}; every node needs the same "
                               "model files and library versions")
        self.batch_size = int(batch_size)
        self.shape = (3, *self.encoder.image_size)

    def __call__(self, batch: dict) -> dict:
        import ray
        import torch

        rows = [np.asarray(f, np.float32) for f in batch["frames"]]
        ok = np.asarray(batch["ok"], bool)
        parts = [r.reshape(-1, *self.shape) for r, good in zip(rows, ok, strict=True) if good]
        t0 = time.perf_counter()
        d = int(self.encoder.embed_dim)
        if parts:
            x = torch.from_numpy(np.concatenate(parts))
            emb = np.concatenate([self.encoder.encode_preprocessed(x[s:s + self.batch_size])
                                  for s in range(0, len(x), self.batch_size)])
        else:
            emb = np.zeros((0, d), np.float32)
        dt = time.perf_counter() - t0
        out, s = [], 0
        for r, good in zip(rows, ok, strict=True):
            n = r.shape[0] if good else 0
            out.append(emb[s:s + n] if n else np.zeros((1, d), np.float32))
            s += n
        res = {k: v for k, v in batch.items() if k != "frames"}
        res["emb"] = out
        res["encode_s"] = np.full(len(rows), dt / max(1, len(rows)))
        res["n_enc"] = np.array([r.shape[0] if good else 0 for r, good in zip(rows, ok, strict=True)])
        res["node"] = np.array([ray.get_runtime_context().get_node_id()] * len(rows))
        return res


def run_embedding_job_ray(
    inputs: pd.DataFrame,
    encoder_kwargs: dict,
    out_dir: str | os.PathLike,
    *,
    sampler: FrameSampler | None = None,
    shard_size: int = 256,
    batch_size: int = 64,
    num_encoders: int = 1,
    max_side: int | None = 256,
    storage_dtype: str = "float32",
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
) -> RayJobSummary:
    """Embed a catalog on a Ray cluster into an embedding folder; resume an interrupted run.

    Parameters
    ----------
    inputs : pandas.DataFrame
        From :func:`embeddings.video.catalog.discover_inputs` (``video_id`` unique, ``path``, ``caption``).
    encoder_kwargs : dict
        Keyword arguments of :func:`embeddings.encoders.open_clip.load_encoder` (``model``, ``pretrained``,
        ``device``, ``precision``, ``seed``). The driver loads the encoder once (its description
        and preprocessing); every actor loads it again on its own device, so a checkpoint path must
        exist on every node.
    out_dir : path-like
        Embedding folder (layout in :mod:`embeddings.store`), written by the driver.
    sampler : FrameSampler or None
        Frame sampling; None means uniform 8 frames.
    shard_size : int
        Inputs per shard (the same plan as the local job, so local and Ray runs resume each other).
    batch_size : int
        Frames per encoder call inside an actor.
    num_encoders : int
        Encoder actors (each takes one GPU when the cluster has GPUs and ``device`` allows).
    max_side : int or None
        Decode-time downscale, pixels (see :func:`embeddings.job.run_embedding_job`).
    storage_dtype : {"float32", "float16"}
    address : str or None
        Ray cluster address; None starts a local Ray for this call (or uses the one already
        initialised in this process).
    num_cpus : int or None
        CPUs of a local Ray (None: all).
    progress : bool
        Ray Data progress bars.

    Returns
    -------
    RayJobSummary
        As the local job's, plus ``encoder_nodes`` (inputs encoded per Ray node);
        ``seconds["read"]`` and ``["encode"]`` are summed over workers, ``read_wait`` is 0
        (not measured: readers and encoders overlap on different workers).

    Raises
    ------
    ValueError
        Bad sizes, ``storage_dtype``, or ``inputs`` (missing columns, repeated ``video_id``).
    EmbeddingFolderError
        ``out_dir`` holds a job with other inputs or settings.
    RuntimeError
        CUDA asked for on a cluster without GPUs; an actor's encoder differs from the driver's.
    RayUnavailableError
        Ray is not installed.
    """
    for name, value in (("shard_size", shard_size), ("batch_size", batch_size), ("num_encoders", num_encoders)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype={storage_dtype!r}: expected one of {STORAGE_DTYPES}")
    if not {"video_id", "path"} <= set(inputs.columns):
        raise ValueError(f"inputs needs columns video_id and path, got {list(inputs.columns)}; use discover_inputs()")
    if inputs["video_id"].duplicated().any():
        dup = inputs["video_id"][inputs["video_id"].duplicated()].tolist()[:5]
        raise ValueError(f"inputs repeats video_id {dup}; ids must be unique")
    sampler = sampler or FrameSampler("uniform", n_frames=8)
    from embeddings.encoders.open_clip import load_encoder

    t_start = time.perf_counter()
    out = Path(out_dir)
    with ray_session(address, num_cpus=num_cpus, progress=progress) as ray:
        actor_device, gpus = encoder_placement(str(encoder_kwargs.get("device", "auto")),
                                               ray.cluster_resources().get("GPU", 0))
        encoder = load_encoder(**{**encoder_kwargs, "device": "cpu" if actor_device == "cpu" else
                                  encoder_kwargs.get("device", "auto")})
        enc = {**encoder.describe(), "device": actor_device}
        settings = check_job_folder(out, inputs, enc, sampler, shard_size, max_side, storage_dtype)
        plan, todo = plan_shards(out, inputs, shard_size)
        summary = RayJobSummary(n_inputs=len(inputs), batch_size=int(batch_size),
                             n_shards_skipped=len(plan) - len(todo))
        log.info("embedding %d inputs in %d shard(s) (%d to do) on Ray: %d encoder actor(s) on %s",
                 len(inputs), len(plan), len(todo), num_encoders, actor_device)
        if todo:
            _run(ray, plan, todo, encoder, encoder_kwargs, enc, actor_device, gpus, sampler, max_side,
                 batch_size, num_encoders, out, storage_dtype, summary)
    summary.errors = finish_job(out, len(plan), enc, settings, len(inputs), storage_dtype)
    summary.seconds["total"] = time.perf_counter() - t_start
    log.info("summary (ray): %d embedded, %d skipped, %d shard(s) finished earlier; %d frames; total %.2fs",
             summary.n_embedded, summary.n_failed, summary.n_shards_skipped, summary.n_frames,
             summary.seconds["total"])
    return summary


def _run(ray, plan, todo, encoder, encoder_kwargs, enc, actor_device, gpus, sampler, max_side, batch_size,
         num_encoders, out, storage_dtype, summary) -> None:
    rows = [{"shard": i, "pos": j, "path": str(p)} for i in todo for j, p in enumerate(plan[i]["path"])]
    per_clip = sampler.n_frames if sampler.strategy == "uniform" else (sampler.max_frames or 8)
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), 64))
    # readers are their own CPU tasks (0.5 CPU each, so Ray does not fuse them into the encoder actors,
    # which would serialise decoding and encoding inside each actor)
    ds = ds.map(_read_row, fn_kwargs={"sampler": sampler, "max_side": max_side, "transform": encoder.transform},
                num_cpus=0.5)
    ds = ds.map_batches(_EncodeActor, fn_constructor_kwargs={
        "encoder_kwargs": encoder_kwargs, "device": actor_device, "batch_size": batch_size, "expected": enc},
        batch_size=max(1, batch_size // max(1, per_clip)), batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_encoders), num_gpus=gpus,
        num_cpus=actor_cpus(ray.cluster_resources().get("CPU", 1), num_encoders))
    columns = {"model": enc["model"], "pretrained": enc["pretrained"], "precision": enc["precision"],
               "sampling": sampler.strategy}
    pending: dict[int, dict] = {}
    nodes: Counter = Counter()
    for row in ds.iter_rows():
        i = int(row["shard"])
        pending.setdefault(i, {})[int(row["pos"])] = row
        if len(pending[i]) < len(plan[i]):
            continue
        got = pending.pop(i)
        nodes.update(str(r["node"]) for r in got.values())
        records, embs, offset, k = [], [], 0, 0
        for pos, rec in enumerate(plan[i].to_dict("records")):
            r = got[pos]
            summary.seconds["read"] += float(r["read_s"])
            summary.seconds["encode"] += float(r["encode_s"])
            if not r["ok"]:
                log.warning("skipping %s: %s", rec["path"], r["error"])
                records.append(shard_record(rec, None, str(r["error"]), offset, k, columns))
                summary.n_failed += 1
                continue
            n = int(r["n_enc"])
            info = SimpleNamespace(duration_s=r["duration_s"], fps=r["fps"], width=r["width"], height=r["height"])
            sampled = SimpleNamespace(info=info, timestamps_s=list(r["timestamps_s"]))
            records.append(shard_record(rec, sampled, n, offset, k, columns))
            embs.append(np.asarray(r["emb"], np.float32).reshape(n, -1))
            offset += n
            k += 1
        frame_emb = np.concatenate(embs) if embs else np.zeros((0, int(enc["embed_dim"])), np.float32)
        t0 = time.perf_counter()
        write_shard(out, i, records, frame_emb, storage_dtype)
        summary.seconds["write"] += time.perf_counter() - t0
        summary.n_embedded += k
        summary.n_frames += int(frame_emb.shape[0])
        log.info("shard %d written: %d videos, %d frames", i, k, frame_emb.shape[0])
    summary.encoder_nodes = dict(nodes)
    if len(nodes) > 1:
        log.info("inputs encoded per Ray node: %s", dict(nodes))
    if pending:  # cannot happen unless Ray lost rows; never write a partial shard
        raise RuntimeError(f"Ray returned incomplete shards {sorted(pending)}; rerun to redo them")
