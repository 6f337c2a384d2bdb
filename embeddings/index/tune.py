"""Choose, build and tune an index to a memory budget and a latency target, by measurement.

:func:`rank_factories` is pure: from ``(n, d, memory budget, latency target)`` it returns
ranked ``(factory_string, reason)`` pairs (memory model of :mod:`embeddings.index.factory`
plus a latency model below). :func:`build_tuned` then builds the first candidate, sweeps
its search knob (``nprobe`` for IVF, ``efSearch`` for HNSW) with :func:`tune_search_params`,
measuring Recall@10 against exact search on a held-out sample and single-query latency, and
keeps the smallest setting that reaches the recall target within the latency target. If
none does, the next candidate is tried. The measured result (``VideoIndex.tuning``) is saved
in the manifest: no automatic choice without its measured recall.

Latency model (ms per single query, only to *rank*; the choice is then measured): a flat
scan reads ``4*n*d`` bytes at about ``FLAT_BYTES_PER_MS`` (a memory-bandwidth bound; measured
~4 GB/s for one query on the 2-core development machine). Candidates whose model latency
exceeds the target are moved behind the others, with the reason saying so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from embeddings.index.factory import choose_factory, format_bytes, parse_size

__all__ = ["rank_factories", "exact_knn", "recall_at_k", "tune_search_params", "build_tuned",
           "holdout_queries"]

logger = logging.getLogger(__name__)

#: Bytes a single-query flat scan reads per millisecond (~4 GB/s; see module docstring).
FLAT_BYTES_PER_MS = 4e6

_NPROBES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)
_EFSEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def rank_factories(n_vectors: int, dim: int, *, max_memory_bytes: int | str | None = None,
                   latency_ms: float | None = None, metric: str = "ip",
                   nlist: int | None = None) -> list[tuple[str, str]]:
    """Rank factory strings for a collection under a memory budget and a latency target.

    Parameters
    ----------
    n_vectors, dim : int
        Collection size and vector dimension.
    max_memory_bytes : int, str or None
        Memory budget (``"1G"``, see :func:`embeddings.index.factory.parse_size`): candidates
        whose resident index fits (:func:`embeddings.index.factory.choose_factory`) and whose
        in-memory build peak fits (:func:`embeddings.index.plan.plan_build`).
    latency_ms : float or None
        Target milliseconds per single query; a ``Flat`` scan whose modelled latency
        (``4*n*d / FLAT_BYTES_PER_MS``) exceeds it is ranked last.
    metric : {"ip", "l2"}
    nlist : int, optional
        IVF list count (default :func:`embeddings.index.factory.default_nlist`).

    Returns
    -------
    list of (str, str)
        Best first, each with its reason (memory estimate, latency note).

    Raises
    ------
    ValueError
        Invalid arguments or nothing fits the budget (from :func:`choose_factory`), or a
        non-positive ``latency_ms``.
    """
    if latency_ms is not None and (isinstance(latency_ms, bool) or not latency_ms > 0):
        raise ValueError(f"latency_ms: got {latency_ms!r}; expected a positive number of "
                         "milliseconds per query (autofaiss's default is 10)")
    ranked = choose_factory(n_vectors, dim, max_memory_bytes=max_memory_bytes, metric=metric,
                            nlist=nlist)
    if max_memory_bytes is not None:
        ranked = _buildable(ranked, n_vectors, dim, max_memory_bytes, metric)
    if latency_ms is None:
        return ranked
    flat_ms = 4.0 * n_vectors * dim / FLAT_BYTES_PER_MS
    fast, slow = [], []
    for factory, reason in ranked:
        if factory == "Flat" and flat_ms > latency_ms:
            slow.append((factory, f"{reason}; modelled {flat_ms:.1f} ms/query > target "
                                  f"{latency_ms} ms"))
        else:
            note = (f"; search knob tuned by measurement to <= {latency_ms} ms/query"
                    if factory != "Flat" else f"; modelled {flat_ms:.2f} ms/query")
            fast.append((factory, reason + note))
    return fast + slow


def _buildable(ranked, n_vectors, dim, max_memory_bytes, metric):
    """Keep candidates whose in-memory build fits the budget (:func:`embeddings.index.plan.plan_build`:
    id tables, training sample and add batch on top of the resident index); reasons gain the
    estimated build peak. Raises ValueError naming every refusal when none is left."""
    from embeddings.index.plan import plan_build

    kept, refused = [], []
    for factory, reason in ranked:
        try:
            plan = plan_build(factory, n_vectors, dim, max_memory_bytes=max_memory_bytes,
                              metric=metric, on_disk=False)
        except ValueError as exc:
            refused.append(f"{factory}: {str(exc).split('. Fix')[0]}")
            continue
        kept.append((factory, f"{reason}; build peak ~{format_bytes(plan.peak_bytes)} "
                              f"({plan.train_rows} training rows, {plan.batch_rows} per add)"))
    for line in refused:
        logger.info("not ranked, its build does not fit the budget: %s", line)
    if not kept:
        raise ValueError("max_memory_bytes: no candidate's build fits the budget: " + "; ".join(refused)
                         + ". Fix: raise the budget, or build an IVF index on disk "
                           "(embeddings.index.shards.build_sharded, `recsys index build --on-disk yes`)")
    return kept


def exact_knn(queries: np.ndarray, base: np.ndarray, k: int, *, metric: str = "ip",
              batch_size: int = 65_536) -> np.ndarray:
    """Exact top-``k`` row numbers of ``base`` for each query (brute force, chunked).

    ``queries`` float32 ``(nq, d)``; ``base`` float32 ``(n, d)`` (a memmap is read chunk by
    chunk, memory bounded by ``batch_size`` rows). Returns int64 ``(nq, k)`` (``-1`` when
    ``k > n``). Uses faiss's ``knn_ground_truth`` (faiss/contrib/exhaustive_search.py).
    """
    import faiss
    from faiss.contrib.exhaustive_search import knn_ground_truth

    mt = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2

    def chunks():
        for s in range(0, len(base), batch_size):
            yield np.ascontiguousarray(base[s:s + batch_size], dtype=np.float32)

    _, ids = knn_ground_truth(np.ascontiguousarray(queries, dtype=np.float32), chunks(), k,
                              metric_type=mt)
    return ids.astype(np.int64)


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Recall@K = ``sum |found[:k] & truth[:k]| / sum |truth[:k]|`` over queries.

    Both int ``(nq, >=k)``; ``-1`` entries are padding (never match, not counted in the
    denominator, so a collection smaller than ``k`` can still reach 1.0). With ``k`` true
    neighbours per query this is the usual ANN definition (ann-benchmarks' ``knn`` recall).
    """
    found, truth = np.asarray(found)[:, :k], np.asarray(truth)[:, :k]
    hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth, strict=True))
    total = int((truth >= 0).sum())
    return float(hits) / total if total else 0.0


