"""FAISS index addressed by external string ids (``video_id``), with metadata kept in step.

``VideoIndex`` wraps any faiss factory string. External ``video_id`` strings map to
int64 faiss ids through a table persisted as ``ids.parquet`` (``video_id``,
``faiss_id``); faiss ids are assigned monotonically and never reused. IVF-family
indexes (including ``OPQ..,IVF..``) store those ids natively (``add_with_ids``);
every other index is wrapped in ``faiss.IndexIDMap2``. Indexes whose faiss class
cannot remove vectors (HNSW) keep removed ids as tombstones that every search
filters out with an ``IDSelector``; they are still counted in the index file.

Metrics: ``"ip"`` (default) expects L2-normalised vectors so that the inner product
is the cosine similarity; ``build``/``add`` check the row norms (``check_norm``).
Queries are validated (shape, dtype, finite values) but never normalised: a query of
norm ``c`` scales every score by ``c`` without changing the ranking. ``"l2"`` reports
``score = -squared_L2_distance`` so that scores are always descending.

Thread safety: ``add``/``remove``/``upsert``/``set_search_params`` take an exclusive
(reentrant) writer lock; ``search``/``reconstruct``/``save`` take a shared reader
lock, so any number of searches run concurrently but never while the index is being
modified (faiss does not allow reads during ``add``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from embeddings.index.device import GPU_MAX_K, _resolve_device, _to_gpu
from embeddings.index.factory import (
    choose_factory,
    default_nlist,
    normalize_metadata,
    parse_search_params,
    parse_size,
    validate_embeddings,
    validate_ids,
)
from embeddings.index.io import FORMAT_VERSION, IndexFileError, load_index, save_index
from embeddings.index.lists import add_presized, release_freed_memory
from embeddings.index.lock import _GIL, _Read, _ReadWriteLock, _Write
from embeddings.index.plan import plan_build

__all__ = [
    "FORMAT_VERSION",
    "IndexFileError",
    "SearchResult",
    "VideoIndex",
    "choose_factory",
    "parse_size",
]

logger = logging.getLogger(__name__)

#: Vectors added per faiss ``add_with_ids`` call (bounds the temporary memory of an add).
ADD_BATCH = 65_536
_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


@dataclass
class SearchResult:
    """Top-k results for a batch of queries.

    Attributes
    ----------
    ids : np.ndarray
        object ``(n_queries, k)`` of ``video_id`` strings; padding ``None``.
    indices : np.ndarray
        int64 ``(n_queries, k)`` internal faiss ids; padding ``-1``.
    scores : np.ndarray
        float32 ``(n_queries, k)``, descending per row; padding ``-inf``. Inner product
        for ``metric="ip"``, negative squared L2 distance for ``metric="l2"``.
    """

    ids: np.ndarray
    indices: np.ndarray
    scores: np.ndarray

    def to_records(self, metadata: pd.DataFrame | None = None) -> list[list[dict]]:
        """Per query, a list of ``{"rank", "video_id", "score", **metadata columns}``.

        ``rank`` starts at 1; padding entries are left out (lists may be shorter than k).
        ``metadata`` needs a ``video_id`` column (e.g. ``VideoIndex.metadata``); ids
        absent from it get only rank, video_id and score. Metadata values are JSON-ready: a
        missing value (NaN in a column other rows fill) is None, a synthetic clip's
        ``source_shots`` a list of dicts (stored as JSON text), ``seed`` an int.
        """
        lookup: dict[str, dict] = {}
        if metadata is not None:
            if "video_id" not in metadata.columns:
                raise ValueError(
                    f"metadata: columns {list(metadata.columns)} lack 'video_id'; pass "
                    "VideoIndex.metadata or a DataFrame with a video_id column"
                )
            wanted = {v for v in self.ids.ravel() if v is not None}
            rows = metadata[metadata["video_id"].isin(wanted)]
            for row in rows.to_dict(orient="records"):
                lookup[row.pop("video_id")] = {col: _metadata_value(col, v) for col, v in row.items()}
        out = []
        for ids_row, score_row in zip(self.ids, self.scores, strict=True):
            records = []
            for rank, (vid, score) in enumerate(zip(ids_row, score_row, strict=True), start=1):
                if vid is None:
                    continue
                records.append({"rank": rank, "video_id": vid, "score": float(score),
                                **lookup.get(vid, {})})
            out.append(records)
        return out


def _metadata_value(col: str, value):
    """One metadata cell as a plain, JSON-ready value (see :meth:`SearchResult.to_records`)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # the column is missing for this row (e.g. a synthetic clip has no caption)
    if value is pd.NaT or value is pd.NA:
        return None
    if col == "source_shots" and isinstance(value, str):
        try:
            return json.loads(value)  # stored as JSON text in the Parquet metadata
        except json.JSONDecodeError:
            return value
    if col == "seed" and isinstance(value, float) and value.is_integer():
        return int(value)  # a float column because real items have none
    return value


