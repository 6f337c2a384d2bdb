"""Saving and loading :class:`embeddings.index.VideoIndex` folders.

Layout: ``index.faiss`` (faiss ``write_index``), ``ids.parquet`` (``video_id``, ``faiss_id``),
``metadata.parquet`` and ``manifest.json`` (factory string, dimension, metric, count, encoder,
measured tuning, sha256 checksums). The folder is written to a temporary sibling and renamed
into place (:func:`embeddings._io.atomic_dir`); loading verifies the manifest and checksums.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from embeddings._io import atomic_dir, file_sha256
from embeddings.index_choice import check_encoder

__all__ = ["FORMAT_VERSION", "IndexFileError", "save_index", "load_index"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FILES = ("index.faiss", "ids.parquet", "metadata.parquet")


class IndexFileError(ValueError):
    """A saved index folder is missing a file, fails its checksum, or cannot be read.

    Attributes ``path`` (the offending file) and ``reason`` (short human reason).
    """

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def save_index(vi, folder) -> Path:
    """Write ``vi`` (a VideoIndex; caller holds its read lock) to ``folder`` atomically.

    Files: index.faiss, ids.parquet, metadata.parquet, manifest.json.

    The manifest holds ``format_version``, ``factory_string``, ``dim``, ``metric``,
    ``ntotal``, ``next_id``, ``encoder``, ``created`` (UTC ISO 8601), ``checksums``
    (sha256 per file), ``tombstones``, ``check_norm``, ``faiss_version`` and ``tuning``
    (measured search parameters and Recall@10, see :mod:`embeddings.index_tune`, or None).
    Returns the folder path.
    """
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        if vi._source_file is not None:  # mmap-loaded: the file is unchanged
            shutil.copyfile(vi._source_file, tmp / "index.faiss")
        else:
            faiss.write_index(vi._index, str(tmp / "index.faiss"))
        pd.DataFrame({"video_id": vi._video_ids.astype(str),
                      "faiss_id": vi._faiss_ids}).to_parquet(tmp / "ids.parquet", index=False)
        vi._metadata.to_parquet(tmp / "metadata.parquet", index=False)
        manifest = {
            "format_version": FORMAT_VERSION, "factory_string": vi.factory_string,
            "dim": vi.dim, "metric": vi.metric, "ntotal": vi.ntotal,
            "next_id": int(vi._next_id), "encoder": vi.encoder,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checksums": {name: file_sha256(tmp / name) for name in _FILES},
            "tombstones": vi._tombstones.tolist(), "check_norm": vi.check_norm,
            "faiss_version": getattr(faiss, "__version__", "unknown"),
            "tuning": vi.tuning,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n",
                                           encoding="utf-8")
    return folder


def load_index(cls, folder, *, expected_encoder: dict | None = None, mmap: bool = False,
               verify_checksums: bool = True):
    """Load a folder written by :func:`save_index` as an instance of ``cls`` (VideoIndex).

    Parameters
    ----------
    folder : path-like
    expected_encoder : dict, optional
        ``ClipEncoder.describe()`` of the encoder that will produce queries; its
        ``model``, ``pretrained`` and ``embed_dim`` must match the manifest.
    mmap : bool
        Memory-map IVF inverted lists (``faiss.IO_FLAG_MMAP``); the index is then
        read-only. Other index types are read into memory regardless.
    verify_checksums : bool
        Compare every file with its manifest sha256 (reads each file once).

    Raises
    ------
    IndexFileError (a ValueError)
        Missing folder/file, unreadable manifest, checksum mismatch (names the file),
        faiss cannot read index.faiss (truncated/corrupt), inconsistent tables.
    ValueError
        Unsupported ``format_version``; encoder mismatch (names both values).
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise IndexFileError(manifest_path, "missing; is this a folder written by "
                             "VideoIndex.save()?")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFileError(manifest_path, f"unreadable JSON ({exc}); re-save the index") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{manifest_path}: format_version {manifest.get('format_version')!r}"
                         f" is not supported (expected {FORMAT_VERSION}); rebuild the index "
                         "with this version of the code")
    check_encoder(manifest.get("encoder"), expected_encoder, folder)
    for name in _FILES:
        path = folder / name
        if not path.is_file():
            raise IndexFileError(path, "missing from the saved index; re-save it")
        expected = manifest.get("checksums", {}).get(name)
        if verify_checksums and file_sha256(path) != expected:
            raise IndexFileError(path, "sha256 checksum does not match manifest.json (file "
                                 "modified, truncated or copied incompletely); re-save or "
                                 "re-copy the index folder")
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        index = faiss.read_index(str(folder / "index.faiss"), flags)
    except RuntimeError as exc:
        raise IndexFileError(folder / "index.faiss", "faiss could not read it (truncated or "
                             f"corrupt: {str(exc).splitlines()[-1].strip()}); rebuild or "
                             "re-save the index") from None
    try:
        table = pd.read_parquet(folder / "ids.parquet")
        meta = pd.read_parquet(folder / "metadata.parquet")
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise IndexFileError(folder, f"ids/metadata Parquet unreadable: {exc}") from None
    self = cls(index, factory_string=manifest["factory_string"], metric=manifest["metric"],
               dim=manifest["dim"], encoder=manifest.get("encoder"),
               check_norm=manifest.get("check_norm", True))
    self._faiss_ids = table["faiss_id"].to_numpy(dtype=np.int64)
    self._video_ids = table["video_id"].astype(str).to_numpy(dtype=object)
    self._lookup = dict(zip(self._video_ids.tolist(), self._faiss_ids.tolist(), strict=True))
    self._metadata = meta
    self._tombstones = np.asarray(manifest.get("tombstones", []), dtype=np.int64)
    self._next_id = int(manifest["next_id"])
    self.tuning = manifest.get("tuning")
    problems = []
    if index.d != self.dim:
        problems.append(f"index.faiss has dim {index.d}, manifest {self.dim}")
    if index.ntotal != len(table) + len(self._tombstones):
        problems.append(f"index.faiss holds {index.ntotal} vectors, ids.parquet {len(table)} "
                        f"+ {len(self._tombstones)} tombstones")
    if list(meta.get("video_id", pd.Series(dtype=object)).astype(str)) != list(self._video_ids):
        problems.append("metadata.parquet video_id column differs from ids.parquet")
    if np.any(np.diff(self._faiss_ids) <= 0) or (len(table) and self._faiss_ids[-1] >= self._next_id):
        problems.append("ids.parquet faiss_id is not strictly increasing below next_id")
    if problems:
        raise IndexFileError(folder, "inconsistent saved index: " + "; ".join(problems))
    if mmap:
        self.read_only = True
        self._source_file = folder / "index.faiss"
        if faiss.try_extract_index_ivf(index) is None:
            logger.info("mmap=True only maps IVF lists; %r was read into memory",
                        self.factory_string)
    return self
