"""``recsys index build --engine ray``: train once, add shards in parallel Ray tasks, merge, save.

faiss's recipe for indexes larger than one machine (faiss wiki "Indexes that do not fit in RAM",
faiss/contrib/ondisk.py), on Ray:

1. the driver trains the empty IVF index once, on the same training rows as
   :meth:`embeddings.index.video_index.VideoIndex.build` would pick (read from the shard files, so the driver
   never holds the collection);
2. Ray tasks each read a block of embedding shards (``.npy``), validate them like ``build`` and
   add them with their int64 ids to a copy of the trained index (the serialized trained index is
   put once in the object store);
3. the inverted lists are merged into one index, either in the driver's memory
   (``IndexIVF.merge_from``; the driver holds the merged codes plus one block) or on disk
   (``merge_ondisk``: an ``OnDiskInvertedLists`` file ``index.ivfdata`` inside the index folder,
   memory-mapped at search time; the driver holds only the centroids);
4. the folder is written in the :class:`embeddings.index.video_index.VideoIndex` format (``index.faiss``,
   ``ids.parquet``, ``metadata.parquet``, ``manifest.json``) and opens with ``VideoIndex.load``.

faiss ids are ``0..n-1`` in shard order, exactly as the local build assigns them, so the two
builds are the same index (same centroids, same lists, same search results).

Only IVF indexes can be merged this way: HNSW graphs, plain Flat and PQ have no inverted lists to
merge and are refused (the error names mergeable factory strings).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings.ray_engine.cluster import ray_session

__all__ = ["build_ivf_index_ray", "check_mergeable", "MERGEABLE_EXAMPLES"]

log = logging.getLogger(__name__)

MERGEABLE_EXAMPLES = ("IVF1024,Flat", "IVF4096,SQ8", "IVF4096,PQ32x8", "OPQ16_64,IVF4096,PQ16x8")


def check_mergeable(factory_string, dim: int, metric: str):
    """Build the empty faiss index for ``factory_string``; refuse one whose shards cannot be merged.

    Returns the (untrained) faiss index.

    Raises
    ------
    ValueError
        faiss cannot build the string, or it is not an IVF index (``"HNSW32,Flat"``, ``"Flat"``,
        ``"PQ16"``): the message names mergeable alternatives (:data:`MERGEABLE_EXAMPLES`) and the
        local engine, which builds any type.
    """
    import faiss

    from embeddings.index.video_index import _METRICS, disable_polysemous_training

    if not isinstance(factory_string, str) or not factory_string.strip() or factory_string == "auto":
        raise ValueError(f"factory_string: got {factory_string!r}; engine='ray' needs an explicit IVF factory "
                         f"string such as {', '.join(repr(s) for s in MERGEABLE_EXAMPLES)}")
    if metric not in _METRICS:
        raise ValueError(f"metric: got {metric!r}; expected 'ip' or 'l2'")
    try:
        index = faiss.index_factory(int(dim), factory_string, _METRICS[metric])
    except RuntimeError as exc:
        raise ValueError(f"factory_string: faiss cannot build {factory_string!r} for dim={dim} "
                         f"({str(exc).splitlines()[-1].strip()})") from None
    if faiss.try_extract_index_ivf(index) is None:
        raise ValueError(
            f"factory_string {factory_string!r} cannot be built by merging shards: only IVF indexes have "
            f"inverted lists that merge (HNSW graphs, Flat and PQ do not). Use a mergeable IVF index such as "
            f"{', '.join(repr(s) for s in MERGEABLE_EXAMPLES)}, or build {factory_string!r} with engine='local'")
    disable_polysemous_training(index)
    return index


class _Rows:
    """Row access across the shard ``.npy`` files of an embedding folder (only what is asked is read)."""

    def __init__(self, files: list[Path], counts: list[int]):
        self.files, self.counts = files, counts
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        parts = []
        for s in np.unique(shard):
            x = np.load(self.files[s], mmap_mode="r")
            parts.append(np.asarray(x[rows[shard == s] - self.starts[s]], np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _add_block(trained: np.ndarray, files: list[str], start_id: int, metric: str, check_norm: bool,
               out_file: str | None, threads: int):
    """Ray task: add a block of shards (rows in file order, ids from ``start_id``) to the trained index.

    Returns the serialized shard index (uint8 array), or ``out_file`` after writing it there.
    """
    import faiss

    from embeddings.index.factory import validate_embeddings
    from embeddings.index.video_index import add_in_batches

    faiss.omp_set_num_threads(int(threads))
    index = faiss.deserialize_index(trained)
    next_id = int(start_id)
    for f in files:
        x = np.load(f, allow_pickle=False).astype(np.float32, copy=False)
        if len(x) == 0:
            continue
        x = validate_embeddings(x, index.d, metric=metric, check_norm=check_norm)
        add_in_batches(index, x, np.arange(next_id, next_id + len(x), dtype=np.int64))
        next_id += len(x)
    if out_file is None:
        return faiss.serialize_index(index)
    faiss.write_index(index, out_file)
    return out_file


def build_ivf_index_ray(emb_dir, out, *, factory_string: str, metric: str = "ip", metadata: pd.DataFrame,
                        train_sample: int | None = None, seed: int = 0, device: str = "auto",
                        rows_per_task: int = 250_000, on_disk: bool | None = None,
                        memory_budget_bytes: int | None = None, threads_per_task: int = 1,
                        check_norm: bool = True, address: str | None = None, num_cpus: int | None = None):
    """Build an IVF :class:`embeddings.index.video_index.VideoIndex` folder from an embedding folder on Ray.

    Parameters
    ----------
    emb_dir : path-like
        A finished embedding folder (``recsys embed``); every node must read it at the same path.
    out : path-like
        Index folder (replaced atomically); with ``on_disk`` it also holds ``index.ivfdata``.
    factory_string : str
        An IVF factory string (see :func:`check_mergeable`).
    metric : {"ip", "l2"}
    metadata : pandas.DataFrame
        One row per embedded video in shard order with a ``video_id`` column (the index metadata
        table; ``recsys.app.stages`` builds it the same way for both engines).
    train_sample, seed, device :
        As in :meth:`embeddings.index.video_index.VideoIndex.build` (same rows chosen, same training).
    rows_per_task : int
        Vectors per Ray task (whole embedding shards are grouped up to this many).
    on_disk : bool or None
        Merge into an on-disk ``index.ivfdata`` (True), in memory (False), or decide (None): on disk
        when the estimated codes exceed ``memory_budget_bytes``.
    memory_budget_bytes : int or None
        For ``on_disk=None``; default half of this machine's available memory.
    threads_per_task : int
        OpenMP threads inside each task.
    check_norm : bool
        Reject non-unit rows for ``metric="ip"`` (as ``build``).
    address, num_cpus :
        Ray cluster (see :func:`embeddings.ray_engine.cluster.ray_session`).

    Returns
    -------
    tuple
        ``(VideoIndex, info)``; ``info`` holds ``n_tasks``, ``on_disk``, ``train_s``, ``add_s``,
        ``merge_s``, ``save_s``.

    Raises
    ------
    ValueError
        A non-mergeable factory string (names the alternatives), too few vectors to train, bad
        vectors in a shard (named by :func:`embeddings.index.factory.validate_embeddings`),
        ``metadata`` not aligned with the folder, bad sizes.
    EmbeddingFolderError
        ``emb_dir`` is unfinished.
    """
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    from embeddings.index.factory import normalize_metadata, validate_ids
    from embeddings.index.io import save_index
    from embeddings.index.video_index import VideoIndex, _resolve_device
    from embeddings.store import SHARD_DIR, EmbeddingFolder

    for name, value in (("rows_per_task", rows_per_task), ("threads_per_task", threads_per_task)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: got {value!r}; expected a positive int")
    folder = EmbeddingFolder.open(emb_dir)
    files = [folder.path / SHARD_DIR / f"{s}.npy" for s in folder.shard_stems()]
    counts = [int(s["n_ok"]) for s in folder.manifest["shards"]]
    rows = _Rows(files, counts)
    n, d = len(rows), folder.embed_dim
    if n == 0:
        raise ValueError(f"{emb_dir} holds no embedded video (see its errors.parquet); nothing to index")
    if len(metadata) != n:
        raise ValueError(f"metadata: {len(metadata)} rows but {emb_dir} holds {n} embedded videos; pass one "
                         "row per embedded video in shard order")
    index = check_mergeable(factory_string, d, metric)
    info: dict = {}
    t0 = time.perf_counter()
    x_train = VideoIndex._training_sample(index, factory_string, rows, train_sample, seed)
    if isinstance(x_train, _Rows):  # the whole collection is the sample
        x_train = rows[np.arange(n)]
    index = VideoIndex._train(index, x_train, _resolve_device(device), device)
    del x_train
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = min(int(ivf.nlist), max(1, round(ivf.nlist ** 0.5)))  # as VideoIndex.build
    info["train_s"] = time.perf_counter() - t0

    code_bytes = n * (int(ivf.code_size) + 8)
    budget = memory_budget_bytes or (os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 2
    on_disk = bool(code_bytes > budget) if on_disk is None else bool(on_disk)
    info.update(on_disk=on_disk, estimated_code_bytes=int(code_bytes))
    blocks, starts, cur, cur_n, start = [], [], [], 0, 0
    for f, c in zip(files, counts, strict=True):
        if c == 0:
            continue
        if cur and cur_n + c > rows_per_task:  # whole shards per task, about rows_per_task rows
            blocks.append(cur)
            starts.append(start)
            start, cur, cur_n = start + cur_n, [], 0
        cur.append(f)
        cur_n += c
    blocks.append(cur)
    starts.append(start)
    info["n_tasks"] = len(blocks)

    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.shards.", dir=out.parent))
    try:
        with ray_session(address, num_cpus=num_cpus) as ray:
            task = ray.remote(num_cpus=threads_per_task)(_add_block)
            trained_ref = ray.put(faiss.serialize_index(index))
            t0 = time.perf_counter()
            refs = [task.remote(trained_ref, [str(f) for f in b], s, metric, check_norm,
                                str(work / f"block-{k:05d}.index") if on_disk else None, threads_per_task)
                    for k, (b, s) in enumerate(zip(blocks, starts, strict=True))]
            if on_disk:
                shard_files = ray.get(refs)
                info["add_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                merge_ondisk(index, shard_files, str(work / "index.ivfdata"))
            else:
                remaining, info["add_s"], t_merge = list(refs), 0.0, 0.0
                while remaining:  # merge each block as it arrives: one block in memory at a time
                    ready, remaining = ray.wait(remaining, num_returns=1)
                    t1 = time.perf_counter()
                    part = faiss.deserialize_index(ray.get(ready[0]))
                    ivf.merge_from(faiss.extract_index_ivf(part), 0)
                    del part
                    t_merge += time.perf_counter() - t1
                index.ntotal = ivf.ntotal
                info["add_s"] = time.perf_counter() - t0 - t_merge
            info["merge_s"] = time.perf_counter() - t0 - info["add_s"]
        if int(index.ntotal) != n:
            raise RuntimeError(f"merged index holds {index.ntotal} vectors, expected {n}; rebuild")
        vi = VideoIndex(index, factory_string=factory_string, metric=metric, dim=d, encoder=folder.encoder,
                        check_norm=check_norm)
        ids = validate_ids(metadata["video_id"].astype(str).tolist(), n)
        vi._faiss_ids = np.arange(n, dtype=np.int64)  # what VideoIndex.build assigns, in the same order
        vi._video_ids = np.array(ids, dtype=object)
        vi._lookup = dict(zip(ids, range(n), strict=True))
        vi._metadata = normalize_metadata(metadata.reset_index(drop=True), ids)
        vi._next_id = n
        t0 = time.perf_counter()
        # on disk: the data file moves into the folder, the header names it relative to the folder
        save_index(vi, out, ivfdata=work / "index.ivfdata" if on_disk else None)
        info["save_s"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("ray build of %s: %d vectors in %d task(s), %s merge (train %.1fs, add %.1fs, merge %.1fs)",
             factory_string, n, len(blocks), "on-disk" if on_disk else "in-memory", info["train_s"],
             info["add_s"], info["merge_s"])
    return vi, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in info.items()}
