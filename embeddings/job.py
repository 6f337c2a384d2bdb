"""The batch embedding job: reader -> mapper -> writer, sharded and resumable.

* **reader** (worker threads): decode a file, sample frames by seeking, preprocess them for the
  encoder. PyAV and PIL release the GIL while decoding and resizing, so threads overlap with
  encoding.
* **mapper**: :meth:`embeddings.encoders.ClipEncoder.encode_preprocessed` on batches of frames;
  it knows nothing of files.
* **writer**: one shard of ``.npy`` + Parquet at a time, each file written to a temporary name and
  renamed; the shard's Parquet is written last, so a shard is finished exactly when its Parquet
  exists. A job killed at any point and rerun with the same command skips finished shards and
  redoes the unfinished one, so every input ends with exactly one row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from embeddings._io import save_npy, write_json, write_parquet
from embeddings.encoders import pool_frames
from embeddings.store import SHARD_DIR, EmbeddingFolderError, shard_name, write_manifest
from embeddings.video import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    list_media,
    sample_frames,
)

log = logging.getLogger(__name__)

__all__ = ["discover_inputs", "run_embedding_job", "JobSummary", "CatalogError"]

META_COLUMNS = ["video_id", "path", "caption", "duration_s", "fps", "width", "height", "n_frames",
                "frame_offset", "frame_timestamps_s", "row", "error"]


class CatalogError(ValueError):
    """A catalog folder or captions file cannot be used as given."""


def discover_inputs(video_dir: str | os.PathLike, captions: str | os.PathLike | None = None) -> pd.DataFrame:
    """List the media of a catalog and join their captions.

    Parameters
    ----------
    video_dir : path-like
        Folder searched recursively for videos and still images (extensions in
        ``embeddings.video.VIDEO_EXTENSIONS`` and ``IMAGE_EXTENSIONS``).
    captions : path-like, optional
        CSV with columns ``video_id,path,caption`` (``caption`` optional); ``path`` is absolute or
        relative to ``video_dir`` (else to the CSV's folder). Extra columns are kept as metadata.
        Rows whose file does not exist are kept, so that the job records them as missing.

    Returns
    -------
    pandas.DataFrame
        One row per input: ``video_id`` (str, unique), ``path`` (str), ``caption`` (str or None),
        then the extra caption columns. Files without a caption row get ``video_id`` = their
        path relative to ``video_dir`` without extension (with it, if two files share a stem).
        Sorted by ``video_id`` so shards are stable across runs.

    Raises
    ------
    CatalogError
        If ``video_dir`` is not a folder, the captions file lacks ``video_id`` or ``path``,
        repeats a ``video_id``, or the catalog holds no media at all.
    """
    root = Path(video_dir)
    if not root.is_dir():
        raise CatalogError(f"video folder {root} does not exist or is not a folder; pass the folder holding the clips")
    files = list_media(root, VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)
    rows: dict[str, dict] = {}
    by_path: dict[str, str] = {}
    if captions is not None:
        cpath = Path(captions)
        if not cpath.is_file():
            raise CatalogError(f"captions file {cpath} does not exist; pass a CSV with columns video_id,path,caption")
        df = pd.read_csv(cpath, dtype=str, keep_default_na=False)
        missing = [c for c in ("video_id", "path") if c not in df.columns]
        if missing:
            raise CatalogError(
                f"captions file {cpath} lacks column(s) {missing}; expected video_id,path,caption "
                f"(found {list(df.columns)})")
        dup = df["video_id"][df["video_id"].duplicated()].tolist()
        if dup:
            raise CatalogError(f"captions file {cpath} repeats video_id {dup[:5]}; ids must be unique")
        for rec in df.to_dict("records"):
            p = Path(rec["path"])
            if not p.is_absolute():
                p = root / p if (root / p).exists() or not (cpath.parent / p).exists() else cpath.parent / p
            rec["path"] = str(p.resolve()) if p.exists() else str(p)
            rec["caption"] = rec.get("caption") or None
            rows[rec["video_id"]] = rec
            by_path[rec["path"]] = rec["video_id"]
    stems: dict[str, int] = {}
    for f in files:
        rel = f.relative_to(root).with_suffix("").as_posix()
        stems[rel] = stems.get(rel, 0) + 1
    for f in files:
        key = str(f.resolve())
        if key in by_path:
            continue
        rel = f.relative_to(root)
        vid = rel.with_suffix("").as_posix()
        if stems[vid] > 1 or vid in rows:
            vid = rel.as_posix()
        rows[vid] = {"video_id": vid, "path": key, "caption": None}
    if not rows:
        raise CatalogError(
            f"no videos or images found under {root} (looked for {sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)})")
    out = pd.DataFrame(list(rows.values()))
    cols = ["video_id", "path", "caption"] + [c for c in out.columns if c not in ("video_id", "path", "caption")]
    return out[cols].sort_values("video_id", kind="stable").reset_index(drop=True)


@dataclass
class JobSummary:
    """What an embedding job did.

    Attributes
    ----------
    n_inputs, n_embedded, n_failed, n_frames : int
        Inputs planned, inputs with an embedding, inputs skipped with an error, frames encoded
        in this run.
    n_shards_skipped : int
        Shards already finished by an earlier run (resume) and not redone.
    seconds : dict
        Wall seconds per stage in this run: ``read`` (summed over worker threads), ``encode``,
        ``write`` and ``total``.
    errors : pandas.DataFrame
        ``video_id, path, error`` for every skipped input (all runs).
    """

    n_inputs: int = 0
    n_embedded: int = 0
    n_failed: int = 0
    n_frames: int = 0
    n_shards_skipped: int = 0
    seconds: dict = field(default_factory=lambda: {"read": 0.0, "encode": 0.0, "write": 0.0, "total": 0.0})
    errors: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["video_id", "path", "error"]))

    def to_dict(self) -> dict:
        """JSON-ready form (errors as a list of records)."""
        return {"n_inputs": self.n_inputs, "n_embedded": self.n_embedded, "n_failed": self.n_failed,
                "n_frames_encoded": self.n_frames, "n_shards_skipped": self.n_shards_skipped,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "errors": self.errors.to_dict("records")}


def _fingerprint(inputs: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for vid, path in zip(inputs["video_id"], inputs["path"], strict=True):
        h.update(f"{vid}\0{path}\n".encode())
    return h.hexdigest()


def _read_one(path: str, n_frames: int, max_side: int | None, preprocess):
    """Reader task: decode + sample + preprocess one input. Returns (sampled, tensor, seconds) or raises."""
    t0 = time.perf_counter()
    sampled = sample_frames(path, n_frames, max_side=max_side)
    batch = preprocess(sampled.frames)
    return sampled, batch, time.perf_counter() - t0


def run_embedding_job(
    inputs: pd.DataFrame,
    encoder,
    out_dir: str | os.PathLike,
    *,
    n_frames: int = 8,
    shard_size: int = 256,
    batch_size: int = 64,
    num_workers: int = 2,
    max_side: int | None = 256,
    progress: bool = True,
) -> JobSummary:
    """Embed every input of a catalog into an embedding folder; resume an interrupted run.

    Parameters
    ----------
    inputs : pandas.DataFrame
        From :func:`discover_inputs`: ``video_id`` (unique str), ``path``, ``caption``, extra columns.
    encoder : embeddings.encoders.ClipEncoder
        The mapper: needs ``preprocess``, ``encode_preprocessed`` and ``describe``.
    out_dir : path-like
        Embedding folder (layout in :mod:`embeddings.store`).
    n_frames : int
        Frames sampled uniformly per clip, by seeking (still images give one frame).
    shard_size : int
        Inputs per shard; memory is bounded by one shard of frames (two with read-ahead).
    batch_size : int
        Frames per encoder call.
    num_workers : int
        Reader threads that decode and preprocess while the encoder runs.
    max_side : int or None
        Frames are downscaled while decoding so their longer side is at most this many pixels
        (the encoder resizes to its own input size anyway); None keeps the source size.
    progress : bool
        Show a tqdm progress bar (videos per second and ETA).

    Returns
    -------
    JobSummary

    Raises
    ------
    ValueError
        If ``n_frames``, ``shard_size``, ``batch_size`` or ``num_workers`` is below 1, or
        ``inputs`` lacks ``video_id``/``path`` or repeats a ``video_id``.
    EmbeddingFolderError
        If ``out_dir`` holds a job with other inputs or settings (use a new folder).

    Notes
    -----
    A file that cannot be decoded (missing, zero-byte, truncated, audio-only, not a video) is
    recorded with its reason in the shard metadata and ``errors.parquet`` and skipped; the job
    goes on.
    """
    for name, value in (("n_frames", n_frames), ("shard_size", shard_size), ("batch_size", batch_size),
                        ("num_workers", num_workers)):
        if int(value) < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    if not {"video_id", "path"} <= set(inputs.columns):
        raise ValueError(f"inputs needs columns video_id and path, got {list(inputs.columns)}; use discover_inputs()")
    if inputs["video_id"].duplicated().any():
        dup = inputs["video_id"][inputs["video_id"].duplicated()].tolist()[:5]
        raise ValueError(f"inputs repeats video_id {dup}; ids must be unique")

    out = Path(out_dir)
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    enc = encoder.describe()
    settings = {"n_frames": int(n_frames), "shard_size": int(shard_size), "max_side": max_side,
                "sampling": "uniform", "pooling": "mean"}
    job = {"encoder": enc, "settings": settings, "n_inputs": len(inputs), "inputs_sha256": _fingerprint(inputs)}
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

    summary = JobSummary(n_inputs=len(inputs))
    t_start = time.perf_counter()
    n_shards = max(1, -(-len(inputs) // shard_size))
    plan = [inputs.iloc[i * shard_size:(i + 1) * shard_size] for i in range(n_shards)]
    todo = [i for i in range(n_shards) if not (out / SHARD_DIR / f"{shard_name(i)}.parquet").exists()]
    summary.n_shards_skipped = n_shards - len(todo)
    if summary.n_shards_skipped:
        log.info("resuming %s: %d of %d shards already finished", out, summary.n_shards_skipped, n_shards)

    bar = tqdm(total=len(inputs), unit="video", desc="embed", disable=not progress,
               initial=sum(len(plan[i]) for i in range(n_shards) if i not in todo))
    with ThreadPoolExecutor(max_workers=int(num_workers), thread_name_prefix="reader") as pool:
        def submit(i: int) -> list[Future]:
            return [pool.submit(_read_one, p, n_frames, max_side, encoder.preprocess) for p in plan[i]["path"]]

        pending = {todo[0]: submit(todo[0])} if todo else {}
        for pos, i in enumerate(todo):
            if pos + 1 < len(todo):  # read ahead one shard while this one encodes
                pending[todo[pos + 1]] = submit(todo[pos + 1])
            _finish_shard(i, plan[i], pending.pop(i), encoder, out, batch_size, summary, bar)
    bar.close()

    shards, metas = [], []
    for i in range(n_shards):
        meta = pd.read_parquet(out / SHARD_DIR / f"{shard_name(i)}.parquet")
        metas.append(meta)
        shards.append({"name": shard_name(i), "n_inputs": len(meta), "n_ok": int((meta["row"] >= 0).sum()),
                       "n_frames": int(meta.loc[meta["row"] >= 0, "n_frames"].sum())})
    allmeta = pd.concat(metas, ignore_index=True)
    errors = allmeta.loc[allmeta["error"].notna(), ["video_id", "path", "error"]].reset_index(drop=True)
    write_parquet(out / "errors.parquet", errors)
    summary.errors = errors
    summary.seconds["total"] = time.perf_counter() - t_start
    write_manifest(out, {
        "encoder": enc, "settings": settings, "n_inputs": len(inputs),
        "n_videos": int((allmeta["row"] >= 0).sum()), "n_errors": len(errors),
        "random_weights": bool(enc.get("random_weights", False)), "shards": shards,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    log.info("embedded %d inputs (%d skipped with errors) into %s: read %.2fs (worker-summed), encode %.2fs, "
             "write %.2fs, total %.2fs", summary.n_embedded, summary.n_failed, out, summary.seconds["read"],
             summary.seconds["encode"], summary.seconds["write"], summary.seconds["total"])
    return summary


def _finish_shard(i, shard: pd.DataFrame, futures: list[Future], encoder, out: Path, batch_size: int,
                  summary: JobSummary, bar) -> None:
    """Collect one shard's reader results, encode them, and write the shard (Parquet last)."""
    import torch

    records, batches, read_s = [], [], 0.0
    frame_offset, row = 0, 0
    for rec, fut in zip(shard.to_dict("records"), futures, strict=True):
        base = {"video_id": rec["video_id"], "path": rec["path"], "caption": rec.get("caption")}
        extra = {k: v for k, v in rec.items() if k not in base}
        try:
            sampled, batch, secs = fut.result()
        except VideoDecodeError as e:
            log.warning("skipping %s: %s", rec["path"], e.reason)
            records.append({**base, "duration_s": None, "fps": None, "width": None, "height": None, "n_frames": 0,
                            "frame_offset": -1, "frame_timestamps_s": [], "row": -1, "error": e.reason, **extra})
            summary.n_failed += 1
            bar.update(1)
            continue
        read_s += secs
        info = sampled.info
        n = int(batch.shape[0])
        records.append({**base, "duration_s": float(info.duration_s), "fps": float(info.fps),
                        "width": int(sampled.frames.shape[2]), "height": int(sampled.frames.shape[1]),
                        "n_frames": n, "frame_offset": frame_offset,
                        "frame_timestamps_s": [float(t) for t in sampled.timestamps_s], "row": row, "error": None,
                        **extra})
        batches.append(batch)
        frame_offset += n
        row += 1
        bar.update(1)

    t0 = time.perf_counter()
    d = int(encoder.describe()["embed_dim"])
    if batches:
        allframes = torch.cat(batches)
        frame_emb = np.concatenate([encoder.encode_preprocessed(allframes[s:s + batch_size])
                                    for s in range(0, len(allframes), batch_size)]).astype(np.float32)
    else:
        frame_emb = np.zeros((0, d), np.float32)
    videos = np.zeros((row, d), np.float32)
    for r in records:
        if r["row"] >= 0:
            videos[r["row"]] = pool_frames(frame_emb[r["frame_offset"]:r["frame_offset"] + r["n_frames"]])
    t1 = time.perf_counter()
    stem = out / SHARD_DIR / shard_name(i)
    save_npy(f"{stem}.npy", videos)
    save_npy(f"{stem}.frames.npy", frame_emb)
    meta = pd.DataFrame.from_records(records)
    meta = meta[META_COLUMNS + [c for c in meta.columns if c not in META_COLUMNS]]
    write_parquet(f"{stem}.parquet", meta)  # last: its presence marks the shard finished
    t2 = time.perf_counter()
    summary.seconds["read"] += read_s
    summary.seconds["encode"] += t1 - t0
    summary.seconds["write"] += t2 - t1
    summary.n_embedded += row
    summary.n_frames += int(frame_emb.shape[0])
    log.info("shard %s: %d videos, %d frames; read %.2fs (worker-summed), encode %.2fs, write %.2fs",
             shard_name(i), row, frame_emb.shape[0], read_s, t1 - t0, t2 - t1)