_NO_IDS = np.zeros(0, dtype=np.int64)
_FLOAT32 = np.dtype(np.float32)  # identity test in the one-query fast path (cheaper than ==)
_INT64 = np.dtype(np.int64)
# bound once: the one-query path calls them on every search
_isfinite, _empty, _ptr, _norm_sqr = math.isfinite, np.empty, faiss.swig_ptr, faiss.fvec_norm_L2sqr


def _padded(nq: int, k: int) -> SearchResult:
    return SearchResult(np.full((nq, k), None, dtype=object), np.full((nq, k), -1, dtype=np.int64),
                        np.full((nq, k), -np.inf, dtype=np.float32))


def disable_polysemous_training(index) -> None:
    """Switch off faiss's polysemous training on ``IndexPQ`` / ``IndexIVFPQ`` (in place).

    ``faiss.index_factory`` turns it on for every 8-bit PQ (``"PQ16x8"``, ``"IVF..,PQ..x8"``)
    unless the string ends in ``np``. It re-orders the PQ centroids by simulated annealing
    (faiss/impl/PolysemousTraining.cpp) so Hamming distances approximate PQ distances; this
    costs 20-40 s per training even on 1,000 vectors (measured here: ``IndexPQ`` 4x8 on
    1000 x 64 took 35 s with it, 1.1 s without) and only helps searches that set
    ``polysemous_ht``, which ``VideoIndex`` never does. Recall and codes are otherwise the same.
    """
    for candidate in (index, faiss.try_extract_index_ivf(index)):
        if candidate is None:
            continue
        inner = faiss.downcast_index(candidate)
        if hasattr(inner, "do_polysemous_training"):
            inner.do_polysemous_training = False


