"""The batch embedding job: reader -> mapper -> writer, sharded, streaming and resumable.

* **reader** (a pool of worker threads or processes): decode one file, sample frames with a
  :class:`embeddings.video.sampling.FrameSampler`, preprocess them into the encoder's input
  (:class:`embeddings.encoders.preprocess.FrameTransform`: PIL resize and crop, numpy normalisation, so
  no reader thread starts torch threads of its own). PyAV, PIL and numpy release the GIL while
  decoding, resizing and normalising, so threads overlap with encoding; ``executor="process"`` runs
  readers in spawned processes instead.
  At most ``prefetch`` inputs are in flight, so memory does not grow with the catalog.
* **mapper**: :meth:`embeddings.encoders.open_clip.ClipEncoder.encode_preprocessed` on batches of
  ``batch_size`` frames, gathered across inputs; it knows nothing of files.
* **writer**: one shard of ``.npy`` + Parquet at a time, each file written to a temporary name and
  renamed; the shard's Parquet is written last, so a shard is finished exactly when its Parquet
  exists. A job killed at any point and rerun with the same command skips finished shards and
  redoes the unfinished one, so every input ends with exactly one row.

Per batch the log (INFO) reports how long the encoder waited for readers, how long it encoded and
its frames/s; per shard the write time; at the end a summary.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections import Counter, deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from embeddings._io import save_npy, write_json, write_parquet
from embeddings.encoders.open_clip import pool_frames
from embeddings.encoders.preprocess import FrameTransform
from embeddings.store import (
    SHARD_DIR,
    STORAGE_DTYPES,
    EmbeddingFolderError,
    shard_name,
    write_manifest,
)
from embeddings.video.catalog import CatalogError, discover_inputs, inputs_fingerprint
from embeddings.video.decode import VideoDecodeError
from embeddings.video.sampling import FrameSampler

log = logging.getLogger(__name__)

__all__ = ["discover_inputs", "run_embedding_job", "JobSummary", "CatalogError", "EXECUTORS"]

EXECUTORS = ("thread", "process")
META_COLUMNS = ["video_id", "path", "caption", "duration_s", "fps", "width", "height", "n_frames",
                "frame_offset", "frame_timestamps_s", "row", "error", "model", "pretrained", "precision",
                "sampling"]


@dataclass
class JobSummary:
    """What an embedding job did.

    Attributes
    ----------
    n_inputs, n_embedded, n_failed, n_frames : int
        Inputs planned, inputs embedded in this run, inputs skipped with an error in this run,
        frames encoded in this run.
    n_shards_skipped : int
        Shards already finished by an earlier run (resume) and not redone.
    batch_size : int
        Frames per encoder call (chosen by :func:`embeddings.encoders.batch_size.choose_batch_size` when
        not given).
    seconds : dict
        Seconds per stage in this run: ``read`` (decode + preprocess, summed over workers, so it
        can exceed ``total``), ``read_wait`` (the encoder waiting for readers: decoding that was
        *not* hidden), ``encode``, ``write`` and ``total`` (wall).
    errors : pandas.DataFrame
        ``video_id, path, error`` for every skipped input (all runs).
    """

    n_inputs: int = 0
    n_embedded: int = 0
    n_failed: int = 0
    n_frames: int = 0
    n_shards_skipped: int = 0
    batch_size: int = 0
    seconds: dict = field(default_factory=lambda: dict.fromkeys(
        ("read", "read_wait", "encode", "write", "total"), 0.0))
    errors: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["video_id", "path", "error"]))

    def skipped_reasons(self) -> dict:
        """Count of skipped inputs per reason (text before the first colon), all runs."""
        return dict(Counter(str(e).split(":")[0] for e in self.errors["error"]))

    def to_dict(self) -> dict:
        """JSON-ready form (errors as a list of records)."""
        return {"n_inputs": self.n_inputs, "n_embedded": self.n_embedded, "n_failed": self.n_failed,
                "n_frames_encoded": self.n_frames, "n_shards_skipped": self.n_shards_skipped,
                "batch_size": self.batch_size, "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "skipped_reasons": self.skipped_reasons(), "errors": self.errors.to_dict("records")}


def read_input(path: str, sampler: FrameSampler, max_side: int | None, transform):
    """Reader task: decode + sample + preprocess one input (runs in a worker thread or process).

    ``transform`` is the encoder's per-image transform or a :class:`FrameTransform` made from it
    (build it once: the job does); either way the frames are preprocessed by a ``FrameTransform``,
    which runs no torch op on the reader's thread when it can (see :mod:`embeddings.encoders.preprocess`).

    Returns ``(sampled, batch, seconds)`` with ``batch`` a float32 tensor (n, 3, S, S), or
    ``(None, reason, seconds)`` when the input cannot be used (the reason is recorded).
    """
    if not isinstance(transform, FrameTransform):
        transform = FrameTransform(transform)
    t0 = time.perf_counter()
    try:
        sampled = sampler.sample(path, max_side=max_side, min_short=transform.input_short_side)
        batch = transform(sampled.frames)
    except VideoDecodeError as e:
        return None, e.reason, time.perf_counter() - t0
    except (OSError, ValueError, RuntimeError) as e:  # recorded, never silent: the row keeps the reason
        return None, f"unreadable: {type(e).__name__}: {e}", time.perf_counter() - t0
    sampled.frames = sampled.frames[:0]  # keep the shape, drop the pixels: results stay small
    return sampled, batch, time.perf_counter() - t0


def _make_executor(kind: str, workers: int) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reader")
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def run_embedding_job(
    inputs: pd.DataFrame,
    encoder,
    out_dir: str | os.PathLike,
    *,
    n_frames: int = 8,
    sampler: FrameSampler | None = None,
    shard_size: int = 256,
    batch_size: int | None = 64,
    num_workers: int = 2,
    executor: str = "thread",
    prefetch: int | None = None,
    max_side: int | None = 256,
    storage_dtype: str = "float32",
    progress: bool = True,
) -> JobSummary:
    """Embed every input of a catalog into an embedding folder; resume an interrupted run.

    Parameters
    ----------
    inputs : pandas.DataFrame
        From :func:`discover_inputs`: ``video_id`` (unique str), ``path``, ``caption``, extra columns.
    encoder : embeddings.encoders.open_clip.ClipEncoder
        The mapper: needs ``transform``, ``encode_preprocessed`` and ``describe``.
    out_dir : path-like
        Embedding folder (layout in :mod:`embeddings.store`).
    n_frames : int
        Frames per clip for the default uniform sampling; ignored when ``sampler`` is given
        (pass ``FrameSampler("uniform", n_frames=...)`` instead; both at once is an error).
    sampler : FrameSampler or None
        Frame sampling strategy (uniform, fps, keyframes, shots); None means uniform ``n_frames``.
    shard_size : int
        Inputs per shard.
    batch_size : int or None
        Frames per encoder call; None chooses one that fits memory
        (:func:`embeddings.encoders.batch_size.choose_batch_size`).
    num_workers : int
        Reader workers that decode and preprocess while the encoder runs.
    executor : str
        ``"thread"`` (default) or ``"process"`` (spawned processes) for the readers. Threads were
        faster on the 2-core test machine (``benchmarks/bench_embed.py``, ViT-B-32 fp32: 1.9 vs
        1.0 frames/s end to end): PyAV, PIL and torch release the GIL, while processes pay a
        spawn + torch import per worker and pickle every preprocessed batch back.
    prefetch : int or None
        Inputs in flight (read ahead of the encoder); None means ``max(4 * num_workers, 16)``.
        Memory is bounded by ``prefetch`` inputs of preprocessed frames plus one shard of
        embeddings, whatever the catalog size.
    max_side : int or None
        Frames are downscaled while decoding so their longer side is at most this many pixels
        (the encoder resizes to its own input size anyway); None keeps the source size.
    storage_dtype : str
        ``"float32"`` or ``"float16"`` for the stored ``.npy`` shards (vectors are computed and
        normalised in float32; :class:`embeddings.store.EmbeddingFolder` reads back float32).
    progress : bool
        Show a tqdm progress bar (videos per second and ETA).

    Returns
    -------
    JobSummary

    Raises
    ------
    ValueError
        If ``n_frames``, ``shard_size``, ``batch_size``, ``num_workers`` or ``prefetch`` is below 1,
        ``executor`` or ``storage_dtype`` is unknown, ``n_frames`` and ``sampler`` are both given,
        or ``inputs`` lacks ``video_id``/``path`` or repeats a ``video_id``.
    EmbeddingFolderError
        If ``out_dir`` holds a job with other inputs or settings (use a new folder).

    Notes
    -----
    A file that cannot be decoded (missing, zero-byte, truncated, audio-only, not a video) is
    recorded with its reason in the shard metadata and ``errors.parquet`` and skipped; the job
    goes on.
    """
    for name, value in (("n_frames", n_frames), ("shard_size", shard_size), ("num_workers", num_workers),
                        ("batch_size", 1 if batch_size is None else batch_size),
                        ("prefetch", 1 if prefetch is None else prefetch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r}: expected one of {EXECUTORS}")
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype={storage_dtype!r}: expected one of {STORAGE_DTYPES}")
    if sampler is None:
        sampler = FrameSampler("uniform", n_frames=int(n_frames))
    elif n_frames != 8:
        raise ValueError(f"n_frames={n_frames!r} and sampler={sampler!r} were both given; pass "
                         "FrameSampler('uniform', n_frames=...) alone")
    if not {"video_id", "path"} <= set(inputs.columns):
        raise ValueError(f"inputs needs columns video_id and path, got {list(inputs.columns)}; use discover_inputs()")
    if inputs["video_id"].duplicated().any():
        dup = inputs["video_id"][inputs["video_id"].duplicated()].tolist()[:5]
        raise ValueError(f"inputs repeats video_id {dup}; ids must be unique")
    if batch_size is None:
        from embeddings.encoders.batch_size import choose_batch_size

        batch_size = choose_batch_size(encoder)
    prefetch = int(prefetch) if prefetch is not None else max(4 * int(num_workers), 16)

    out = Path(out_dir)
    enc = encoder.describe()
    settings = check_job_folder(out, inputs, enc, sampler, shard_size, max_side, storage_dtype)

    summary = JobSummary(n_inputs=len(inputs), batch_size=int(batch_size))
    t_start = time.perf_counter()
    plan, todo = plan_shards(out, inputs, shard_size)
    n_shards = len(plan)
    summary.n_shards_skipped = n_shards - len(todo)
    if summary.n_shards_skipped:
        log.info("resuming %s: %d of %d shards already finished", out, summary.n_shards_skipped, n_shards)
    log.info("embedding %d inputs in %d shard(s) (%d to do): %s %s, batch %d, %d %s reader(s), prefetch %d",
             len(inputs), n_shards, len(todo), enc["model"], enc["precision"], batch_size, num_workers,
             executor, prefetch)

    bar = tqdm(total=len(inputs), unit="video", desc="embed", disable=None if progress else True,
               initial=sum(len(plan[i]) for i in range(n_shards) if i not in todo))
    columns = {"model": enc["model"], "pretrained": enc["pretrained"], "precision": enc["precision"],
               "sampling": sampler.strategy}
    transform = FrameTransform(encoder.transform)  # split once; no torch threads in the readers
    with _make_executor(executor, int(num_workers)) as pool:
        paths = iter([(i, p) for i in todo for p in plan[i]["path"]])
        window: deque = deque()

        def results():
            """Reader results in input order, at most ``prefetch`` in flight."""
            while True:
                while len(window) < prefetch:
                    nxt = next(paths, None)
                    if nxt is None:
                        break
                    window.append(pool.submit(read_input, nxt[1], sampler, max_side, transform))
                if not window:
                    return
                fut = window.popleft()
                t0 = time.perf_counter()
                res = fut.result()
                yield res, time.perf_counter() - t0

        stream = results()
        batcher = _Batcher(encoder, int(batch_size), summary)
        for i in todo:
            _run_shard(i, plan[i], stream, batcher, out, storage_dtype, columns, summary, bar)
    bar.close()

    summary.errors = finish_job(out, n_shards, enc, settings, len(inputs), storage_dtype)
    summary.seconds["total"] = time.perf_counter() - t_start
    s = summary.seconds
    log.info("summary: %d embedded, %d skipped in this run (%d shard(s) finished earlier); %d frames; "
             "skipped by reason (all runs) %s; seconds: read %.2f (summed over workers), waiting for "
             "readers %.2f, encode %.2f, write %.2f, total %.2f (%.1f frames/s)",
             summary.n_embedded, summary.n_failed, summary.n_shards_skipped, summary.n_frames,
             summary.skipped_reasons(), s["read"], s["read_wait"], s["encode"], s["write"], s["total"],
             summary.n_frames / s["total"] if s["total"] else 0.0)
    return summary


class _Batcher:
    """Gathers preprocessed frames across inputs and encodes them ``batch_size`` at a time."""

    def __init__(self, encoder, batch_size: int, summary: JobSummary):
        self.encoder, self.batch_size, self.summary = encoder, batch_size, summary
        self.parts: list = []
        self.n = 0
        self.out: list[np.ndarray] = []
        self.wait = 0.0
        self.k = 0

    def add(self, batch, wait_s: float) -> None:
        self.parts.append(batch)
        self.n += int(batch.shape[0])
        self.wait += wait_s
        while self.n >= self.batch_size:
            self._encode(self.batch_size)

    def flush(self) -> np.ndarray:
        """Encode what is left; return and forget every embedding gathered so far (input order)."""
        if self.n:
            self._encode(self.n)
        d = int(self.encoder.describe()["embed_dim"])
        emb = np.concatenate(self.out) if self.out else np.zeros((0, d), np.float32)
        self.out = []
        return emb

    def _encode(self, n: int) -> None:
        import torch

        x = torch.cat(self.parts) if len(self.parts) > 1 else self.parts[0]
        take, rest = x[:n], x[n:]
        self.parts, self.n = ([rest] if len(rest) else []), int(len(rest))
        t0 = time.perf_counter()
        self.out.append(self.encoder.encode_preprocessed(take))
        dt = time.perf_counter() - t0
        self.k += 1
        self.summary.seconds["encode"] += dt
        self.summary.seconds["read_wait"] += self.wait
        self.summary.n_frames += n
        log.info("batch %d: %d frames; waited for readers %.3fs, encode %.3fs (%.1f frames/s)",
                 self.k, n, self.wait, dt, n / dt if dt else 0.0)
        self.wait = 0.0


def _run_shard(i: int, shard: pd.DataFrame, stream, batcher: _Batcher, out: Path, storage_dtype: str,
               columns: dict, summary: JobSummary, bar) -> None:
    """Encode one shard's inputs (reader results from ``stream``) and write it (Parquet last)."""
    records, offset, row, read_s = [], 0, 0, 0.0
    for rec in shard.to_dict("records"):
        (sampled, batch, secs), wait = next(stream)
        read_s += secs
        if sampled is None:
            log.warning("skipping %s: %s", rec["path"], batch)
            records.append(shard_record(rec, None, batch, offset, row, columns))
            summary.n_failed += 1
            batcher.wait += wait
        else:
            n = int(batch.shape[0])
            records.append(shard_record(rec, sampled, n, offset, row, columns))
            batcher.add(batch, wait)
            offset += n
            row += 1
        bar.update(1)
    frame_emb = batcher.flush()
    t1 = time.perf_counter()
    write_shard(out, i, records, frame_emb, storage_dtype)
    t2 = time.perf_counter()
    summary.seconds["read"] += read_s
    summary.seconds["write"] += t2 - t1
    summary.n_embedded += row
    log.info("shard %s: %d videos, %d frames, %d skipped; read %.2fs (worker-summed), write %.2fs",
             shard_name(i), row, frame_emb.shape[0], len(records) - row, read_s, t2 - t1)


