"""Saving and loading :class:`embeddings.index.video_index.VideoIndex` folders.

Layout: ``index.faiss`` (faiss ``write_index``), ``ids.parquet`` (``video_id``, ``faiss_id``),
``metadata.parquet`` and ``manifest.json`` (factory string, dimension, metric, count, encoder,
measured tuning, build plan, sha256 checksums). The folder is written to a temporary sibling and
renamed into place (:func:`embeddings._io.atomic_dir`); loading verifies the manifest and checksums.

On-disk IVF indexes (built by :func:`embeddings.index.shards.build_sharded`) add
``index.ivfdata``: faiss ``OnDiskInvertedLists`` data, memory-mapped at search time. faiss
stores the data file's path inside ``index.faiss`` and opens it from there; we store the bare
name ``index.ivfdata`` and, at load time, rewrite it in the (small) header to the file inside
the folder being loaded, so a moved or copied folder still loads (faiss's own
``IO_FLAG_ONDISK_SAME_DIR`` does the same but prints to stdout).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from embeddings._io import atomic_dir, dumps_strict, file_sha256
from embeddings.index.factory import check_encoder

__all__ = ["FORMAT_VERSION", "IVFDATA", "IndexFileError", "save_index", "load_index",
           "ondisk_lists"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FILES = ("index.faiss", "ids.parquet", "metadata.parquet")
#: Name of the on-disk inverted-list data inside an index folder.
IVFDATA = "index.ivfdata"


class IndexFileError(ValueError):
    """A saved index folder is missing a file, fails its checksum, or cannot be read.

    Attributes ``path`` (the offending file) and ``reason`` (short human reason).
    """

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def ondisk_lists(index):
    """The ``faiss.OnDiskInvertedLists`` of an IVF index whose data is an ``.ivfdata`` file, or None.

    faiss also uses ``OnDiskInvertedLists`` to memory-map the lists inside an ``index.faiss``
    read with ``IO_FLAG_MMAP``; those are not on-disk indexes in our sense (None).
    """
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return None
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    if isinstance(lists, faiss.OnDiskInvertedLists) and str(lists.filename).endswith(".ivfdata"):
        return lists
    return None


def save_index(vi, folder, *, ivfdata=None) -> Path:
    """Write ``vi`` (a VideoIndex; caller holds its read lock) to ``folder`` atomically.

    Files: index.faiss, ids.parquet, metadata.parquet, manifest.json, and for an index whose
    inverted lists are on disk, index.ivfdata.

    The manifest holds ``format_version``, ``factory_string``, ``dim``, ``metric``,
    ``ntotal``, ``next_id``, ``encoder``, ``created`` (UTC ISO 8601), ``checksums``
    (sha256 per file), ``tombstones``, ``check_norm``, ``faiss_version``, ``tuning``
    (measured search parameters and Recall@10, see :mod:`embeddings.index.tune`, or None),
    ``ivfdata`` (``"index.ivfdata"`` or None) and ``build`` (the memory plan and timings of
    the build, ``vi.build_info``, or None).

    Parameters
    ----------
    vi : VideoIndex
    folder : path-like
        Replaced atomically.
    ivfdata : path-like, optional
        For an on-disk index: its data file, *moved* into the folder (a build's temporary
        file on the same filesystem). Without it the data file is copied from where the
        index maps it.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(folder)
    od = ondisk_lists(vi._index)
    with atomic_dir(folder) as tmp:
        if vi._source_file is not None:  # mmap-loaded: the files are unchanged
            shutil.copyfile(vi._source_file, tmp / "index.faiss")
            if od is not None:
                shutil.copyfile(vi._source_file.parent / IVFDATA, tmp / IVFDATA)
        elif od is not None:
            mapped = od.filename
            od.filename = IVFDATA  # the header names the data file relative to its folder
            try:
                faiss.write_index(vi._index, str(tmp / "index.faiss"))
            finally:
                od.filename = mapped
            if ivfdata is not None:
                os.replace(ivfdata, tmp / IVFDATA)
            else:
                shutil.copyfile(mapped, tmp / IVFDATA)
        else:
            faiss.write_index(vi._index, str(tmp / "index.faiss"))
        pd.DataFrame({"video_id": vi._video_ids.astype(str),
                      "faiss_id": vi._faiss_ids}).to_parquet(tmp / "ids.parquet", index=False)
        vi._metadata.to_parquet(tmp / "metadata.parquet", index=False)
        files = _FILES + ((IVFDATA,) if od is not None else ())
        manifest = {
            "format_version": FORMAT_VERSION, "factory_string": vi.factory_string,
            "dim": vi.dim, "metric": vi.metric, "ntotal": vi.ntotal,
            "next_id": int(vi._next_id), "encoder": vi.encoder,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checksums": {name: file_sha256(tmp / name) for name in files},
            "tombstones": vi._tombstones.tolist(), "check_norm": vi.check_norm,
            "faiss_version": getattr(faiss, "__version__", "unknown"),
            "tuning": vi.tuning, "ivfdata": IVFDATA if od is not None else None,
            "build": getattr(vi, "build_info", None),
            "embeddings": getattr(vi, "embeddings_dir", None),
        }
        (tmp / "manifest.json").write_text(dumps_strict(manifest, indent=2)
                                           + "\n", encoding="utf-8")
    return folder


