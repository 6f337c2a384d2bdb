"""Memory plan of an index build under a budget: training sample, add batch, estimated peak, path.

:func:`plan_build` turns ``(factory_string, n, d, budget)`` into a :class:`BuildPlan`: how many
rows to train on, how many to add per faiss call, whether the index is built in memory or
streamed into on-disk inverted lists (:mod:`embeddings.index.shards`), and the estimated peak.
When neither path fits the budget it raises a ``ValueError`` naming what is needed, what was
given and the fix. :meth:`embeddings.index.video_index.VideoIndex.build` and
:func:`embeddings.index.shards.build_sharded` both follow the plan and save it in the manifest
(``"build"``).

What the budget bounds: the memory the build itself allocates (id tables, training sample,
add batch, the index's codes and, for the on-disk path, the worker processes). Not counted:
the caller's process before the build (interpreter and libraries, ~115 MiB with faiss and
pandas here) and the input vectors when the caller holds them in memory. File-backed pages
(a memory-mapped input ``.npy``, memory-mapped on-disk lists) are counted by the kernel in
RSS but are page cache it can drop at any time; ``benchmarks/bench_index.py`` reports the
measured peak RSS next to this estimate.

Model (bytes; constants measured on the 2-core development machine, faiss 1.15.1):

================  =====================================================================
id tables         ``n * ID_TABLE_BYTES`` = 400: the resident ``video_id`` strings, object
                  array, lookup dict, metadata frame and int64 ids (192 B/vector measured)
                  plus the copies made when they are written to and read back from
                  Parquet (~190 B/vector more measured at 200k; pyarrow keeps its pool)
resident index    :func:`embeddings.index.factory.estimate_memory_bytes` (or faiss's code
                  size for other strings); inverted lists of plain IVF-Flat/SQ/PQ are
                  sized once (:mod:`embeddings.index.lists`, exact); others grow as
                  ``std::vector`` (capacity doubling): ``LIST_GROWTH`` = 1.5 x the codes
                  (1.17-1.64 measured, by how batches fall; 2 at worst)
training          ``TRAIN_COPIES * train_rows * d * 4`` (the float32 sample and its
                  residuals / k-means copy, faiss/Clustering.cpp, IndexIVF::train)
adding            ``ADD_COPIES * batch_rows * d * 4`` (float32 batch, residuals, codes)
on-disk worker    ``WORKER_BYTES`` + its shard's lists + one batch (spawned process)
================  =====================================================================

Peak in memory: ``ids + max(training, index + adding)``. Peak on disk (lists streamed to
``index.ivfdata``): ``ids + max(training, n_workers * worker)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

from embeddings.index.factory import estimate_memory_bytes, format_bytes, parse_size
from embeddings.index.lists import _PRESIZABLE

__all__ = ["BuildPlan", "plan_build", "resident_bytes", "ID_TABLE_BYTES", "LIST_GROWTH",
           "TRAIN_COPIES", "ADD_COPIES", "WORKER_BYTES", "ADD_BATCH_MAX", "ADD_BATCH_MIN"]

logger = logging.getLogger(__name__)

ID_TABLE_BYTES = 400
LIST_GROWTH = 1.5
TRAIN_COPIES = 2
ADD_COPIES = 3
WORKER_BYTES = 128 * 1024**2
ADD_BATCH_MAX = 65_536
ADD_BATCH_MIN = 1_024
#: Share of the budget given to one add batch (the rest holds the index).
BATCH_SHARE = 0.05
#: Share of the budget left after the id tables that the training sample may use by default.
TRAIN_SHARE = 0.5


@dataclass(frozen=True)
class BuildPlan:
    """How an index is built under a memory budget (all sizes in bytes).

    Attributes
    ----------
    factory_string : str
    n_vectors, dim : int
    budget_bytes : int or None
        None: no budget (defaults, nothing refused).
    train_rows : int
        Training-sample rows (0 for indexes that need no training).
    batch_rows : int
        Rows per faiss ``add_with_ids`` call.
    on_disk : bool
        True: inverted lists streamed into ``index.ivfdata`` (on-disk sharded path).
    n_workers : int
        Worker processes adding shards (on-disk / sharded path).
    shard_rows : int or None
        Rows per shard (sharded path).
    index_bytes : int
        Estimated resident index in memory (with list growth).
    id_table_bytes, train_bytes, batch_bytes : int
        The parts of the model above.
    in_memory_peak_bytes : int
    on_disk_peak_bytes : int or None
        None for non-IVF indexes (no inverted lists to stream).
    peak_bytes : int
        Estimated peak of the chosen path.
    reason : str
        Why this path and these sizes.
    """

    factory_string: str
    n_vectors: int
    dim: int
    budget_bytes: int | None
    train_rows: int
    batch_rows: int
    on_disk: bool
    n_workers: int
    shard_rows: int | None
    index_bytes: int
    id_table_bytes: int
    train_bytes: int
    batch_bytes: int
    in_memory_peak_bytes: int
    on_disk_peak_bytes: int | None
    peak_bytes: int
    reason: str

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready) with human-readable ``estimated_peak`` and ``budget``."""
        out = asdict(self)
        out["estimated_peak"] = format_bytes(self.peak_bytes)
        out["budget"] = None if self.budget_bytes is None else format_bytes(self.budget_bytes)
        return out