# --- the job's pure pieces, shared with the Ray engine (embeddings.ray_engine) -------------------

def check_job_folder(out: Path, inputs: pd.DataFrame, enc: dict, sampler: FrameSampler, shard_size: int,
                     max_side: int | None, storage_dtype: str) -> dict:
    """Create ``out`` or check that it holds the same job; remove a killed run's temporary files.

    Writes ``job.json`` (encoder, settings, input count and fingerprint) on the first run.
    Returns the ``settings`` dict recorded in ``job.json`` and the manifest.

    Raises
    ------
    EmbeddingFolderError
        If ``out`` holds a job with other inputs or settings (use a new folder).
    """
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    settings = {"sampling": sampler.describe(), "shard_size": int(shard_size), "max_side": max_side,
                "max_side_floor": "encoder_resize",  # the shorter side is never decoded below the encoder's resize
                "pooling": "mean", "storage_dtype": storage_dtype}
    job = {"encoder": enc, "settings": settings, "n_inputs": len(inputs), "inputs_sha256": inputs_fingerprint(inputs)}
    jpath = out / "job.json"
    if jpath.exists():
        old = json.loads(jpath.read_text(encoding="utf-8"))
        if old != json.loads(json.dumps(job)):
            diff = [k for k in job if old.get(k) != json.loads(json.dumps(job[k]))]
            raise EmbeddingFolderError(
                f"{out} holds an embedding job with different {diff}; a resumed job must use the same inputs and "
                "settings. Use a new --out folder, or delete this one to start over.")
    else:
        write_json(jpath, job)
    for stale in (out / SHARD_DIR).glob(".*.tmp"):  # temporary files of a killed run
        stale.unlink(missing_ok=True)
    return settings


