"""Index speed/accuracy sweeps: Recall@K and QPS of FAISS factory strings against exact search.

The ground truth is exact search (``faiss.IndexFlatIP`` / ``IndexFlatL2``) computed once and
cached under a key that hashes the data, ``k`` and the metric; every factory string is built
through :class:`embeddings.index.video_index.VideoIndex` (the index users search) and swept over its search
knob (``nprobe`` for IVF, ``efSearch`` for HNSW), in batch mode (all queries in one call) and
single-query mode (one call per query), with the faiss thread count fixed and reported.

Recall@K here is the ANN-benchmarks / autofaiss "k-recall@k": ``|found top-K ∩ exact top-K| / K``
averaged over queries (Aumüller et al., ANN-Benchmarks, 2020).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from embeddings._io import save_npy, write_json
from embeddings.index.video_index import VideoIndex

log = logging.getLogger(__name__)

__all__ = [
    "data_fingerprint", "exact_neighbors", "cached_exact_neighbors", "recall_at_k", "holdout_split",
    "sweep_settings", "SweepPoint", "BuildStats", "benchmark_factory", "pareto_front", "choose_setting",
    "rss_bytes",
]

EF_SEARCH_VALUES = (16, 32, 64, 128, 256, 512)


def data_fingerprint(collection: np.ndarray, queries: np.ndarray, k: int, metric: str) -> str:
    """SHA-256 hex of the float32 bytes and shapes of both arrays, ``k`` and ``metric`` (cache key)."""
    h = hashlib.sha256()
    for a in (collection, queries):
        a = np.ascontiguousarray(a, dtype=np.float32)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    h.update(f"k={int(k)};metric={metric}".encode())
    return h.hexdigest()


def _check(collection, queries, k, metric):
    x = np.ascontiguousarray(collection, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if x.ndim != 2 or q.ndim != 2 or x.shape[1] != q.shape[1] or len(x) == 0 or len(q) == 0:
        raise ValueError(f"collection {x.shape} and queries {q.shape} must be non-empty 2-D arrays with the same "
                         "embed_dim; take queries from the same encoder as the collection")
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric={metric!r}: expected 'ip' or 'l2'")
    if isinstance(k, bool) or int(k) < 1 or int(k) > len(x):
        raise ValueError(f"k={k!r}: expected 1 <= k <= collection size {len(x)}")
    return x, q


def exact_neighbors(collection: np.ndarray, queries: np.ndarray, k: int, metric: str = "ip") -> np.ndarray:
    """Exact top-``k`` rows of ``collection`` for every query (brute force, ``faiss.IndexFlat``).

    Parameters
    ----------
    collection : numpy.ndarray
        float ``(n, d)``.
    queries : numpy.ndarray
        float ``(n_queries, d)``.
    k : int
        1 <= k <= n.
    metric : {"ip", "l2"}

    Returns
    -------
    numpy.ndarray
        int64 ``(n_queries, k)`` row numbers, best first.

    Raises
    ------
    ValueError
        On empty or mismatched arrays, a bad ``k`` or ``metric``.
    """
    x, q = _check(collection, queries, k, metric)
    index = faiss.IndexFlatIP(x.shape[1]) if metric == "ip" else faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, labels = index.search(q, int(k))
    return labels.astype(np.int64)


def cached_exact_neighbors(cache_dir, collection, queries, k: int, metric: str = "ip"):
    """:func:`exact_neighbors`, stored as ``cache_dir/exact-<sha256[:16]>.npy`` and reused.

    Returns
    -------
    truth : numpy.ndarray
        int64 ``(n_queries, k)``.
    path : pathlib.Path
        The cache file.
    cached : bool
        True when read from an earlier run.
    """
    x, q = _check(collection, queries, k, metric)
    key = data_fingerprint(x, q, k, metric)
    path = Path(cache_dir) / f"exact-{key[:16]}.npy"
    if path.is_file():
        truth = np.load(path, allow_pickle=False)
        if truth.shape == (len(q), int(k)):
            return truth.astype(np.int64), path, True
        log.warning("cached ground truth %s has shape %s, expected %s; recomputing", path, truth.shape,
                    (len(q), int(k)))
    truth = exact_neighbors(x, q, k, metric)
    save_npy(path, truth)
    write_json(path.with_suffix(".json"), {"sha256": key, "k": int(k), "metric": metric, "n": len(x),
                                           "n_queries": len(q), "dim": x.shape[1]})
    return truth, path, False


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of ``|found[:, :k] ∩ truth[:, :k]| / k`` (padding ``-1`` never matches).

    Raises
    ------
    ValueError
        If the arrays have different row counts or fewer than ``k`` columns.
    """
    f, t = np.asarray(found), np.asarray(truth)
    if f.ndim != 2 or t.ndim != 2 or len(f) != len(t) or f.shape[1] < k or t.shape[1] < k or k < 1:
        raise ValueError(f"found {f.shape} and truth {t.shape} need the same rows and at least k={k} columns")
    hits = sum(len(np.intersect1d(a[:k][a[:k] >= 0], b[:k])) for a, b in zip(f, t, strict=True))
    return float(hits) / (len(f) * k)