def _empty_index(factory_string: str, dim: int, metric: str):
    import faiss

    mt = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    try:
        return faiss.index_factory(int(dim), factory_string, mt)
    except RuntimeError as exc:
        raise ValueError(f"factory_string: faiss cannot build {factory_string!r} for dim={dim} "
                         f"({str(exc).splitlines()[-1].strip()}); see the faiss wiki 'The index "
                         "factory' for valid strings") from None


def resident_bytes(factory_string: str, n_vectors: int, dim: int, metric: str = "ip",
                   index=None) -> tuple[int, int | None]:
    """Estimated resident bytes of the built index, and the per-vector bytes of its IVF lists.

    Parameters
    ----------
    factory_string : str
        Any faiss factory string.
    n_vectors, dim : int
    metric : {"ip", "l2"}
    index : faiss.Index, optional
        The empty index of ``factory_string`` (built here when not given).

    Returns
    -------
    (int, int or None)
        Resident bytes including :data:`LIST_GROWTH` on in-memory inverted lists; bytes per
        vector in the inverted lists (code + 8-byte id) or None for non-IVF indexes.

    Raises
    ------
    ValueError
        faiss cannot build ``factory_string``.
    """
    import faiss

    index = _empty_index(factory_string, dim, metric) if index is None else index
    n, d = int(n_vectors), int(dim)
    ivf = faiss.try_extract_index_ivf(index)
    table = estimate_memory_bytes(factory_string, n, d)
    if ivf is not None:
        per_vec = int(ivf.code_size) + 8
        lists = n * per_vec
        exact = type(faiss.downcast_index(index)).__name__ in _PRESIZABLE
        other = (table - lists) if table is not None else 4 * d * int(ivf.nlist) + 4 * d * d
        refine = faiss.downcast_index(index)
        if isinstance(refine, faiss.IndexRefine):  # "...,RFlat" / "Refine(...)": full codes too
            other += n * int(refine.refine_index.sa_code_size())
        return int(math.ceil(lists * (1.0 if exact else LIST_GROWTH))) + max(0, int(other)), per_vec
    if table is not None:
        return int(table), None
    try:
        code = int(index.sa_code_size())
    except RuntimeError:
        code = 4 * d  # no code size known: count full float32 vectors
    return n * (code + 16), None  # codes + IDMap2 id and reverse map


def _train_minimum(index, factory_string: str) -> tuple[int, int]:
    """(minimum training rows, default training rows per n=inf) for an untrained index."""
    import re

    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    nlist = int(ivf.nlist) if ivf is not None else None
    pq = re.search(r"(?<![O])PQ\d+(?:x(\d+))?", factory_string)
    ksub = 2 ** int(pq.group(1) or 8) if pq else None
    return max(nlist or 1, ksub or 1), 256 * (nlist or 256)


def _positive(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name}: got {value!r}; expected a positive int or None")