def plan_shards(out: Path, inputs: pd.DataFrame, shard_size: int) -> tuple[list[pd.DataFrame], list[int]]:
    """Shard ``i`` is ``inputs[i*shard_size:(i+1)*shard_size]``; return ``(plan, todo)``.

    ``todo`` lists the shards whose Parquet does not exist yet (unfinished), ascending.
    """
    n_shards = max(1, -(-len(inputs) // shard_size))
    plan = [inputs.iloc[i * shard_size:(i + 1) * shard_size] for i in range(n_shards)]
    todo = [i for i in range(n_shards) if not (out / SHARD_DIR / f"{shard_name(i)}.parquet").exists()]
    return plan, todo


def shard_record(rec: dict, sampled, n_frames_or_error, offset: int, row: int, columns: dict) -> dict:
    """One shard Parquet row for input ``rec`` (a row of the inputs table).

    ``sampled`` is the reader's :class:`embeddings.video.decode.SampledFrames` (frames may be dropped) and
    ``n_frames_or_error`` the number of frames encoded; for a failed input ``sampled`` is None and
    ``n_frames_or_error`` the reason. ``offset`` is the first row in the shard's ``.frames.npy`` and
    ``row`` the row in its ``.npy``; ``columns`` the per-job model/precision/sampling columns.
    """
    base = {"video_id": rec["video_id"], "path": rec["path"], "caption": rec.get("caption")}
    extra = {k: v for k, v in rec.items() if k not in base}
    if sampled is None:
        return {**base, "duration_s": None, "fps": None, "width": None, "height": None, "n_frames": 0,
                "frame_offset": -1, "frame_timestamps_s": [], "row": -1, "error": n_frames_or_error,
                **columns, **extra}
    info = sampled.info
    return {**base, "duration_s": float(info.duration_s), "fps": float(info.fps),
            "width": int(info.width), "height": int(info.height), "n_frames": int(n_frames_or_error),
            "frame_offset": offset, "frame_timestamps_s": [float(t) for t in sampled.timestamps_s],
            "row": row, "error": None, **columns, **extra}


def write_shard(out: Path, i: int, records: list[dict], frame_emb: np.ndarray, storage_dtype: str) -> None:
    """The writer: pool each input's frames and write shard ``i`` (``.npy``, ``.frames.npy``, Parquet last).

    ``records`` come from :func:`shard_record` in input order; ``frame_emb`` is float32
    ``(sum of n_frames, d)`` in the same order. Every file is written atomically; the Parquet is
    written last, so the shard counts as finished exactly when it exists.
    """
    d = frame_emb.shape[1]
    n_ok = sum(1 for r in records if r["row"] >= 0)
    videos = np.zeros((n_ok, d), np.float32)
    for r in records:
        if r["row"] >= 0:
            videos[r["row"]] = pool_frames(frame_emb[r["frame_offset"]:r["frame_offset"] + r["n_frames"]])
    stem = out / SHARD_DIR / shard_name(i)
    save_npy(f"{stem}.npy", videos.astype(storage_dtype))
    save_npy(f"{stem}.frames.npy", frame_emb.astype(storage_dtype))
    meta = pd.DataFrame.from_records(records)
    meta = meta[META_COLUMNS + [c for c in meta.columns if c not in META_COLUMNS]]
    write_parquet(f"{stem}.parquet", meta)  # last: its presence marks the shard finished


def finish_job(out: Path, n_shards: int, enc: dict, settings: dict, n_inputs: int,
               storage_dtype: str) -> pd.DataFrame:
    """Write ``errors.parquet`` and ``manifest.json`` once every shard is finished; return the errors.

    Returns ``video_id, path, error`` for every skipped input (all runs).
    """
    shards, metas = [], []
    for i in range(n_shards):
        meta = pd.read_parquet(out / SHARD_DIR / f"{shard_name(i)}.parquet")
        metas.append(meta)
        shards.append({"name": shard_name(i), "n_inputs": len(meta), "n_ok": int((meta["row"] >= 0).sum()),
                       "n_frames": int(meta.loc[meta["row"] >= 0, "n_frames"].sum())})
    allmeta = pd.concat(metas, ignore_index=True)
    errors = allmeta.loc[allmeta["error"].notna(), ["video_id", "path", "error"]].reset_index(drop=True)
    write_parquet(out / "errors.parquet", errors)
    write_manifest(out, {
        "encoder": enc, "settings": settings, "n_inputs": n_inputs,
        "n_videos": int((allmeta["row"] >= 0).sum()), "n_errors": len(errors),
        "random_weights": bool(enc.get("random_weights", False)), "shards": shards,
        "storage_dtype": storage_dtype, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return errors