def add_in_batches(index, x: np.ndarray, ids: np.ndarray, *, batch_size: int = ADD_BATCH,
                   progress: bool = False) -> None:
    """``index.add_with_ids`` in slices of ``batch_size`` rows (optional tqdm progress bar).

    ``x`` float32 ``(n, d)`` (a ``np.memmap`` works: each slice is read when added), ``ids``
    int64 ``(n,)``. Temporary memory is bounded by one batch. Plain IVF-Flat/SQ/PQ indexes
    get their lists sized once (:func:`embeddings.index.lists.add_presized`: same entries,
    no ``std::vector`` doubling slack).
    """
    n = len(x)
    if add_presized(index, lambda s, e: np.ascontiguousarray(x[s:e], dtype=np.float32), n, ids,
                    batch_size=batch_size, progress=progress):
        return
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=-(-n // batch_size), unit="batch", desc="adding vectors")
    for s in starts:
        index.add_with_ids(np.ascontiguousarray(x[s:s + batch_size], dtype=np.float32),
                           np.ascontiguousarray(ids[s:s + batch_size]))


class VideoIndex:
    """FAISS index addressed by ``video_id`` strings, with a metadata DataFrame in step.

    Create with :meth:`build` or :meth:`load`, not ``__init__``. Attributes:
    ``ntotal`` (live vectors), ``dim``, ``metric``, ``factory_string``, ``encoder``,
    ``metadata`` (copy; one row per id in index order, ``video_id`` first, bool
    ``synthetic`` column), ``read_only`` (True after ``load(mmap=True)``), ``device``
    (``"cpu"``, ``"cuda"`` or ``"cuda:N"``: where unfiltered searches run, see :meth:`use_device`).
    """

    def __init__(self, index, *, factory_string: str, metric: str, dim: int,
                 encoder: dict | None, check_norm: bool):
        self._index = index
        self.factory_string = factory_string
        self.metric = metric
        self.dim = int(dim)
        self.encoder = encoder
        self.check_norm = bool(check_norm)
        self.read_only = False
        self._faiss_ids = np.zeros(0, dtype=np.int64)  # live ids, ascending = index order
        self._video_ids = np.zeros(0, dtype=object)
        self._lookup: dict[str, int] = {}
        self._metadata = normalize_metadata(None, [])
        self._tombstones = np.zeros(0, dtype=np.int64)
        self._next_id = 0
        self._source_file: Path | None = None
        self._lock = _ReadWriteLock()
        self._snap: tuple | None = None  # cached state of the one-query path (_snapshot)
        # GPU search copy (see use_device): rebuilt lazily after writes, searched one call at a
        # time (faiss GPU resources are not thread-safe)
        self._gpu: int | None = None
        self.device = "cpu"
        self._replica = None
        self._gpu_mutex = threading.Lock()
        self.tuning: dict | None = None  # measured search params + recall (index.tune)
        # absolute path of the embedding folder the index was built from (manifest "embeddings"),
        # so `recsys query --backfill montage` finds its shots without --embeddings
        self.embeddings_dir: str | None = None
        self.progress = False  # tqdm bar while adding in batches

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, embeddings: np.ndarray, ids: Sequence[str], *,
              metadata: pd.DataFrame | None = None, factory_string: str | None = "Flat",
              metric: str = "ip", encoder: dict | None = None, train_sample: int | None = None,
              max_memory_bytes: int | str | None = None, device: str = "auto",
              check_norm: bool = True, seed: int = 0,
              train_threads: int | None = None, progress: bool = False) -> VideoIndex:
        """Build an index over ``embeddings`` addressed by ``ids``.

        Parameters
        ----------
        embeddings : np.ndarray
            float ``(n, d)`` (cast to float32); L2-normalised rows when ``metric="ip"``
            and ``check_norm`` (tolerance 1e-3 on the norm).
        ids : sequence of str
            ``n`` unique non-empty ``video_id`` strings.
        metadata : pd.DataFrame, optional
            ``n`` rows aligned with ``ids``; a ``video_id`` column, if present, must equal
            ``ids``. A bool ``synthetic`` column is added (False) when missing.
        factory_string : str or None
            Any faiss factory string (``"Flat"``, ``"HNSW32,Flat"``, ``"IVF1024,PQ16x8"``,
            ...) without an ``IDMap`` prefix. None or ``"auto"`` uses the first entry of
            :func:`choose_factory` (reason logged).
        metric : {"ip", "l2"}
        encoder : dict, optional
            ``ClipEncoder.describe()``; saved in the manifest and checked by ``load``.
        train_sample : int, optional
            Vectors used to train IVF/PQ (random rows, ``seed``); default
            ``min(n, 256 * nlist)`` (faiss k-means itself subsamples to 256 per centroid),
            fewer when a budget says so.
        max_memory_bytes : int or str, optional
            Memory budget (see :func:`parse_size`): picks the index for ``"auto"`` and
            bounds the build (:func:`embeddings.index.plan.plan_build`: training-sample rows
            and rows per add call derived from it, estimated peak logged and saved in the
            manifest as ``build``). A build that cannot fit in memory is refused; the error
            says when the on-disk build (:func:`embeddings.index.shards.build_sharded`) fits.
            Input vectors the caller holds are not counted.
        device : {"auto", "cpu", "cuda", "cuda:N"}
            Where faiss sees GPUs (``auto``) or when asked for: IVF training (k-means, the
            expensive step) runs on the GPU(s) via ``faiss.index_cpu_to_all_gpus`` (or
            ``index_cpu_to_gpu`` for ``cuda:N``), and searches run on a GPU copy of the
            index (:meth:`use_device`). The CPU index stays the master: vectors are added
            to it and it is what :meth:`save` writes, so the saved index is always a CPU
            index. Index types faiss cannot run on a GPU (HNSW, PQ without IVF) search on
            the CPU (a warning says so). Without GPUs, ``auto`` builds and searches on the
            CPU (logged) and ``cuda`` raises.

        Notes
        -----
        IVF indexes start with ``nprobe = round(sqrt(nlist))`` (faiss's own default of 1
        gives poor recall); change it per call with ``search_params`` or persistently with
        :meth:`set_search_params` (saved with the index).
        check_norm : bool
            Reject non-unit rows for ``metric="ip"`` (pass False for maximum inner product
            search over unnormalised vectors).
        seed : int
            Seed of the training sample.
        train_threads : int, optional
            OpenMP threads for CPU training only (restored afterwards). PQ training runs
            many tiny parallel k-means; on a loaded 2-core machine 1 thread trained
            ``IVF64,PQ16x8`` on SIFT-5k in 4.9 s against 15.2 s with 2 (oversubscription).
        progress : bool
            tqdm progress bar while adding the vectors in batches.

        Returns
        -------
        VideoIndex

        Raises
        ------
        ValueError
            Invalid embeddings (not 2-D float, NaN/inf rows named, non-unit rows), ids
            (duplicates, non-strings, wrong count), metadata, metric, factory string, or
            too few vectors to train (names ``nlist`` and the minimum), or a budget the
            build cannot fit (names the estimate, the budget and the fix).
        RuntimeError
            ``device`` asks for CUDA that faiss cannot see.
        """
        if metric not in _METRICS:
            raise ValueError(f"metric: got {metric!r}; expected 'ip' (cosine on L2-normalised "
                             "vectors) or 'l2'")
        x = validate_embeddings(embeddings, None, metric=metric, check_norm=check_norm)
        n, d = x.shape
        id_list = validate_ids(ids, n)
        meta = normalize_metadata(metadata, id_list)
        if factory_string is None or factory_string == "auto":
            factory_string, reason = choose_factory(n, d, max_memory_bytes=max_memory_bytes,
                                                    metric=metric)[0]
            logger.info("factory_string auto -> %r: %s", factory_string, reason)
        if not isinstance(factory_string, str) or not factory_string.strip():
            raise ValueError(f"factory_string: got {factory_string!r}; expected a faiss factory "
                             "string such as 'Flat', 'HNSW32,Flat', 'IVF1024,Flat' or 'auto'")
        if factory_string.replace(" ", "").upper().startswith("IDMAP"):
            raise ValueError(f"factory_string: got {factory_string!r}; drop the IDMap prefix, "
                             "VideoIndex always maps ids itself (IDMap2 or native IVF ids)")
        try:
            index = faiss.index_factory(d, factory_string, _METRICS[metric])
        except RuntimeError as exc:
            raise ValueError(
                f"factory_string: faiss cannot build {factory_string!r} for dim={d}, "
                f"metric={metric!r} ({str(exc).splitlines()[-1].strip()}); see the faiss wiki "
                "'The index factory' for valid strings, or pass 'auto'") from None
        disable_polysemous_training(index)
        plan = plan_build(factory_string, n, d, max_memory_bytes=max_memory_bytes, metric=metric,
                          train_sample=train_sample, on_disk=False)
        logger.info("build plan for %r over %d x %d: %s; %d training rows, %d rows per add, "
                    "estimated peak %s", factory_string, n, d, plan.reason, plan.train_rows,
                    plan.batch_rows, plan.to_dict()["estimated_peak"])
        native = faiss.try_extract_index_ivf(index) is not None
        gpu = _resolve_device(device)
        if gpu is None and device == "auto":
            logger.info("faiss sees no GPU (faiss-cpu build or no CUDA): building and searching "
                        "%r on the CPU", factory_string)
        if not index.is_trained:
            x_train = cls._training_sample(index, factory_string, x, plan.train_rows or train_sample,
                                           seed)
            index = cls._train(index, x_train, gpu, device, train_threads)
            del x_train
            release_freed_memory()  # the sample and k-means buffers, before the lists grow
        elif gpu is not None:
            logger.info("adding to %r on the CPU (the GPU helps IVF training and search)",
                        factory_string)
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:  # faiss starts at nprobe=1, which gives poor recall
            ivf.nprobe = min(int(ivf.nlist), max(1, round(ivf.nlist ** 0.5)))
        if not native:
            index = faiss.IndexIDMap2(index)
        self = cls(index, factory_string=factory_string, metric=metric, dim=d,
                   encoder=encoder, check_norm=check_norm)
        self.build_info = {"plan": plan.to_dict(), "path": "in memory"}
        self._add_batch = plan.batch_rows
        self.progress = progress
        self._append(x, id_list, meta)
        self._attach_gpu(gpu, device, quiet=True)  # build already said where it runs
        return self

    @staticmethod
    def _training_sample(index, factory_string, x, train_sample, seed) -> np.ndarray:
        ivf = faiss.try_extract_index_ivf(index)
        nlist = int(ivf.nlist) if ivf is not None else None
        pq = re.search(r"(?<![O])PQ\d+(?:x(\d+))?", factory_string)
        ksub = 2 ** int(pq.group(1) or 8) if pq else None
        minimum = max(nlist or 1, ksub or 1)
        default = min(len(x), 256 * (nlist or 256))
        n_train = default if train_sample is None else int(train_sample)
        if train_sample is not None and (isinstance(train_sample, bool) or n_train < 1):
            raise ValueError(f"train_sample: got {train_sample!r}; expected a positive int")
        n_train = min(n_train, len(x))
        if n_train < minimum:
            what = f"nlist={nlist}" if nlist else f"{ksub} PQ centroids"
            raise ValueError(
                f"factory_string {factory_string!r}: training needs at least {minimum} vectors "
                f"({what}; faiss recommends {39 * minimum}), got {n_train}. Fix: use a smaller "
                f"nlist (about {default_nlist(n_train)} for {n_train} vectors), 'Flat' or "
                "'HNSW32,Flat' (no training), or factory_string='auto'")
        if n_train < 39 * minimum:
            logger.warning("training %r on %d vectors; faiss recommends >= %d (39 per centroid)",
                           factory_string, n_train, 39 * minimum)
        if n_train == len(x):
            return x
        rows = np.sort(np.random.default_rng(seed).choice(len(x), n_train, replace=False))
        return x[rows]

    @staticmethod
    def _train(index, x_train, gpu, device, train_threads=None):
        if gpu is not None and faiss.try_extract_index_ivf(index) is not None:
            try:
                if gpu == -1:
                    gpu_index = faiss.index_cpu_to_all_gpus(index)
                else:
                    res = faiss.StandardGpuResources()
                    gpu_index = faiss.index_cpu_to_gpu(res, gpu, index)
                gpu_index.train(x_train)
                logger.info("trained on GPU (%s)", device)
                return faiss.index_gpu_to_cpu(gpu_index)
            except (RuntimeError, AttributeError) as exc:
                if device != "auto":
                    raise RuntimeError(f"device={device!r}: GPU training failed: {exc}") from exc
                logger.warning("GPU training failed (%s); training on the CPU", exc)
        logger.info("training on the CPU with %d vectors", len(x_train))
        before = faiss.omp_get_max_threads()
        if train_threads is not None:
            faiss.omp_set_num_threads(int(train_threads))
        try:
            index.train(x_train)
        finally:
            faiss.omp_set_num_threads(before)
        return index

    # ------------------------------------------------------------- properties
    @property
    def ntotal(self) -> int:
        """Number of live (searchable) vectors."""
        return int(len(self._faiss_ids))

    @property
    def metadata(self) -> pd.DataFrame:
        """Copy of the metadata: one row per id in index order, ``video_id`` first."""
        with _Read(self._lock):
            return self._metadata.copy()

    @property
    def video_ids(self) -> np.ndarray:
        """object ``(ntotal,)`` video ids in index order (copy)."""
        with _Read(self._lock):
            return self._video_ids.copy()

    def __len__(self) -> int:
        return self.ntotal

    def __contains__(self, video_id) -> bool:
        return video_id in self._lookup

    def __repr__(self) -> str:
        return (f"VideoIndex(factory_string={self.factory_string!r}, metric={self.metric!r}, "
                f"dim={self.dim}, ntotal={self.ntotal})")

    # --------------------------------------------------------------- mutation
    def _check_writable(self):
        if self.read_only:
            raise ValueError("this VideoIndex was loaded with mmap=True and is read-only; "
                             "load it with mmap=False to add or remove vectors")

    def _append(self, x: np.ndarray, id_list: list[str], meta: pd.DataFrame) -> None:
        n = len(id_list)
        fids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        if n:
            add_in_batches(self._index, x, fids, progress=self.progress,
                           batch_size=getattr(self, "_add_batch", ADD_BATCH))
        self._next_id += n
        self._faiss_ids = np.concatenate([self._faiss_ids, fids])
        self._video_ids = np.concatenate([self._video_ids, np.array(id_list, dtype=object)])
        self._lookup.update(zip(id_list, fids.tolist(), strict=True))
        if len(self._metadata) == 0:
            cols = list(dict.fromkeys([*meta.columns, *self._metadata.columns]))
            self._metadata = meta.reindex(columns=cols).reset_index(drop=True)
        elif n:
            self._metadata = pd.concat([self._metadata, meta], ignore_index=True)
        self._dropped_copies()

    def add(self, embeddings: np.ndarray, ids: Sequence[str],
            metadata: pd.DataFrame | None = None) -> None:
        """Add vectors; their faiss ids continue after the largest ever assigned.

        Parameters are as in :meth:`build`; missing metadata columns are filled with
        None/NaN (``synthetic`` with False).

        Raises
        ------
        ValueError
            Invalid input (see :meth:`build`), dimension mismatch (names both dims),
            an id already present (use :meth:`upsert`), or a read-only index.
        """
        x = validate_embeddings(embeddings, self.dim, metric=self.metric,
                                check_norm=self.check_norm)
        id_list = validate_ids(ids, len(x))
        meta = normalize_metadata(metadata, id_list)
        with _Write(self._lock):
            self._check_writable()
            present = [v for v in id_list if v in self._lookup]
            if present:
                raise ValueError(f"ids: {len(present)} already in the index (e.g. {present[:5]}); "
                                 "use upsert() to replace them or remove() them first")
            self._append(x, id_list, meta)

    def remove(self, ids: Sequence[str], *, missing: str = "raise") -> int:
        """Remove vectors by ``video_id``; returns how many were removed.

        ``missing="raise"`` (default) raises ValueError naming unknown ids;
        ``missing="ignore"`` skips them. Faiss ids are never reused.
        """
        if missing not in ("raise", "ignore"):
            raise ValueError(f"missing: got {missing!r}; expected 'raise' or 'ignore'")
        id_list = [ids] if isinstance(ids, str) else list(ids)
        with _Write(self._lock):
            self._check_writable()
            unknown = [v for v in id_list if v not in self._lookup]
            if unknown and missing == "raise":
                raise ValueError(f"ids: {len(unknown)} not in the index (e.g. {unknown[:5]}); "
                                 "pass missing='ignore' to skip them")
            fids = np.unique(np.array([self._lookup[v] for v in id_list if v in self._lookup],
                                      dtype=np.int64))
            if len(fids) == 0:
                return 0
            try:
                self._index.remove_ids(faiss.IDSelectorBatch(fids))
            except RuntimeError:
                # faiss class without remove_ids (HNSW): keep tombstones, filtered at search.
                self._tombstones = np.union1d(self._tombstones, fids)
            keep = ~np.isin(self._faiss_ids, fids)
            for v in self._video_ids[~keep]:
                del self._lookup[v]
            self._faiss_ids = self._faiss_ids[keep]
            self._video_ids = self._video_ids[keep]
            self._metadata = self._metadata[keep].reset_index(drop=True)
            self._dropped_copies()
            return int(len(fids))

    def upsert(self, embeddings: np.ndarray, ids: Sequence[str],
               metadata: pd.DataFrame | None = None) -> None:
        """Insert or replace: existing ids are removed, then all rows are appended.

        Replaced rows get new faiss ids (at the end of index order). With
        ``metadata=None`` replaced rows keep their previous metadata.
        """
        x = validate_embeddings(embeddings, self.dim, metric=self.metric,
                                check_norm=self.check_norm)
        id_list = validate_ids(ids, len(x))
        with _Write(self._lock):
            self._check_writable()
            if metadata is None and any(v in self._lookup for v in id_list):
                meta = self._metadata.set_index("video_id").reindex(id_list).reset_index()
                meta["synthetic"] = meta["synthetic"].eq(True)  # new ids: False
            else:
                meta = normalize_metadata(metadata, id_list)
            self.remove([v for v in id_list if v in self._lookup])
            self._append(x, id_list, meta)

    def set_search_params(self, params: str) -> None:
        """Persistently set search knobs with ``faiss.ParameterSpace`` (e.g. ``"nprobe=32"``).

        Saved with the index. For per-call settings pass ``search_params`` to
        :meth:`search` instead. Raises ValueError on a parameter faiss rejects.
        """
        with _Write(self._lock):
            target = self._index.index if isinstance(self._index, faiss.IndexIDMap2) else self._index
            try:
                faiss.ParameterSpace().set_index_parameters(target, params)
            except RuntimeError as exc:
                raise ValueError(f"search params {params!r} rejected by faiss for "
                                 f"{self.factory_string!r}: {str(exc).splitlines()[-1]}") from None
            self._dropped_copies()  # the GPU copy carries the old knobs

    # ----------------------------------------------------------------- search
    def search(self, queries: np.ndarray, k: int = 10, *, exclude_ids=None,
               search_params: str | None = None) -> SearchResult:
        """Top-``k`` neighbours of each query.

        Parameters
        ----------
        queries : np.ndarray
            float ``(n_queries, d)`` or ``(d,)`` (one query); validated, not normalised.
        k : int
            Results per query (>= 1). Rows are padded when fewer vectors qualify
            (``k > ntotal``, empty index, exclusions).
        exclude_ids : iterable of str, optional
            ``video_id`` values never returned (applied inside faiss with an
            ``IDSelectorNot(IDSelectorBatch)``, so ``k`` results come back whenever
            ``k`` other vectors exist). Unknown ids are ignored.
        search_params : str, optional
            Per-call knobs ``"nprobe=16,efSearch=64"`` (``nprobe``, ``max_codes`` for
            IVF; ``efSearch`` for HNSW; ``quantizer_efSearch`` for an HNSW IVF
            quantizer), passed as faiss ``SearchParameters`` (thread-safe).

        Returns
        -------
        SearchResult
            ``(n_queries, k)`` ids / indices / scores, scores descending, padding
            None / -1 / -inf.

        Notes
        -----
        One C-contiguous float32 ``(d,)`` query with no ``exclude_ids`` or
        ``search_params`` takes a serving fast path (:meth:`_search_one`) with the same
        checks and results at about the cost of a raw faiss call (measured by
        ``benchmarks/bench_index.py``, section "overhead").

        Raises
        ------
        ValueError
            Bad queries (dims named), bad ``k``, unknown or inapplicable search params,
            or an index type whose faiss search cannot filter (``exclude_ids`` on PQ).
        """
        if (type(queries) is np.ndarray and queries.dtype is _FLOAT32 and queries.ndim == 1
                and queries.shape[0] == self.dim and queries.strides[0] == 4
                and exclude_ids is None and search_params is None and type(k) is int and k >= 1):
            out = self._search_one(queries, k)
            if out is not None:
                return out
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        q = validate_embeddings(q, self.dim, metric=self.metric, check_norm=False,
                                name="queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: got {k!r}; expected an int >= 1")
        k = int(k)
        excluded = [] if exclude_ids is None else (
            [exclude_ids] if isinstance(exclude_ids, str) else list(exclude_ids))
        knobs = parse_search_params(search_params) if search_params else {}
        nq = len(q)
        with _Read(self._lock):
            excl = np.array(sorted({self._lookup[v] for v in excluded if v in self._lookup}),
                            dtype=np.int64) if excluded else _NO_IDS
            n_live = len(self._faiss_ids)
            k_eff = min(k, n_live - len(excl))
            if nq == 0 or k_eff <= 0:
                return _padded(nq, k)
            if not knobs and not len(excl) and not len(self._tombstones):
                params, keep_alive = None, None  # fast path: persistent knobs live on the index
            else:
                blocked = np.union1d(excl, self._tombstones)
                params, keep_alive = self._search_parameters(knobs, blocked)
            if params is None and k_eff <= GPU_MAX_K:
                index, mutex = self._searcher()
            else:  # faiss GPU indexes take no id selectors: filtered searches run here
                index, mutex = self._index, None
            try:
                if mutex is None:
                    dist, labels = index.search(q, k_eff, params=params)
                else:
                    with mutex:
                        dist, labels = index.search(q, k_eff)
            except RuntimeError as exc:
                raise ValueError(
                    f"faiss index {self.factory_string!r} cannot run this search "
                    f"(exclude_ids/removed ids need IDSelector support; search_params="
                    f"{search_params!r}): {str(exc).splitlines()[-1]}. Fix: use a Flat, IVF or "
                    "HNSW factory string") from None
            del keep_alive
            pos = np.searchsorted(self._faiss_ids, labels)  # padding -1 -> 0, checked below
            np.minimum(pos, n_live - 1, out=pos)
            valid = self._faiss_ids[pos] == labels
            video_ids = self._video_ids[pos]
        if self.metric != "ip":
            dist = -dist
        if k_eff == k and valid.all():
            return SearchResult(video_ids, labels, dist)
        out = _padded(nq, k)
        out.indices[:, :k_eff] = np.where(valid, labels, -1)
        out.scores[:, :k_eff] = np.where(valid, dist, -np.inf)
        out.ids[:, :k_eff] = np.where(valid, video_ids, None)
        return out

    def _search_one(self, q: np.ndarray, k: int) -> SearchResult | None:
        """Serving fast path of :meth:`search` for one float32 ``(d,)`` query, no filters.

        Same checks and results as the general path, at about the cost of a raw faiss call:
        finite values are checked with faiss's ``fvec_norm_L2sqr`` (finite iff every value
        is, barring overflow, which falls back), the reader announces itself without a mutex
        (:class:`_ReadWriteLock`), the state it needs is one cached tuple, and faiss's C++
        search is called through the SWIG ``search_c`` entry that faiss's own Python
        ``search`` wraps. Returns None (the caller then takes the general path, which raises
        the precise errors) for non-finite or overflowing queries, removed ids (tombstones or
        non-dense faiss ids), ``k`` above the live count, a waiting or writing writer, or a
        faiss error.
        """
        if not _GIL or not _isfinite(_norm_sqr(_ptr(q), self.dim)):
            return None  # NaN/inf (the general path names the rows), or free-threaded Python
        lock = self._lock
        fast = lock.fast
        fast.append(None)
        try:
            if lock.fast_closed:
                return None  # a writer waits or writes: the general path queues behind it
            snap = self._snap
            if snap is None or snap[0] is not self._video_ids:
                snap = self._snap = self._snapshot()
            video_ids, search_c, n_fast, negate, mutex = snap
            if k > n_fast:
                return None  # ids not dense 0..n-1, or k > ntotal: the general path pads/maps
            dist = _empty((1, k), _FLOAT32)
            labels = _empty((1, k), _INT64)
            try:
                if mutex is None:
                    search_c(1, _ptr(q), k, _ptr(dist), _ptr(labels), None)
                else:  # the GPU copy, one call at a time
                    with mutex:
                        search_c(1, _ptr(q), k, _ptr(dist), _ptr(labels), None)
            except RuntimeError:
                return None
            video_ids = video_ids[labels]  # faiss id == position when dense
        finally:
            fast.pop()
        if negate:
            np.negative(dist, out=dist)
        if labels.item(k - 1) < 0:  # fewer than k found (IVF nprobe, HNSW); faiss pads at the tail
            valid = labels >= 0
            video_ids[~valid] = None
            dist[~valid] = -np.inf
        return SearchResult(video_ids, labels, dist)

    def _snapshot(self) -> tuple:
        """State the one-query path reads; writes drop it (:meth:`_dropped_copies`) and it is
        also rebuilt when ``_video_ids`` is replaced (every add, remove, upsert and load
        replaces it): ``(video_ids (the object it was built from), bound search_c of the
        index searched (:meth:`_searcher`), largest k served (0: ids not dense 0..n-1, capped
        at GPU_MAX_K on a GPU), negate scores, GPU mutex or None)``."""
        fids = self._faiss_ids
        n_live = len(fids)
        dense = n_live > 0 and not len(self._tombstones) and int(fids[-1]) == n_live - 1
        index, mutex = self._searcher()
        n_fast = n_live if dense else 0
        if mutex is not None:
            n_fast = min(n_fast, GPU_MAX_K)
        return self._video_ids, index.search_c, n_fast, self.metric != "ip", mutex

    def _search_parameters(self, knobs: dict, blocked: np.ndarray):
        inner = self._index.index if isinstance(self._index, faiss.IndexIDMap2) else self._index
        inner = faiss.downcast_index(inner)
        ivf = faiss.try_extract_index_ivf(self._index)
        keep_alive = []
        sel = None
        if len(blocked):
            batch = faiss.IDSelectorBatch(blocked)
            sel = faiss.IDSelectorNot(batch)
            keep_alive += [batch, sel]
        if ivf is not None:
            allowed = {"nprobe", "max_codes", "quantizer_efSearch"}
        elif isinstance(inner, faiss.IndexHNSW):
            allowed = {"efSearch"}
        else:
            allowed = set()
        bad = set(knobs) - allowed
        if bad:
            raise ValueError(
                f"search_params: {sorted(bad)} do not apply to {self.factory_string!r} "
                f"(applicable: {sorted(allowed) or 'none'}); use set_search_params() for other "
                "faiss ParameterSpace knobs")
        if ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = int(knobs.get("nprobe", ivf.nprobe))
            if "max_codes" in knobs:
                params.max_codes = int(knobs["max_codes"])
            if "quantizer_efSearch" in knobs:
                qp = faiss.SearchParametersHNSW()
                qp.efSearch = int(knobs["quantizer_efSearch"])
                params.quantizer_params = qp
                keep_alive.append(qp)
        elif isinstance(inner, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW()
            params.efSearch = int(knobs.get("efSearch", inner.hnsw.efSearch))
        elif sel is None:
            return None, keep_alive
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        keep_alive.append(params)
        return params, keep_alive

    def reconstruct(self, ids: Sequence[str]) -> np.ndarray:
        """Stored vectors for ``ids``: float32 ``(len(ids), d)``.

        Exact for Flat/HNSW/IVF-Flat storage, approximate (decoded codes) for PQ/SQ.
        Raises ValueError for unknown ids.
        """
        id_list = [ids] if isinstance(ids, str) else list(ids)
        ivf = faiss.try_extract_index_ivf(self._index)
        if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
            with _Write(self._lock):  # IVF needs a direct map to find a vector by id
                if ivf.direct_map.type == faiss.DirectMap.NoMap:
                    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        with _Read(self._lock):
            unknown = [v for v in id_list if v not in self._lookup]
            if unknown:
                raise ValueError(f"ids: {len(unknown)} not in the index (e.g. {unknown[:5]})")
            out = np.zeros((len(id_list), self.dim), dtype=np.float32)
            for row, v in enumerate(id_list):
                out[row] = self._index.reconstruct(int(self._lookup[v]))
        return out

    # ---------------------------------------------------------------- persist
    def save(self, folder) -> Path:
        """Write ``folder`` atomically (see :func:`embeddings.index.io.save_index`)."""
        with _Read(self._lock):
            return save_index(self, folder)

    @classmethod
    def load(cls, folder, *, expected_encoder: dict | None = None, mmap: bool = False,
             verify_checksums: bool = True, device: str = "auto") -> VideoIndex:
        """Load a folder written by :meth:`save` (see :func:`embeddings.index.io.load_index`:
        ``expected_encoder`` check, ``mmap`` for IVF lists, checksum verification; raises
        IndexFileError / ValueError). ``device`` as in :meth:`use_device` (``auto``: search
        on the GPU where faiss sees one)."""
        vi = load_index(cls, folder, expected_encoder=expected_encoder, mmap=mmap,
                        verify_checksums=verify_checksums)
        vi.use_device(device)
        return vi

    def use_device(self, device: str = "auto") -> None:
        """Search on ``device`` from now on: ``"cpu"``, ``"cuda"`` (every GPU faiss sees, as
        replicas), ``"cuda:N"``, or ``"auto"`` (the GPUs when faiss sees any, else the CPU).

        On a GPU the index is copied there (``faiss.index_cpu_to_all_gpus`` /
        ``index_cpu_to_gpu``) and searches without ``exclude_ids``, ``search_params``,
        removed ids or ``k`` above :data:`GPU_MAX_K` run on the copy; those others run on the
        CPU index (faiss GPU indexes take no id selectors). Writes (add, remove, upsert,
        set_search_params) go to the CPU index and drop the copy; the next search copies the
        index again (batch your writes).

        Raises
        ------
        RuntimeError
            ``cuda``/``cuda:N`` where faiss sees no such GPU, or an index type faiss cannot
            run on a GPU (HNSW, PQ without IVF; use ``auto`` to search those on the CPU).
        ValueError
            Unknown device string.
        """
        self._attach_gpu(_resolve_device(device), device)

    def _attach_gpu(self, gpu: int | None, device: str, quiet: bool = False) -> None:
        with _Write(self._lock):
            self._gpu, self._replica, self._snap = None, None, None
            self.device = "cpu"
            if gpu is None:
                if device == "auto" and not quiet:
                    logger.info("faiss sees no GPU (faiss-cpu build or no CUDA): searching %r on "
                                "the CPU", self.factory_string)
                return
            try:
                replica = _to_gpu(self._index, gpu)
            except (RuntimeError, AttributeError) as exc:
                msg = (f"faiss cannot search {self.factory_string!r} on a GPU "
                       f"({str(exc).splitlines()[-1] if str(exc) else type(exc).__name__})")
                if device != "auto":
                    raise RuntimeError(f"device={device!r}: {msg}; use an IVF or Flat factory "
                                       "string, or device='auto'/'cpu' to search on the CPU") from exc
                logger.warning("%s: searching on the CPU", msg)
                return
            self._gpu, self._replica = gpu, replica
            self.device = "cuda" if gpu == -1 else f"cuda:{gpu}"
            logger.info("searching %r on %s (a GPU copy of the index)", self.factory_string,
                        self.device)

    def _searcher(self):
        """``(faiss index to search, mutex or None)``: the GPU copy (rebuilt when a write
        dropped it) under its mutex, or the CPU index. Called with the read side held."""
        if self._gpu is None:
            return self._index, None
        with self._gpu_mutex:
            if self._replica is None:
                self._replica = _to_gpu(self._index, self._gpu)
            return self._replica[0], self._gpu_mutex

    def _dropped_copies(self) -> None:
        """After a write (write side held): the GPU copy and the one-query cache are stale."""
        self._snap = None
        if self._gpu is not None:
            self._replica = None