def _relocated_header(index_file: Path, data_file: Path) -> np.ndarray:
    """Bytes of an on-disk IVF ``index.faiss`` whose data-file path now names ``data_file``.

    faiss writes ``OnDiskInvertedLists`` as the fourcc ``ilod``, ``nlist``, ``code_size``
    (uint64 each), the ``lists`` vector (uint64 count = nlist, 24 bytes per list), the
    ``slots`` vector (uint64 count, 16 bytes each), the filename (uint64 length + bytes) and
    ``totsize`` (faiss/impl/index_write.cpp, ``write_InvertedLists``). The section is parsed
    and checked field by field; only the filename is replaced.
    """
    raw = index_file.read_bytes()
    q = struct.Struct("<Q")
    pos = raw.find(b"ilod")
    while pos >= 0:
        try:
            at = pos + 4
            nlist, _code_size = q.unpack_from(raw, at)[0], q.unpack_from(raw, at + 8)[0]
            at += 16
            if q.unpack_from(raw, at)[0] == nlist:
                at += 8 + 24 * nlist
                n_slots = q.unpack_from(raw, at)[0]
                at += 8 + 16 * n_slots
                name_len = q.unpack_from(raw, at)[0]
                name = raw[at + 8:at + 8 + name_len]
                if 0 < name_len < 4096 and name.endswith(b".ivfdata") and \
                        at + 8 + name_len + 8 <= len(raw):
                    new = str(data_file.resolve()).encode()
                    patched = raw[:at] + q.pack(len(new)) + new + raw[at + 8 + name_len:]
                    return np.frombuffer(patched, dtype=np.uint8)
        except struct.error:
            pass
        pos = raw.find(b"ilod", pos + 1)
    raise IndexFileError(index_file, "the manifest names on-disk inverted lists (index.ivfdata) but "
                         "index.faiss holds no readable OnDiskInvertedLists header; rebuild the index")


def _to_memory(index) -> None:
    """Copy on-disk inverted lists into ``faiss.ArrayInvertedLists`` (in place, exact sizes)."""
    ivf = faiss.extract_index_ivf(index)
    od = faiss.downcast_InvertedLists(ivf.invlists)
    mem = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    for lst in range(ivf.nlist):
        size = od.list_size(lst)
        if size:
            mem.add_entries(lst, size, od.get_ids(lst), od.get_codes(lst))
    ivf.replace_invlists(mem, True)
    mem.this.disown()


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
        read-only. Other index types are read into memory regardless. An on-disk index
        (``index.ivfdata``) is always mapped from the folder being loaded (wherever it was
        built); with ``mmap=False`` its lists are then copied into memory (exact sizes), so
        the index can be modified and is saved as a plain in-memory index.
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
    ivfdata = manifest.get("ivfdata")
    if ivfdata is None and (folder / IVFDATA).is_file():
        ivfdata = IVFDATA  # folders written before the manifest named it (no checksum)
    if ivfdata not in (None, IVFDATA):
        raise IndexFileError(manifest_path, f"ivfdata {ivfdata!r} is not {IVFDATA!r}; rebuild the index")
    names = _FILES + ((ivfdata,) if ivfdata else ())
    for name in names:
        path = folder / name
        if not path.is_file():
            raise IndexFileError(path, "missing from the saved index; re-save it")
        expected = manifest.get("checksums", {}).get(name)
        if name == ivfdata and expected is None:
            continue
        if verify_checksums and file_sha256(path) != expected:
            raise IndexFileError(path, "sha256 checksum does not match manifest.json (file "
                                 "modified, truncated or copied incompletely); re-save or "
                                 "re-copy the index folder")
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        if ivfdata:
            header = _relocated_header(folder / "index.faiss", folder / ivfdata)
            index = faiss.deserialize_index(header, faiss.IO_FLAG_READ_ONLY)
            if not mmap:
                _to_memory(index)
        else:
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
    self.build_info = manifest.get("build")
    self.embeddings_dir = manifest.get("embeddings")
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
