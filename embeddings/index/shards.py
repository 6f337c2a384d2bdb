"""IVF builds that scale past memory: train once, add shards in worker processes, merge, save.

Steps (faiss's recipe, faiss/contrib/ondisk.py and the wiki page "Indexes that do not fit
in RAM"): (1) train the empty IVF index on a sample (the rows :meth:`VideoIndex.build` would
pick, so both builds are the same index); (2) worker processes each read the trained index,
add a block of rows (read from the ``.npy`` files with plain file reads, one batch at a time)
with their int64 ids and write a shard index; (3) the shards' inverted lists are merged,
either into one ``OnDiskInvertedLists`` file (``index.ivfdata``, memory-mapped at search
time, so neither the build nor the search needs the collection in RAM) or into memory; (4) the
result is saved as a normal :class:`embeddings.index.video_index.VideoIndex` folder (``index.faiss``,
``ids.parquet``, ``metadata.parquet``, ``manifest.json`` with checksums and the build plan,
plus ``index.ivfdata`` on disk) that ``VideoIndex.load`` opens, wherever the folder is moved.

faiss ids are ``0..n-1`` in row order, as ``VideoIndex.build`` assigns them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings.index.lists import add_presized, release_freed_memory

__all__ = ["NpyRows", "build_sharded", "build_from_embedding_folder"]

logger = logging.getLogger(__name__)


class NpyRows:
    """Rows of one or more 2-D float ``.npy`` files, read with file reads (never memory-mapped).

    Reading a batch costs its own bytes only: no mapped pages of the input stay in the
    process's RSS. Rows are numbered across the files in order.

    Parameters
    ----------
    files : path-like or sequence of path-like
        C-ordered ``(n_i, d)`` float16/float32/float64 ``.npy`` files with the same ``d``.

    Raises
    ------
    ValueError
        A file that is not a C-ordered 2-D float ``.npy``, or differing dimensions.
    """

    def __init__(self, files):
        files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        self.files = [Path(f) for f in files]
        self.counts, self.offsets, dims, self.dtypes = [], [], set(), []
        for f in self.files:
            try:  # header only: the mapping is dropped before any data page is touched
                m = np.load(f, mmap_mode="r", allow_pickle=False)
                shape, dtype, offset, fortran = m.shape, m.dtype, m.offset, not m.flags.c_contiguous
                del m
            except ValueError as exc:
                raise ValueError(f"{f}: not a readable .npy file ({exc})") from None
            if len(shape) != 2 or fortran or not np.issubdtype(dtype, np.floating):
                raise ValueError(f"{f}: holds {dtype} {shape} (C order: {not fortran}); expected a "
                                 "C-ordered float (n, d) array")
            self.counts.append(int(shape[0]))
            self.offsets.append(offset)
            self.dtypes.append(np.dtype(dtype))
            dims.add(int(shape[1]))
        if len(dims) > 1:
            raise ValueError(f"files: dimensions {sorted(dims)} differ; all must share one embed_dim")
        self.dim = dims.pop() if dims else 0
        self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.dim

    def _read(self, i: int, start: int, stop: int) -> np.ndarray:
        dt = self.dtypes[i]
        with open(self.files[i], "rb") as fh:
            fh.seek(self.offsets[i] + start * self.dim * dt.itemsize)
            x = np.fromfile(fh, dtype=dt, count=(stop - start) * self.dim)
        return x.reshape(stop - start, self.dim).astype(np.float32, copy=False)

    def read(self, start: int, stop: int) -> np.ndarray:
        """float32 ``(stop - start, d)``: rows ``start`` to ``stop`` (exclusive)."""
        parts = []
        for i in range(len(self.files)):
            a, b = max(start, self.starts[i]), min(stop, self.starts[i + 1])
            if a < b:
                parts.append(self._read(i, int(a - self.starts[i]), int(b - self.starts[i])))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def __getitem__(self, rows) -> np.ndarray:
        """float32 rows for an ascending int array (runs of consecutive rows read at once)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros((0, self.dim), np.float32)
        cut = np.flatnonzero(np.diff(rows) != 1) + 1
        return np.concatenate([self.read(int(r[0]), int(r[-1]) + 1) for r in np.split(rows, cut)])