def holdout_split(n: int, n_holdout: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows kept in the collection and rows held out as queries (seeded, disjoint, ascending).

    Raises
    ------
    ValueError
        Unless ``1 <= n_holdout < n``.
    """
    if not 1 <= int(n_holdout) < int(n):
        raise ValueError(f"holdout={n_holdout!r}: expected 1 <= holdout < {n} (the number of vectors); "
                         "hold out fewer, or pass a queries .npy file")
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(int(n), size=int(n_holdout), replace=False))
    keep = np.setdiff1d(np.arange(int(n)), held)
    return keep, held


def sweep_settings(factory_string: str, n_vectors: int | None = None) -> list[str | None]:
    """Search-knob values to sweep for a factory string.

    IVF (``IVF<nlist>...``): ``nprobe`` = 1, 2, 4, ... up to ``nlist`` (``nlist`` included).
    HNSW without IVF: ``efSearch`` in :data:`EF_SEARCH_VALUES`. Anything else (``Flat``, ``PQ``,
    ...): ``[None]`` (one setting, no knob).
    """
    m = re.search(r"IVF(\d+)", factory_string)
    if m:
        nlist = int(m.group(1))
        vals = [1 << i for i in range(0, 64) if (1 << i) < nlist] + [nlist]
        return [f"nprobe={v}" for v in vals]
    if "HNSW" in factory_string.upper():
        return [f"efSearch={v}" for v in EF_SEARCH_VALUES]
    return [None]


def rss_bytes() -> int:
    """Current resident set size of this process in bytes (``/proc/self/statm``; 0 where absent)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class BuildStats:
    """Cost of building one index: wall seconds, serialized size and process RSS growth (bytes)."""

    factory_string: str
    build_s: float
    index_bytes: int
    rss_delta_bytes: int
    n_vectors: int
    dim: int


@dataclass
class SweepPoint:
    """One (factory, search setting) measurement.

    ``recall`` is k-recall@k; ``qps_batch`` = queries / seconds of one batched search call;
    ``qps_single`` = queries / seconds of one call per query (``n_single`` queries);
    ``latency_ms_single`` its mean per query; both timings are the fastest of ``repeats`` runs.
    """

    factory_string: str
    search_params: str | None
    k: int
    recall: float
    qps_batch: float
    qps_single: float
    latency_ms_single: float
    n_queries: int
    n_single: int
    threads: int
    repeats: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def benchmark_factory(collection: np.ndarray, queries: np.ndarray, truth: np.ndarray, factory_string: str, *,
                      k: int = 10, metric: str = "ip", threads: int = 1, n_single: int = 100,
                      repeats: int = 3, seed: int = 0) -> tuple[BuildStats, list[SweepPoint]]:
    """Build ``factory_string`` over ``collection`` and sweep its search knob.

    Parameters
    ----------
    collection : numpy.ndarray
        float32 ``(n, d)``, L2-normalised rows for ``metric="ip"``.
    queries : numpy.ndarray
        float32 ``(n_queries, d)``.
    truth : numpy.ndarray
        int64 ``(n_queries, >= k)`` exact neighbour rows (:func:`cached_exact_neighbors`).
    factory_string : str
        Any faiss factory string :meth:`VideoIndex.build` accepts.
    k : int
        Recall@K cut-off and results per query.
    metric : {"ip", "l2"}
    threads : int
        ``faiss.omp_set_num_threads`` during the build and the searches (restored afterwards).
    n_single : int
        Queries timed one call at a time (the first ``n_single``); 0 skips single-query mode.
    repeats : int
        Each timing (the batch call, the single-query loop) is repeated this many times and the
        fastest run is reported, as faiss's own benchmarks do, so that a pause caused by another
        process does not count as index slowness.
    seed : int
        Seed of the IVF/PQ training sample.

    Returns
    -------
    (BuildStats, list of SweepPoint)
        One point per value of :func:`sweep_settings`.

    Raises
    ------
    ValueError
        What :meth:`VideoIndex.build` raises (bad factory string, too few training vectors), or a
        ``threads`` or ``repeats`` < 1.
    """
    if int(threads) < 1:
        raise ValueError(f"threads={threads!r}: expected an integer >= 1")
    if int(repeats) < 1:
        raise ValueError(f"repeats={repeats!r}: expected an integer >= 1")
    x = np.ascontiguousarray(collection, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    ids = [str(i) for i in range(len(x))]
    before_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads))
    try:
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        index = VideoIndex.build(x, ids, factory_string=factory_string, metric=metric, seed=seed)
        build_s = time.perf_counter() - t0
        rss_delta = rss_bytes() - rss0
        with tempfile.TemporaryDirectory() as tmp:
            index.save(Path(tmp) / "idx")
            index_bytes = (Path(tmp) / "idx" / "index.faiss").stat().st_size
        stats = BuildStats(factory_string, build_s, int(index_bytes), int(rss_delta), len(x), x.shape[1])
        points = []
        single = q[: max(0, int(n_single))]
        for params in sweep_settings(factory_string, len(x)):
            batch_s = single_s = float("inf")
            for _ in range(int(repeats)):
                t0 = time.perf_counter()
                res = index.search(q, k, search_params=params)
                batch_s = min(batch_s, time.perf_counter() - t0)
                total = 0.0
                for row in single:
                    t0 = time.perf_counter()
                    index.search(row, k, search_params=params)
                    total += time.perf_counter() - t0
                single_s = min(single_s, total)
            found = res.indices
            ns = len(single)
            points.append(SweepPoint(
                factory_string, params, int(k), recall_at_k(found, truth, k), len(q) / max(batch_s, 1e-9),
                ns / single_s if ns and single_s > 0 else float("nan"),
                1000.0 * single_s / ns if ns else float("nan"), len(q), ns, int(threads), int(repeats)))
        return stats, points
    finally:
        faiss.omp_set_num_threads(before_threads)


def pareto_front(points: list[SweepPoint], qps: str = "qps_batch") -> list[SweepPoint]:
    """Points no other point beats on both recall and ``qps`` (ties kept), by descending recall.

    A point is dominated when another has recall >= and QPS >= with at least one strictly greater.
    """
    out = []
    for p in points:
        pv, pr = getattr(p, qps), p.recall
        dominated = any((o.recall >= pr and getattr(o, qps) >= pv) and (o.recall > pr or getattr(o, qps) > pv)
                        for o in points if o is not p)
        if not dominated:
            out.append(p)
    return sorted(out, key=lambda p: (-p.recall, -getattr(p, qps)))


def choose_setting(points: list[SweepPoint], target_recall: float, qps: str = "qps_batch"):
    """The fastest point (by ``qps``) whose recall reaches ``target_recall``; None when none does.

    Raises
    ------
    ValueError
        Unless ``0 <= target_recall <= 1``.
    """
    if not 0.0 <= float(target_recall) <= 1.0:
        raise ValueError(f"target_recall={target_recall!r}: expected a fraction in [0, 1], e.g. 0.95")
    ok = [p for p in points if p.recall >= float(target_recall)]
    return max(ok, key=lambda p: getattr(p, qps)) if ok else None