def plan_build(factory_string: str, n_vectors: int, dim: int, *,
               max_memory_bytes: int | str | None = None, metric: str = "ip",
               train_sample: int | None = None, batch_size: int | None = None,
               n_workers: int = 1, on_disk: bool | None = None,
               shard_rows: int | None = None, sharded: bool = False) -> BuildPlan:
    """Plan a build of ``factory_string`` over ``n_vectors`` x ``dim`` under a memory budget.

    Parameters
    ----------
    factory_string : str
        Any faiss factory string (without ``IDMap``).
    n_vectors, dim : int
    max_memory_bytes : int, str or None
        Budget (``"1G"``, :func:`embeddings.index.factory.parse_size`); None: no limit,
        faiss defaults (training sample ``min(n, 256 * nlist)``, batches of 65,536 rows).
    metric : {"ip", "l2"}
    train_sample : int, optional
        Training rows asked for; refused (not shrunk) when they do not fit the budget.
        Default: ``min(n, 256 * nlist)`` (faiss k-means uses at most 256 per centroid),
        capped so the sample takes at most ``TRAIN_SHARE`` of the budget left after the id
        tables.
    batch_size : int, optional
        Rows per add call; default ``BATCH_SHARE`` of the budget (1,024 to 65,536 rows).
    n_workers : int
        Worker processes of the sharded path (each costs ``WORKER_BYTES`` when > 1).
    on_disk : bool or None
        Force (True) or forbid (False) the on-disk path; None picks in memory when it fits
        the budget, else on disk when that fits (IVF indexes only).
    shard_rows : int, optional
        Rows per shard for the sharded path; default the most that fit the budget, at most
        ``ceil(n / n_workers)``.
    sharded : bool
        The build adds shards and merges them (:func:`embeddings.index.shards.build_sharded`):
        merged in memory, the full lists and one shard's lists coexist while merging.

    Returns
    -------
    BuildPlan

    Raises
    ------
    ValueError
        Bad arguments; ``on_disk=True`` for a non-IVF index; a ``train_sample`` larger than
        the budget allows; a budget too small for the minimum training sample; or neither the
        in-memory nor the on-disk build fitting the budget. Messages name the estimate
        needed, the budget given and the fix.
    """
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric: got {metric!r}; expected 'ip' or 'l2'")
    for name, value in (("n_vectors", n_vectors), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: got {value!r}; expected an int >= 0")
    for name, value in (("train_sample", train_sample), ("batch_size", batch_size),
                        ("n_workers", n_workers), ("shard_rows", shard_rows)):
        _positive(name, value)
    n, d = int(n_vectors), int(dim)
    budget = None if max_memory_bytes is None else parse_size(max_memory_bytes)
    import faiss

    index = _empty_index(factory_string, max(d, 1), metric)

    is_ivf = faiss.try_extract_index_ivf(index) is not None
    if on_disk and not is_ivf:
        raise ValueError(f"on_disk=True: {factory_string!r} has no inverted lists to keep on disk; "
                         "use an IVF factory string such as 'IVF1024,SQ8' or 'IVF1024,PQ32x8', "
                         "or on_disk=False")
    index_bytes, per_vec = resident_bytes(factory_string, n, d, metric, index=index)
    ids = n * ID_TABLE_BYTES
    row = 4 * d
    if batch_size is not None:
        batch = batch_size
    elif budget is None:
        batch = ADD_BATCH_MAX
    else:
        batch = int(BATCH_SHARE * budget // (ADD_COPIES * row)) // ADD_BATCH_MIN * ADD_BATCH_MIN
        batch = min(ADD_BATCH_MAX, max(ADD_BATCH_MIN, batch))
    batch = max(1, min(batch, n)) if n else batch
    batch_bytes = ADD_COPIES * batch * row

    ivf0 = faiss.try_extract_index_ivf(index)
    m = next((m for m in (64, 32, 16, 8, 4, 2, 1) if d % m == 0 and m <= max(d, 1)), 1)
    smaller = f"IVF{int(ivf0.nlist) if ivf0 is not None else 1024},PQ{m}x8"
    fix = ("Fix: raise the budget (--max-memory / max_memory_bytes), choose a smaller code "
           f"(e.g. {smaller!r}), or build on disk with fewer workers (--workers)")
    train = 0
    if not index.is_trained:
        minimum, per_list = _train_minimum(index, factory_string)
        default = min(n, per_list)
        cap = None if budget is None else int(TRAIN_SHARE * max(0, budget - ids)) // (TRAIN_COPIES * row)
        if train_sample is not None:
            train = min(train_sample, n)
            if cap is not None and train > cap:
                raise ValueError(
                    f"train_sample: {train} rows need ~{format_bytes(ids + TRAIN_COPIES * train * row)}"
                    f" to train {factory_string!r} (with the id tables of {n} vectors), more than the "
                    f"budget {format_bytes(budget)}; pass train_sample <= {cap} or leave it unset")
        else:
            train = default if cap is None else min(default, cap)
        if budget is not None and train < min(minimum, n):
            raise ValueError(
                f"max_memory_bytes: {format_bytes(budget)} leaves room for {train} training rows, "
                f"but {factory_string!r} needs at least {minimum} "
                f"(~{format_bytes(ids + TRAIN_COPIES * minimum * row)} with the id tables); "
                + fix)
    train_bytes = TRAIN_COPIES * train * row
    in_mem = ids + max(train_bytes, index_bytes + batch_bytes)

    disk_peak, shard = None, shard_rows
    if is_ivf and per_vec is not None:
        worker_base = WORKER_BYTES if n_workers > 1 else 0
        if shard is None:
            per_shard = math.ceil(n / n_workers) if n else 1
            if budget is None:
                shard = per_shard
            else:
                room = (budget - ids) // n_workers - worker_base - batch_bytes
                shard = min(per_shard, max(0, int(room // (per_vec * LIST_GROWTH))))
        if shard >= 1 or n == 0:
            worker = worker_base + int(math.ceil(shard * per_vec * LIST_GROWTH)) + batch_bytes
            disk_peak = ids + max(train_bytes, n_workers * worker)

    if sharded and is_ivf and per_vec is not None and shard:
        shard_lists = int(min(shard, n) * per_vec * LIST_GROWTH)
        in_mem = max(in_mem, ids + max(n_workers * (worker_base + shard_lists + batch_bytes),
                                       index_bytes + shard_lists))

    def fits(peak):
        return peak is not None and (budget is None or peak <= budget)

    if on_disk is None:
        use_disk = not fits(in_mem) and fits(disk_peak)
    else:
        use_disk = bool(on_disk)
    peak = disk_peak if use_disk else in_mem
    if budget is not None and not fits(peak):
        what = "on disk" if use_disk else "in memory"
        other = ("" if disk_peak is None or use_disk else
                 f"; streaming the lists to disk would need ~{format_bytes(disk_peak)} (Fix: "
                 "embeddings.index.shards.build_sharded or `recsys index build --on-disk yes`)")
        if disk_peak is None and is_ivf:
            other = "; on disk, no shard of at least one add batch fits either"
        raise ValueError(
            f"max_memory_bytes: building {factory_string!r} over {n} x {d} {what} needs "
            f"~{format_bytes(peak)} (index ~{format_bytes(index_bytes)}, id tables "
            f"~{format_bytes(ids)}, training {train} rows ~{format_bytes(train_bytes)}), more "
            f"than the budget {format_bytes(budget)}{other}. "
            + fix)
    if budget is None:
        reason = "no memory budget: faiss defaults"
    elif use_disk:
        reason = (f"in memory would need ~{format_bytes(in_mem)} > budget {format_bytes(budget)}; "
                  f"inverted lists streamed to disk in shards of {shard} rows, "
                  f"~{format_bytes(disk_peak)} peak")
    else:
        reason = f"fits in memory: ~{format_bytes(in_mem)} <= budget {format_bytes(budget)}"
    return BuildPlan(factory_string=factory_string, n_vectors=n, dim=d, budget_bytes=budget,
                     train_rows=int(train), batch_rows=int(batch), on_disk=use_disk,
                     n_workers=int(n_workers), shard_rows=None if shard is None else int(shard),
                     index_bytes=int(index_bytes), id_table_bytes=int(ids),
                     train_bytes=int(train_bytes), batch_bytes=int(batch_bytes),
                     in_memory_peak_bytes=int(in_mem),
                     on_disk_peak_bytes=None if disk_peak is None else int(disk_peak),
                     peak_bytes=int(peak), reason=reason)