@contextlib.contextmanager
def _c_stdout_to_stderr():
    """Send C-level stdout to stderr for the duration (faiss's on-disk code ``printf``s
    progress lines, which would corrupt a ``--json`` document on stdout)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def _add_shard(trained_file: str, files: list[str], start: int, stop: int, out_file: str,
               threads: int, batch_size: int, metric: str, check_norm: bool) -> int:
    """Worker: add rows ``start:stop`` (ids = row numbers) to the trained index, write it."""
    import faiss

    from embeddings.index.factory import validate_embeddings

    faiss.omp_set_num_threads(threads)
    index = faiss.read_index(trained_file)
    rows = NpyRows(files)
    dim = index.d

    def read(a, b):  # validated once, in the first (assignment) pass or the plain add
        x = rows.read(start + a, start + b)
        if a not in checked:
            checked.add(a)
            x = validate_embeddings(x, dim, metric=metric, check_norm=check_norm,
                                    name=f"embeddings rows {start + a}..{start + b - 1} (row numbers "
                                         f"below from {start + a})")
        return x

    checked: set[int] = set()
    ids = np.arange(start, stop, dtype=np.int64)
    if not add_presized(index, read, stop - start, ids, batch_size=batch_size):
        for s in range(0, stop - start, batch_size):
            e = min(stop - start, s + batch_size)
            index.add_with_ids(read(s, e), ids[s:e])
    faiss.write_index(index, out_file)
    del index
    release_freed_memory()
    return stop - start


def _merge(index, shard_files: list[str], ivfdata: Path | None) -> None:
    """Merge shard lists into the empty trained ``index``: on disk (``ivfdata``) or in memory."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    if ivfdata is None:  # lists sized once from the shards' sizes, then filled shard by shard
        parts = [faiss.read_index(f, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) for f in shard_files]
        lists = faiss.downcast_InvertedLists(ivf.invlists)
        src = [faiss.extract_index_ivf(p).invlists for p in parts]
        for lst in range(ivf.nlist):
            sizes = [s.list_size(lst) for s in src]
            if sum(sizes) == 0:
                continue
            lists.resize(lst, sum(sizes))
            offset = 0
            for s, size in zip(src, sizes, strict=True):
                if size:
                    lists.update_entries(lst, offset, size, s.get_ids(lst), s.get_codes(lst))
                    offset += size
        index.ntotal = ivf.ntotal = sum(int(p.ntotal) for p in parts)
        del parts, src
        return
    parts = [faiss.read_index(f, faiss.IO_FLAG_MMAP) for f in shard_files]
    lists = faiss.InvertedListsPtrVector()
    for p in parts:
        lists.push_back(faiss.extract_index_ivf(p).invlists)
    with _c_stdout_to_stderr():
        od = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(ivfdata))
        ntotal = od.merge_from_multiple(lists.data(), lists.size(), False)
    index.ntotal = ivf.ntotal = ntotal
    ivf.replace_invlists(od, True)
    od.this.disown()
    del parts