def holdout_queries(x: np.ndarray, n_queries: int, *, seed: int = 0,
                    metric: str = "ip", k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``n_queries`` rows of ``x`` as queries with their exact neighbours, self removed.

    Returns ``(rows, queries, truth)``: int64 ``(nq,)`` sampled row numbers, float32
    ``(nq, d)`` queries, int64 ``(nq, k)`` exact neighbour rows of ``x`` excluding the
    query's own row (so a query cannot score a free hit on itself).
    """
    rows = np.sort(np.random.default_rng(seed).choice(len(x), min(n_queries, len(x)),
                                                      replace=False))
    q = np.ascontiguousarray(x[rows], dtype=np.float32)
    truth = drop_self(exact_knn(q, x, k + 1, metric=metric), rows, k)
    return rows, q, truth


def drop_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Remove each query's own row from its result row, keep ``k`` (pad -1)."""
    out = np.full((len(found), k), -1, dtype=np.int64)
    for i, (f, r) in enumerate(zip(found, rows, strict=True)):
        keep = f[f != r][:k]
        out[i, :len(keep)] = keep
    return out


def _knob(vi) -> tuple[str | None, tuple[int, ...]]:
    import faiss

    ivf = faiss.try_extract_index_ivf(vi._index)
    if ivf is not None:
        return "nprobe", tuple(p for p in _NPROBES if p <= ivf.nlist)
    inner = vi._index.index if isinstance(vi._index, faiss.IndexIDMap2) else vi._index
    if isinstance(faiss.downcast_index(inner), faiss.IndexHNSW):
        return "efSearch", _EFSEARCH
    return None, ()


def tune_search_params(vi, queries: np.ndarray, truth_ids: np.ndarray, *, k: int = 10,
                       latency_ms: float | None = None, min_recall: float = 0.95,
                       query_rows: np.ndarray | None = None, n_latency: int = 200) -> dict:
    """Sweep the search knob of ``vi`` and pick the cheapest setting meeting the targets.

    Parameters
    ----------
    vi : VideoIndex
    queries : np.ndarray
        float32 ``(nq, d)``.
    truth_ids : np.ndarray
        object/str ``(nq, k)`` exact top-``k`` ``video_id`` per query (None padding).
    k : int
        Recall@K cut-off (10).
    latency_ms : float or None
        Target median milliseconds per single-query ``vi.search`` call.
    min_recall : float
        Recall@K target.
    query_rows : np.ndarray, optional
        For held-out database rows used as queries: the query's own ``video_id`` per row
        (object ``(nq,)``), removed from results before scoring.
    n_latency : int
        Queries timed one per call (median reported).

    Returns
    -------
    dict
        ``knob`` (``"nprobe"``/``"efSearch"``/None), ``search_params`` (str or None),
        ``recall@10`` (float, at ``k``), ``ms_per_query`` (median single query), ``qps_batch``,
        ``meets_recall``, ``meets_latency``, ``curve`` (list of per-setting dicts),
        ``n_queries``. Chosen: the first setting (ascending cost) meeting both targets;
        else the highest-recall one within the latency target; else the fastest.
        The chosen setting is applied with ``vi.set_search_params``.
    """
    knob, values = _knob(vi)
    settings = [None] if knob is None else [f"{knob}={v}" for v in values]
    curve = []
    nq = len(queries)
    lat_q = queries[: min(n_latency, nq)]
    for params in settings:
        t0 = time.perf_counter()
        res = vi.search(queries, k + (1 if query_rows is not None else 0), search_params=params)
        batch_s = time.perf_counter() - t0
        found = res.ids
        if query_rows is not None:
            found = np.array([[v for v in row if v != own and v is not None][:k] + [None] *
                              max(0, k - len([v for v in row if v != own and v is not None]))
                              for row, own in zip(found, query_rows, strict=True)], dtype=object)
        recall = _recall_ids(found, truth_ids, k)
        times = []
        for q in lat_q:
            t1 = time.perf_counter()
            vi.search(q, k, search_params=params)
            times.append(time.perf_counter() - t1)
        ms = float(np.median(times) * 1e3)
        curve.append({"search_params": params, "recall@10": round(recall, 4),
                      "ms_per_query": round(ms, 4), "qps_batch": round(nq / batch_s, 1)})
        logger.info("tuning %s: %s recall@%d=%.4f %.3f ms/query", vi.factory_string, params, k,
                    recall, ms)
        ok_lat = latency_ms is None or ms <= latency_ms
        if recall >= min_recall and ok_lat:
            break
        if latency_ms is not None and ms > 3 * latency_ms:
            break  # costs only grow with the knob
    good = [c for c in curve if c["recall@10"] >= min_recall and
            (latency_ms is None or c["ms_per_query"] <= latency_ms)]
    within = [c for c in curve if latency_ms is None or c["ms_per_query"] <= latency_ms]
    chosen = good[0] if good else (max(within, key=lambda c: c["recall@10"]) if within
                                   else min(curve, key=lambda c: c["ms_per_query"]))
    if chosen["search_params"]:
        vi.set_search_params(chosen["search_params"])
    return {"knob": knob, **chosen, "meets_recall": chosen["recall@10"] >= min_recall,
            "meets_latency": latency_ms is None or chosen["ms_per_query"] <= latency_ms,
            "min_recall": min_recall, "latency_ms_target": latency_ms, "k": k,
            "n_queries": int(nq), "curve": curve}


def _recall_ids(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = total = 0
    for f, t in zip(found, truth, strict=True):
        t_set = {v for v in t[:k] if v is not None}
        hits += len({v for v in f[:k] if v is not None} & t_set)
        total += len(t_set)
    return hits / total if total else 0.0


def build_tuned(embeddings: np.ndarray, ids: Sequence[str], *, max_memory: int | str | None = None,
                latency_ms: float | None = 10.0, min_recall: float = 0.95, n_queries: int = 500,
                max_candidates: int = 3, seed: int = 0, metric: str = "ip", nlist: int | None = None,
                queries: np.ndarray | None = None, **build_kwargs):
    """Automatic choice: rank factories, build, tune by measurement, keep the first that holds.

    Parameters
    ----------
    embeddings : np.ndarray
        float32 ``(n, d)`` (a ``np.memmap`` keeps memory bounded: validation, exact ground
        truth and adding all read it in batches).
    ids : sequence of str
        ``n`` unique ``video_id``.
    max_memory : int, str or None
        Budget for the resident index (``"1G"``).
    latency_ms : float or None
        Single-query latency target (ms, median over held-out queries).
    min_recall : float
        Recall@10 target against exact search.
    n_queries : int
        Without ``queries``: database rows used as queries, their own row removed from both
        the exact and the approximate results. This is optimistic for graph indexes (a query
        that is itself a node sits next to its neighbours): at 200k x 512, HNSW32 efSearch=64
        measured 0.964 on such rows and 0.940 on fresh queries. Pass ``queries`` for an
        unbiased estimate.
    queries : np.ndarray, optional
        float32 ``(nq, d)`` held-out queries that are not in the collection (a sample of real
        queries, or vectors set aside before the build); exact ground truth is computed
        against ``embeddings``.
    max_candidates : int
        Ranked factories tried before giving up (the best measured one is kept).
    seed : int
        Held-out sample and training sample seed.
    nlist : int, optional
        IVF list count passed to :func:`rank_factories`.
    **build_kwargs
        Passed to :meth:`VideoIndex.build` (``metadata``, ``encoder``, ``train_sample``,
        ``device``, ``check_norm``).

    Returns
    -------
    VideoIndex
        With ``tuning`` set: the measured dict of :func:`tune_search_params` plus
        ``factory_string``, ``reason``, ``ranking`` (all candidates with reasons),
        ``tried`` (per candidate: recall, ms, build seconds) and ``build_s``.

    Raises
    ------
    ValueError
        As :func:`rank_factories` and :meth:`VideoIndex.build`.
    """
    from embeddings.index.video_index import VideoIndex

    id_list = list(ids)
    n, d = embeddings.shape
    ranking = rank_factories(n, d, max_memory_bytes=max_memory, latency_ms=latency_ms,
                             metric=metric, nlist=nlist)
    id_arr = np.asarray(id_list, dtype=object)
    if queries is None:
        rows, queries, truth_rows = holdout_queries(embeddings, n_queries, seed=seed, metric=metric)
        own = id_arr[rows]
    else:
        from embeddings.index.factory import validate_embeddings

        queries = validate_embeddings(queries, d, metric=metric, check_norm=False, name="queries")
        truth_rows, own = exact_knn(queries, embeddings, 10, metric=metric), None
    truth_ids = np.where(truth_rows >= 0, id_arr[np.maximum(truth_rows, 0)], None)
    best, tried = None, []
    for factory, reason in ranking[:max_candidates]:
        t0 = time.perf_counter()
        vi = VideoIndex.build(embeddings, id_list, factory_string=factory, metric=metric,
                              max_memory_bytes=max_memory, seed=seed, **build_kwargs)
        build_s = time.perf_counter() - t0
        tuning = tune_search_params(vi, queries, truth_ids, latency_ms=latency_ms,
                                    min_recall=min_recall, query_rows=own)
        tuning.update(factory_string=factory, reason=reason, build_s=round(build_s, 2),
                      holdout="given queries" if own is None else "database rows, self removed",
                      budget_bytes=None if max_memory is None else parse_size(max_memory))
        tried.append({k: tuning[k] for k in ("factory_string", "search_params", "recall@10",
                                             "ms_per_query", "build_s")})
        logger.info("auto index %s (%s): %s recall@10=%.4f %.3f ms/query, built in %.1fs",
                    factory, reason, tuning["search_params"], tuning["recall@10"],
                    tuning["ms_per_query"], build_s)
        score = (tuning["meets_recall"] and tuning["meets_latency"], tuning["recall@10"])
        if best is None or score > best[0]:
            best = (score, vi, tuning)
        if score[0]:
            break
        del vi
    _, vi, tuning = best
    tuning["ranking"] = [{"factory_string": f, "reason": r} for f, r in ranking]
    tuning["tried"] = tried
    if max_memory is not None:
        tuning["budget"] = format_bytes(parse_size(max_memory))
    vi.tuning = tuning
    if not (tuning["meets_recall"] and tuning["meets_latency"]):
        logger.warning("auto index: no candidate met recall@10>=%s within %s ms; kept %s at "
                       "recall@10=%.4f, %.3f ms/query", min_recall, latency_ms,
                       tuning["factory_string"], tuning["recall@10"], tuning["ms_per_query"])
    return vi
