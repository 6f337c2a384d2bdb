"""Embedding folders on disk: ``.npy`` shards with Parquet metadata and a manifest.

Layout of an embedding folder (what ``recsys embed`` writes and ``recsys index build`` reads)::

    EMB_DIR/
      job.json                       settings of the job that writes the folder (checked on resume)
      manifest.json                  written last: encoder, settings, shard list, counts, checksums
      shards/shard-00000.npy         video embeddings (n_ok, embed_dim), L2-normalised, stored as
                                     float32 or float16 (manifest "storage_dtype"); read back float32
      shards/shard-00000.frames.npy  frame embeddings (n_frames_total, embed_dim), same dtype
      shards/shard-00000.parquet     one row per input of the shard (failed inputs too), written
                                     last, so its presence marks the shard finished
      errors.parquet                 inputs that were skipped, with the reason

Shard Parquet columns: ``video_id, path, caption, duration_s (seconds), fps (average frames per
second), width, height (displayed pixels, after rotation), n_frames (frames embedded),
frame_offset (first row in the shard's .frames.npy), frame_timestamps_s (list of float, seconds
from the first frame), row (row in the shard's .npy, -1 if failed), error (None if fine), model,
pretrained, precision (the encoder), sampling (the strategy)``, then any extra caption-file
columns. float16 storage halves the files; the vectors lose about 3 decimal digits (relative
error <= 2**-11 per component), which leaves inner-product rankings practically unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings._io import file_sha256, write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SHARD_DIR = "shards"
STORAGE_DTYPES = ("float32", "float16")

__all__ = ["EmbeddingFolder", "EmbeddingFolderError", "shard_name", "FORMAT_VERSION", "STORAGE_DTYPES"]


class EmbeddingFolderError(ValueError):
    """An embedding folder is missing, incomplete, or inconsistent."""


def shard_name(i: int) -> str:
    """Return the file stem of shard ``i`` (``shard-00012``)."""
    return f"shard-{i:05d}"


@dataclass
class EmbeddingFolder:
    """Read access to an embedding folder written by :func:`embeddings.job.run_embedding_job`.

    Parameters
    ----------
    path : pathlib.Path
        The folder; it holds ``manifest.json`` (the job finished).
    manifest : dict
        The parsed manifest.
    """

    path: Path
    manifest: dict

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: bool = False) -> EmbeddingFolder:
        """Open a finished embedding folder.

        Parameters
        ----------
        path : path-like
            Folder written by ``recsys embed``.
        verify : bool
            Recompute the SHA-256 of every shard file and compare with the manifest.

        Raises
        ------
        EmbeddingFolderError
            If the folder or its manifest is missing (the job did not finish: rerun the
            same ``recsys embed`` command to resume it), or a checksum does not match.
        """
        path = Path(path)
        mpath = path / "manifest.json"
        if not path.is_dir():
            raise EmbeddingFolderError(
                f"embedding folder {path} does not exist; create it with `recsys embed VIDEO_DIR --out {path}`")
        if not mpath.is_file():
            raise EmbeddingFolderError(
                f"{path} has no manifest.json: the embedding job that writes it has not finished. "
                "Rerun the same `recsys embed` command; it resumes where it stopped.")
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise EmbeddingFolderError(
                f"{mpath}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}; "
                "re-embed with this version of the engine")
        folder = cls(path=path, manifest=manifest)
        if verify:
            for rel, digest in manifest.get("checksums", {}).items():
                if file_sha256(path / rel) != digest:
                    raise EmbeddingFolderError(
                        f"checksum mismatch for {path / rel}: the file changed after the job wrote it; "
                        "re-run `recsys embed` into a new folder")
        return folder

    @property
    def encoder(self) -> dict:
        """The encoder description (``ClipEncoder.describe()``) the vectors were made with."""
        return self.manifest["encoder"]

    @property
    def storage_dtype(self) -> str:
        """``"float32"`` or ``"float16"``: how the shards are stored (read back as float32)."""
        return str(self.manifest.get("storage_dtype", "float32"))

    @property
    def embed_dim(self) -> int:
        """Embedding dimension ``d``."""
        return int(self.manifest["encoder"]["embed_dim"])

    def shard_stems(self) -> list[str]:
        """Names (``shard-00000`` ...) of the shards listed in the manifest, in order."""
        return [s["name"] for s in self.manifest["shards"]]

    def iter_shards(self) -> Iterator[tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
        """Yield ``(metadata, video_embeddings, frame_embeddings)`` shard by shard.

        ``metadata`` has one row per input of the shard, failed ones included (``row == -1``);
        ``video_embeddings`` is float32 ``(n_ok, d)`` and ``frame_embeddings`` float32
        ``(n_frames_total, d)`` (float16 shards are converted); memory is bounded by one shard.
        """
        shard_dir = self.path / SHARD_DIR
        for stem in self.shard_stems():
            meta = pd.read_parquet(shard_dir / f"{stem}.parquet")
            videos = np.load(shard_dir / f"{stem}.npy", allow_pickle=False).astype(np.float32, copy=False)
            frames = np.load(shard_dir / f"{stem}.frames.npy", allow_pickle=False).astype(np.float32, copy=False)
            yield meta, videos, frames

    def load_videos(self) -> tuple[pd.DataFrame, np.ndarray]:
        """Load every successfully embedded video.

        Returns
        -------
        metadata : pandas.DataFrame
            One row per embedded video (failed inputs dropped), in shard order, index reset.
        video_embeddings : numpy.ndarray
            float32 ``(n_videos, d)``, row ``i`` belongs to ``metadata.iloc[i]``.
        """
        metas, embs = [], []
        for meta, videos, _ in self.iter_shards():
            ok = meta[meta["row"] >= 0].sort_values("row")
            metas.append(ok)
            embs.append(videos[ok["row"].to_numpy()])
        if not metas:
            return pd.DataFrame(), np.zeros((0, self.embed_dim), np.float32)
        meta = pd.concat(metas, ignore_index=True)
        return meta, np.concatenate(embs).astype(np.float32, copy=False)

    def load_frames(self) -> tuple[pd.DataFrame, np.ndarray]:
        """Load every frame embedding with the video it came from.

        Returns
        -------
        frames : pandas.DataFrame
            One row per frame: ``video_id, path, timestamp_s, frame_rank`` (rank within its video).
        frame_embeddings : numpy.ndarray
            float32 ``(n_frames, d)`` aligned with ``frames``.
        """
        rows, embs = [], []
        for meta, _, frames in self.iter_shards():
            for rec in meta[meta["row"] >= 0].itertuples(index=False):
                n, off = int(rec.n_frames), int(rec.frame_offset)
                ts = list(rec.frame_timestamps_s)
                for j in range(n):
                    rows.append((rec.video_id, rec.path, float(ts[j]), j))
                embs.append(frames[off:off + n])
        df = pd.DataFrame(rows, columns=["video_id", "path", "timestamp_s", "frame_rank"])
        if not embs:
            return df, np.zeros((0, self.embed_dim), np.float32)
        return df, np.concatenate(embs).astype(np.float32, copy=False)

    def errors(self) -> pd.DataFrame:
        """Inputs that were skipped: ``video_id, path, error``."""
        p = self.path / "errors.parquet"
        if p.exists():
            return pd.read_parquet(p)
        return pd.DataFrame(columns=["video_id", "path", "error"])


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest.json`` (atomically) with SHA-256 checksums of every shard file."""
    checksums = {}
    for s in manifest["shards"]:
        for suffix in (".npy", ".frames.npy", ".parquet"):
            rel = f"{SHARD_DIR}/{s['name']}{suffix}"
            checksums[rel] = file_sha256(path / rel)
    manifest = dict(manifest, format_version=FORMAT_VERSION, checksums=checksums)
    write_json(path / "manifest.json", manifest)