def build_sharded(vectors, ids: Sequence[str], out, *, factory_string: str, metric: str = "ip",
                  metadata: pd.DataFrame | None = None, encoder: dict | None = None,
                  max_memory_bytes: int | str | None = None, on_disk: bool | None = None,
                  n_workers: int = 2, shard_size: int | None = None, train_sample: int | None = None,
                  batch_size: int | None = None, threads_per_worker: int = 1, seed: int = 0,
                  device: str = "auto", check_norm: bool = True, progress: bool = False):
    """Build an IVF index from ``.npy`` files in worker processes; save a VideoIndex folder.

    Parameters
    ----------
    vectors : path-like, sequence of path-like, or NpyRows
        The float ``(n, d)`` embeddings (row ``i`` gets faiss id ``i`` and ``ids[i]``), read
        batch by batch with file reads.
    ids : sequence of str
        ``n`` unique ``video_id``.
    out : path-like
        Index folder (replaced atomically).
    factory_string : str
        An IVF factory string (``"IVF1024,SQ8"``, ``"IVF4096,PQ64x8"``, ``"OPQ16_64,IVF..."``).
    metric : {"ip", "l2"}
    metadata, encoder, check_norm, seed, device :
        As :meth:`embeddings.index.video_index.VideoIndex.build` (training runs on the GPU when asked).
    max_memory_bytes : int, str or None
        Memory budget: training-sample rows, batch and shard sizes follow
        :func:`embeddings.index.plan.plan_build`; refused when nothing fits.
    on_disk : bool or None
        Merge into ``out/index.ivfdata`` (True), into memory (False), or as the plan says
        (None: on disk only when the in-memory index would not fit the budget).
    n_workers : int
        Worker processes (spawned) adding shards concurrently; 1 adds them in this process.
    shard_size : int, optional
        Rows per shard (default from the plan: ``ceil(n / n_workers)`` or what fits).
    train_sample, batch_size : int, optional
        Override the plan's training rows and rows per add call.
    threads_per_worker : int
        OpenMP threads inside each worker (keep ``n_workers * threads`` <= cores).
    progress : bool
        tqdm bar over finished shards.

    Returns
    -------
    VideoIndex
        Loaded from ``out`` (memory-mapped and read-only when on disk); ``build_info`` holds
        the plan and the ``train_s``, ``add_s``, ``merge_s``, ``save_s`` timings. An on-disk
        index searches on the CPU (``use_device("cuda")`` copies it to a GPU where it fits);
        an in-memory one on ``device`` (:meth:`VideoIndex.use_device`).

    Raises
    ------
    ValueError
        A non-IVF factory string (names IVF alternatives), bad ids/metadata/sizes, bad vectors
        (NaN/inf or non-unit rows, named by row), too few training rows, or a budget nothing
        fits (from :func:`embeddings.index.plan.plan_build`).
    """
    import faiss

    from embeddings.index.factory import normalize_metadata, validate_embeddings, validate_ids
    from embeddings.index.io import save_index
    from embeddings.index.plan import plan_build
    from embeddings.index.video_index import (
        VideoIndex,
        _resolve_device,
        disable_polysemous_training,
    )

    for name, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: got {value!r}; expected a positive int")
    rows = vectors if isinstance(vectors, NpyRows) else NpyRows(vectors)
    n, d = rows.shape
    id_list = validate_ids(ids, n)
    meta = normalize_metadata(metadata, id_list)
    plan = plan_build(factory_string, n, d, max_memory_bytes=max_memory_bytes, metric=metric,
                      train_sample=train_sample, batch_size=batch_size, n_workers=n_workers,
                      on_disk=on_disk, shard_rows=shard_size, sharded=True)
    index = faiss.index_factory(d, factory_string, faiss.METRIC_INNER_PRODUCT if metric == "ip"
                                else faiss.METRIC_L2)
    if faiss.try_extract_index_ivf(index) is None:
        raise ValueError(f"factory_string: {factory_string!r} is not an IVF index; sharded builds "
                         "merge inverted lists (e.g. 'IVF1024,SQ8', 'IVF1024,PQ32x8'); build other "
                         "types in memory with VideoIndex.build (no --workers)")
    disable_polysemous_training(index)
    logger.info("build plan for %s: %s (estimated peak %s)", factory_string, plan.reason,
                plan.to_dict()["estimated_peak"])
    info: dict = {"plan": plan.to_dict(), "path": "sharded on disk" if plan.on_disk
                  else "sharded, merged in memory"}
    t0 = time.perf_counter()
    x_train = VideoIndex._training_sample(index, factory_string, rows, plan.train_rows or None, seed)
    if isinstance(x_train, NpyRows):
        x_train = rows.read(0, n)
    x_train = validate_embeddings(x_train, d, metric=metric, check_norm=check_norm)
    index = VideoIndex._train(index, x_train, _resolve_device(device), device)
    del x_train
    release_freed_memory()
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = min(int(ivf.nlist), max(1, round(ivf.nlist ** 0.5)))  # as VideoIndex.build
    info["train_s"] = time.perf_counter() - t0

    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.shards.", dir=out.parent))
    try:
        trained = str(work / "trained.index")
        faiss.write_index(index, trained)
        shard = plan.shard_rows or n or 1
        bounds = [(s, min(n, s + shard)) for s in range(0, n, shard)]
        jobs = [(trained, [str(f) for f in rows.files], s, e, str(work / f"shard-{i:05d}.index"),
                 threads_per_worker, min(plan.batch_rows, shard), metric, check_norm)
                for i, (s, e) in enumerate(bounds)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="vec", desc="adding shards")
        t0 = time.perf_counter()
        if n_workers == 1:  # in this process (no spawn cost); threads restored afterwards
            before = faiss.omp_get_max_threads()
            try:
                for job in jobs:
                    done = _add_shard(*job)
                    if bar is not None:
                        bar.update(done)
            finally:
                faiss.omp_set_num_threads(before)
        else:
            with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
                for fut in as_completed([pool.submit(_add_shard, *job) for job in jobs]):
                    done = fut.result()
                    if bar is not None:
                        bar.update(done)
        if bar is not None:
            bar.close()
        info["add_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = work / "index.ivfdata" if plan.on_disk else None
        _merge(index, [j[4] for j in jobs], data)
        if int(index.ntotal) != n:
            raise RuntimeError(f"merged index holds {index.ntotal} vectors, expected {n}; rebuild")
        info["merge_s"] = time.perf_counter() - t0
        release_freed_memory()
        vi = VideoIndex(index, factory_string=factory_string, metric=metric, dim=d, encoder=encoder,
                        check_norm=check_norm)
        vi._faiss_ids = np.arange(n, dtype=np.int64)
        vi._video_ids = np.array(id_list, dtype=object)
        vi._lookup = dict(zip(id_list, range(n), strict=True))
        vi._metadata = meta
        vi._next_id = n
        vi.build_info = info
        t0 = time.perf_counter()
        save_index(vi, out, ivfdata=data)
        info["save_s"] = time.perf_counter() - t0
        del vi, index, id_list, meta  # the loaded index builds its own tables
        release_freed_memory()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info.update({k: round(v, 3) for k, v in info.items() if isinstance(v, float)})
    logger.info("sharded build of %s: %d vectors in %d shards, %s (train %.1fs, add %.1fs, merge %.1fs)",
                factory_string, n, len(bounds), info["path"], info["train_s"], info["add_s"],
                info["merge_s"])
    # lists on disk are served memory-mapped from the CPU; in memory, searches go where `device` says
    loaded = VideoIndex.load(out, mmap=plan.on_disk, verify_checksums=False,
                             device="cpu" if plan.on_disk else device)
    loaded.build_info = info
    return loaded


def build_from_embedding_folder(emb_dir, out, *, metadata: pd.DataFrame, factory_string: str, **kwargs):
    """Build an index folder from the shard ``.npy`` files of an embedding folder (``recsys embed``).

    IVF factory strings go through :func:`build_sharded` (batches read from the files, in
    memory or on disk as the plan says); other strings (``"Flat"``, ``"HNSW32,Flat"``) are
    built in memory by :meth:`embeddings.index.video_index.VideoIndex.build` under the same budget, when
    no worker processes or on-disk lists are asked for, and saved to ``out``.

    Parameters
    ----------
    emb_dir : path-like
        A finished embedding folder.
    out : path-like
        Index folder (replaced atomically).
    metadata : pandas.DataFrame
        One row per embedded video in shard order with a ``video_id`` column
        (``recsys.app.stages.index_metadata``).
    factory_string : str
    **kwargs
        :func:`build_sharded` arguments (``metric``, ``max_memory_bytes``, ``on_disk``,
        ``n_workers``, ...); ``encoder`` defaults to the folder's.

    Returns
    -------
    VideoIndex
        As saved in ``out`` (``build_info`` holds the plan and timings).

    Raises
    ------
    EmbeddingFolderError
        ``emb_dir`` is unfinished.
    ValueError
        The folder holds no embedded video, ``metadata`` does not align with it, or what
        :func:`build_sharded` / :meth:`VideoIndex.build` raise.
    """
    import faiss

    from embeddings.index.video_index import VideoIndex
    from embeddings.store import SHARD_DIR, EmbeddingFolder

    folder = EmbeddingFolder.open(emb_dir)
    files = [folder.path / SHARD_DIR / f"{s}.npy" for s in folder.shard_stems()]
    rows = NpyRows(files)
    if len(rows) == 0:
        raise ValueError(f"{emb_dir} holds no embedded video (see its errors.parquet); nothing to index")
    if len(metadata) != len(rows):
        raise ValueError(f"metadata: {len(metadata)} rows but {emb_dir} holds {len(rows)} embedded videos; "
                         "pass one row per embedded video in shard order")
    kwargs.setdefault("encoder", folder.encoder)
    ids = metadata["video_id"].astype(str).tolist()
    try:
        ivf = faiss.try_extract_index_ivf(faiss.index_factory(rows.dim, factory_string)) is not None
    except RuntimeError:
        ivf = False  # VideoIndex.build names the problem
    if not ivf and kwargs.get("n_workers", 1) == 1 and not kwargs.get("on_disk"):
        keep = ("metric", "encoder", "max_memory_bytes", "train_sample", "seed", "device", "check_norm",
                "progress")
        vi = VideoIndex.build(rows.read(0, len(rows)), ids, metadata=metadata, factory_string=factory_string,
                              **{k: v for k, v in kwargs.items() if k in keep})
        vi.save(out)
        return vi
    return build_sharded(rows, ids, out, factory_string=factory_string, metadata=metadata, **kwargs)
