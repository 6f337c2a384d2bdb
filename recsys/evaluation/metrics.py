"""Top-K ranking metrics, vectorised over users (no per-user Python loop).

Inputs shared by every metric:

- ``recommended``: int array (n_users, m) of ``item_index``, best first, ``-1`` padding. Only
  the first ``k`` columns are read; fewer than ``k`` columns count as padding. An item may
  appear at most once per row (ValueError otherwise).
- ``relevant``: ``scipy.sparse`` matrix (n_users, n_items), row ``u`` = ground truth of the
  user in row ``u`` of ``recommended``. An entry is relevant when its value is > 0; its value
  is the gain of the graded nDCG. ``n_rel`` = number of relevant entries in the row.

Every metric returns float64 (n_users,), NaN for users with ``n_rel == 0`` (exclude them before
averaging). ``hit_i`` is 1 when the item at rank ``i`` (1-based) is relevant.

Definitions, and which peers use them (checked against ranx 0.3 in the tests):

==================  =====================================================  ======================
key                 formula                                                same as
==================  =====================================================  ======================
precision           sum_{i<=k} hit_i / k                                   ranx precision, MS
                                                                           Recommenders precision
recall              sum_{i<=k} hit_i / n_rel                               ranx recall, MS recall
recall_capped       sum_{i<=k} hit_i / min(k, n_rel)                       BEIR recall_cap
ndcg                DCG / IDCG, gain hit_i, discount 1/log2(i+1),          ranx ndcg (binary
                    IDCG = sum_{i<=min(k,n_rel)} 1/log2(i+1)               qrels), MS ndcg_at_k
                                                                           (score_type="binary")
ndcg_graded         DCG / IDCG with gain rel_i (the value, linear),        ranx ndcg (Järvelin),
                    IDCG from the k largest values                         MS score_type="raw"
map                 AP = sum_{i<=k} hit_i * precision@i / n_rel            ranx map, MS ``map``
map_capped          sum_{i<=k} hit_i * precision@i / min(k, n_rel)         MS ``map_at_k`` (>=1.2),
                                                                           Spark MLlib MAP@k
mrr                 1 / (rank of first hit within k), 0 if none            ranx mrr
hit_rate            1 if any hit within k else 0                           ranx hit_rate
==================  =====================================================  ======================

trec_eval (pytrec_eval) names, checked in the tests on runs with tied scores: ``P_k`` =
precision, ``recall_k`` = recall, ``ndcg_cut_k`` = ndcg (binary qrels) / ndcg_graded (graded
qrels), ``map_cut_k`` = map, ``recip_rank`` on the top-k = mrr, ``success_k`` = hit_rate.

Tie-breaking is not done here: the lists arrive ranked. Everywhere in the project equal scores
are ordered by item index, lower first (:func:`recsys.models.base.topk`,
:func:`recsys.evaluation.evaluator.rank_candidates`); trec_eval instead orders ties by docid descending
and ranx by an unstable sort, so :mod:`recsys.evaluation.trec` writes list positions as scores.

Beyond-accuracy metrics (coverage, novelty, intra-list diversity) live in
:mod:`recsys.evaluation.beyond_accuracy`.

Speed: the lists are matched against the ground truth once (a per-row sort plus a sparse
elementwise product), giving the hits as a sparse list; every metric is then a ``bincount``
over the hits. See ``benchmarks/bench_metrics.py``.

Sources: nDCG, Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques",
ACM TOIS 20(4), 2002 (the discount's log base cancels in the ratio, so MS Recommenders'
natural-log default gives the same nDCG); AP/MAP, Manning, Raghavan & Schütze, "Introduction
to Information Retrieval", 2008, ch. 8.4; MRR, Voorhees, TREC-8 QA track, 1999. Exponential
gains (2^rel - 1, Burges et al. 2005) are not offered.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

__all__ = [
    "precision_at_k",
    "recall_at_k",
    "recall_at_k_capped",
    "ndcg_at_k",
    "ndcg_at_k_graded",
    "map_at_k",
    "map_at_k_capped",
    "mrr_at_k",
    "hit_rate_at_k",
    "METRICS",
    "BEYOND_METRIC_NAMES",
    "parse_metric",
    "compute_metrics",
    "lists_to_csr",
    "cut_lists",
]


def _validate(recommended, relevant, k):
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer, e.g. 10")
    k = int(k)
    rec = np.asarray(recommended)
    if rec.ndim != 2 or not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(
            f"recommended must be an integer array (n_users, k) of item_index with -1 padding; "
            f"got dtype {rec.dtype} shape {rec.shape}"
        )
    if not sp.issparse(relevant):
        raise ValueError(
            f"relevant must be a scipy.sparse matrix (n_users, n_items); got {type(relevant)!r}; "
            "build it with Dataset.to_user_items"
        )
    rel = sp.csr_matrix(relevant)
    if rel.shape[0] != rec.shape[0]:
        raise ValueError(
            f"recommended has {rec.shape[0]} rows but relevant has {rel.shape[0]}; pass the "
            "relevant rows of the same users, in the same order"
        )
    rec = rec[:, :k]
    n_items = rel.shape[1]
    if rec.size and (rec.min() < -1 or rec.max() >= n_items):
        raise ValueError(
            f"recommended holds item indices outside [-1, {n_items - 1}] (min {rec.min()}, "
            f"max {rec.max()}); use -1 only as padding and indices < n_items={n_items}"
        )
    rel = rel.copy()
    rel.sum_duplicates()
    rel.data = np.where(rel.data > 0, rel.data, 0).astype(np.float64)
    rel.eliminate_zeros()
    rel.sort_indices()
    return rec, rel, k


class _Hits:
    """The hits of a run, as a sparse list instead of a dense (n_users, k) matrix.

    ``row``, ``rank`` (0-based) and ``gain`` of every recommended item that is relevant, sorted
    by (row, rank); ``n_rel`` float64 (n_users,). Every metric is then a ``bincount`` over the
    hits, O(number of hits), so nine metrics over 10^6 users x K = 100 cost seconds.
    """

    __slots__ = ("row", "rank", "gain", "n_rel", "n_users", "k", "rel")

    def __init__(self, row, rank, gain, n_rel, n_users, k, rel):
        self.row, self.rank, self.gain = row, rank, gain
        self.n_rel, self.n_users, self.k, self.rel = n_rel, n_users, k, rel

    def cut(self, k: int) -> _Hits:
        if k >= self.k:
            return self
        keep = self.rank < k
        return _Hits(self.row[keep], self.rank[keep], self.gain[keep], self.n_rel, self.n_users,
                     k, self.rel)


def _list_matrix(rec: np.ndarray, n_items: int, *, check_repeats: bool) -> sp.csr_matrix:
    """CSR (n_users, n_items) of the lists with data = rank + 1 (int32); sorted indices.

    Each row is sorted once on the key ``item << b | rank`` (2**b >= k), which keeps the rank
    and finds an item repeated within a row. Padding (-1) sorts first and is dropped.
    """
    n_users, k = rec.shape
    if k == 0:
        return sp.csr_matrix((n_users, n_items), dtype=np.int32)
    b = max(int(k - 1).bit_length(), 1)
    # int32 keys where they fit: fewer bytes to allocate, sort and shift (allocation of fresh
    # memory dominates at 10^8 entries)
    dtype = np.int32 if (n_items << b) < 2**31 else np.int64
    key = rec.astype(dtype)
    key <<= b
    key |= np.arange(k, dtype=dtype)
    key.sort(axis=1)
    items = key >> b  # -1 stays -1 (arithmetic shift)
    if check_repeats and k > 1:
        dup = items[:, 1:] == items[:, :-1]
        dup &= items[:, 1:] >= 0
        if dup.any():
            users = np.flatnonzero(dup.any(axis=1))
            raise ValueError(
                f"recommended repeats an item within a row for {users.size} user row(s) (first: "
                f"row {users[0]}); each item may appear once per list"
            )
        del dup
    key &= (1 << b) - 1
    key += 1  # rank + 1
    if items.size and items.min() >= 0:
        indices, data = items.ravel(), key.ravel()
        indptr = np.arange(0, n_users * k + 1, k, dtype=np.int64)
    else:
        valid = items >= 0
        indices, data = items[valid], key[valid]
        indptr = np.concatenate(([0], np.cumsum(valid.sum(axis=1))))
    if indptr[-1] < 2**31 and dtype == np.int32:  # one index dtype: scipy then copies nothing
        indptr = indptr.astype(np.int32)
    mat = sp.csr_matrix((data, indices, indptr), shape=(n_users, n_items))
    mat.has_sorted_indices = True
    return mat


def lists_to_csr(recommended, n_items: int, k: int) -> sp.csr_matrix:
    """Validated top-k lists as a sparse matrix, to share between metric calls.

    Building it costs one sort per row (most of the time of a metric call on 10^6 users);
    :func:`compute_metrics` and the functions of :mod:`recsys.evaluation.beyond_accuracy` accept it in
    place of ``recommended`` so the sort is done once.

    Parameters
    ----------
    recommended : numpy.ndarray
        int (n_users, m) item_index, best first, -1 padding; first ``k`` columns used.
    n_items : int
        Number of columns (catalogue size).
    k : int
        Cut-off, >= 1.

    Returns
    -------
    scipy.sparse.csr_matrix
        (n_users, n_items), data = rank (1-based, int32) at each listed item, sorted indices.

    Raises
    ------
    ValueError
        ``k`` < 1, a non-integer or non-2-D array, indices outside [-1, n_items), an item
        repeated within a row.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer, e.g. 10")
    rec = np.asarray(recommended)
    if rec.ndim != 2 or not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(
            f"recommended must be an integer array (n_users, k) of item_index with -1 padding; "
            f"got dtype {rec.dtype} shape {rec.shape}"
        )
    rec = rec[:, : int(k)]
    if rec.size and (rec.min() < -1 or rec.max() >= n_items):
        raise ValueError(
            f"recommended holds item indices outside [-1, {n_items - 1}] (min {rec.min()}, "
            f"max {rec.max()}); use -1 only as padding and indices < n_items={n_items}"
        )
    return _list_matrix(rec, int(n_items), check_repeats=True)


def cut_lists(lists: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The entries of a :func:`lists_to_csr` matrix with rank <= ``k`` (the matrix itself if
    none is deeper)."""
    if lists.nnz == 0 or lists.data.max() <= k:
        return lists
    out = lists.copy()
    out.data[out.data > k] = 0
    out.eliminate_zeros()
    return out


def _hits(rec, rel: sp.csr_matrix, k: int, lists: sp.csr_matrix | None = None) -> _Hits:
    n_users = rel.shape[0]
    if lists is None:
        lists = _list_matrix(rec, rel.shape[1], check_repeats=True)
    else:
        lists = cut_lists(lists, k)
    pattern = sp.csr_matrix((np.ones(rel.nnz, dtype=np.int32), rel.indices, rel.indptr),
                            shape=rel.shape)
    ranked = sp.csr_matrix(lists.multiply(pattern))  # data = rank + 1 where relevant
    ranked.sort_indices()
    ones = sp.csr_matrix((np.ones(ranked.nnz), ranked.indices, ranked.indptr), shape=rel.shape)
    gains = sp.csr_matrix(rel.multiply(ones))  # the same entries, data = gain
    gains.sort_indices()
    row = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(ranked.indptr))
    rank = ranked.data.astype(np.int64) - 1
    order = np.argsort(row * k + rank, kind="stable")
    return _Hits(row[order], rank[order], gains.data[order].astype(np.float64),
                 np.diff(rel.indptr).astype(np.float64), n_users, k, rel)


def _nan_where_empty(values: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, values, np.nan)


def _prep(recommended, relevant, k) -> _Hits:
    rec, rel, k = _validate(recommended, relevant, k)
    return _hits(rec, rel, k)


_DOC_PARAMS = """
    Parameters
    ----------
    recommended : numpy.ndarray
        int (n_users, m) item_index, best first, -1 padding; first ``k`` columns used.
    relevant : scipy.sparse matrix
        (n_users, n_items); entries > 0 are relevant (value = gain where graded).
    k : int
        Cut-off, >= 1.

    Returns
    -------
    numpy.ndarray
        float64 (n_users,); NaN where the user has no relevant item.

    Raises
    ------
    ValueError
        ``k`` < 1; shapes that disagree; item indices outside [-1, n_items); an item repeated
        within a row.
"""


def _count(h: _Hits, weights=None) -> np.ndarray:
    return np.bincount(h.row, weights=weights, minlength=h.n_users).astype(np.float64)


def _k_precision(h: _Hits) -> np.ndarray:
    return _nan_where_empty(_count(h) / h.k, h.n_rel)


def _k_recall(h: _Hits) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(_count(h) / h.n_rel, h.n_rel)


def _k_recall_capped(h: _Hits) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(_count(h) / np.minimum(h.k, h.n_rel), h.n_rel)


def _discount(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _k_ndcg(h: _Hits) -> np.ndarray:
    disc = _discount(h.k)
    ideal = np.concatenate(([0.0], np.cumsum(disc)))[np.minimum(h.n_rel, h.k).astype(np.int64)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(_count(h, disc[h.rank]) / ideal, h.n_rel)


def _k_ndcg_graded(h: _Hits) -> np.ndarray:
    disc, rel, k = _discount(h.k), h.rel, h.k
    # ideal: each row's values sorted descending (vectorised via lexsort on row, -value)
    rows = np.repeat(np.arange(rel.shape[0]), np.diff(rel.indptr))
    order = np.lexsort((-rel.data, rows))
    pos = np.arange(order.size) - rel.indptr[rows[order]]
    keep = pos < k
    ideal = np.bincount(rows[order][keep], weights=rel.data[order][keep] * disc[pos[keep]],
                        minlength=rel.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(_count(h, h.gain * disc[h.rank]) / ideal, h.n_rel)


def _ap_sum(h: _Hits) -> np.ndarray:
    # hits sorted by (row, rank): the j-th hit of a row (0-based) at rank r adds (j + 1) / (r + 1)
    counts = np.bincount(h.row, minlength=h.n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    j = np.arange(h.row.size) - starts[h.row]
    return _count(h, (j + 1.0) / (h.rank + 1.0))


def _k_map(h: _Hits) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(_ap_sum(h) / h.n_rel, h.n_rel)


def _k_map_capped(h: _Hits) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(_ap_sum(h) / np.minimum(h.k, h.n_rel), h.n_rel)


def _k_mrr(h: _Hits) -> np.ndarray:
    first = np.full(h.n_users, np.inf)
    counts = np.bincount(h.row, minlength=h.n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    first[has] = h.rank[starts[has]] + 1.0  # the row's first hit has its smallest rank
    return _nan_where_empty(1.0 / first, h.n_rel)


def _k_hit_rate(h: _Hits) -> np.ndarray:
    return _nan_where_empty((_count(h) > 0).astype(np.float64), h.n_rel)


def _public(kernel):
    def fn(recommended, relevant, k):
        return kernel(_prep(recommended, relevant, k))
    return fn


def _make(name, kernel, doc):
    fn = _public(kernel)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc + _DOC_PARAMS
    return fn


precision_at_k = _make("precision_at_k", _k_precision,
                       "Precision@K = (relevant items in the top k) / k (padding counts as a miss).")
recall_at_k = _make("recall_at_k", _k_recall,
                    "Recall@K = (relevant items in the top k) / n_rel (ranx, MS Recommenders).")
recall_at_k_capped = _make(
    "recall_at_k_capped", _k_recall_capped,
    "Capped Recall@K = (relevant items in the top k) / min(k, n_rel); reaches 1 when n_rel > k.")
ndcg_at_k = _make(
    "ndcg_at_k", _k_ndcg,
    "Binary nDCG@K (Järvelin & Kekäläinen 2002): DCG = sum_i hit_i / log2(i + 1),\n"
    "    IDCG = sum_{i <= min(k, n_rel)} 1 / log2(i + 1).")
ndcg_at_k_graded = _make(
    "ndcg_at_k_graded", _k_ndcg_graded,
    "Graded nDCG@K with linear gains (Järvelin & Kekäläinen 2002; ranx ``ndcg``; trec_eval\n"
    "    ``ndcg_cut``): DCG = sum_i rel_i / log2(i + 1) with rel_i the relevant value at rank i;\n"
    "    IDCG is the DCG of the user's k largest values in descending order.")
map_at_k = _make(
    "map_at_k", _k_map,
    "AP@K = sum_{i <= k} hit_i * Precision@i / n_rel (Manning et al. 2008, ch. 8.4; ranx\n"
    "    ``map``; MS Recommenders ``map``; trec_eval ``map_cut``). Mean over users gives MAP@K.")
map_at_k_capped = _make(
    "map_at_k_capped", _k_map_capped,
    "AP@K divided by min(k, n_rel) instead of n_rel (MS Recommenders ``map_at_k`` in recent\n"
    "    versions, Spark MLlib ``meanAveragePrecisionAt``): reaches 1 when n_rel > k.")
mrr_at_k = _make(
    "mrr_at_k", _k_mrr,
    "Reciprocal rank@K = 1 / (rank of the first relevant item within k), 0 when none.")
hit_rate_at_k = _make("hit_rate_at_k", _k_hit_rate,
                      "HitRate@K = 1 if any relevant item is in the top k, else 0.")

_KERNELS = {
    "precision": _k_precision,
    "recall": _k_recall,
    "recall_capped": _k_recall_capped,
    "ndcg": _k_ndcg,
    "ndcg_graded": _k_ndcg_graded,
    "map": _k_map,
    "map_capped": _k_map_capped,
    "mrr": _k_mrr,
    "hit_rate": _k_hit_rate,
}


METRICS: dict[str, Callable[..., np.ndarray]] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "recall_capped": recall_at_k_capped,
    "ndcg": ndcg_at_k,
    "ndcg_graded": ndcg_at_k_graded,
    "map": map_at_k,
    "map_capped": map_at_k_capped,
    "mrr": mrr_at_k,
    "hit_rate": hit_rate_at_k,
}

#: Beyond-accuracy metrics (:mod:`recsys.evaluation.beyond_accuracy`); they need training popularity or
#: item embeddings, so :func:`recsys.evaluation.evaluator.evaluate` computes them, not :func:`compute_metrics`.
BEYOND_METRIC_NAMES = ("coverage", "novelty", "diversity")

_METRIC_RE = re.compile(r"^\s*([A-Za-z_]+)\s*(?:@\s*(\d+))?\s*$")


def parse_metric(text: str, default_k: int | None = None) -> tuple[str, int]:
    """Parse ``"ndcg@10"`` into ``("ndcg", 10)``.

    Parameters
    ----------
    text : str
        ``name@k`` with ``name`` a key of :data:`METRICS` (case-insensitive) and ``k >= 1``;
        a bare ``name`` takes ``default_k``.
    default_k : int, optional
        ``k`` for a bare name.

    Returns
    -------
    (name, k) : tuple of (str, int)

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), malformed text, ``k < 1``, or a bare
        name without ``default_k``.
    """
    m = _METRIC_RE.match(str(text))
    if not m:
        raise ValueError(f"metric {text!r} is not of the form 'name@k', e.g. 'ndcg@10'")
    name, k = m.group(1).lower(), m.group(2)
    valid = sorted(METRICS) + list(BEYOND_METRIC_NAMES)
    if name not in valid:
        raise ValueError(f"metric {text!r}: unknown name {name!r}; valid names: {valid}")
    if k is None:
        if default_k is None:
            raise ValueError(f"metric {text!r} has no cut-off; write it as '{name}@10'")
        k = default_k
    k = int(k)
    if k < 1:
        raise ValueError(f"metric {text!r}: k must be >= 1")
    return name, k


def compute_metrics(recommended, relevant, metrics, *, default_k: int | None = None
                    ) -> dict[str, np.ndarray]:
    """Several relevance metrics at once, sharing one validation and one hit lookup.

    The lists are validated and matched against ``relevant`` once at the largest cut-off;
    each metric then reads the first ``k`` columns, so asking for nine metrics at three
    cut-offs costs little more than one.

    Parameters
    ----------
    recommended : numpy.ndarray or scipy.sparse.csr_matrix
        As for the metric functions, or the matrix of :func:`lists_to_csr` (built with a cut-off
        >= the largest ``k`` asked for) to skip the per-row sort.
    relevant
        As for the metric functions.
    metrics : iterable of str
        ``"name@k"`` strings (or bare names with ``default_k``), names from :data:`METRICS`.
    default_k : int, optional

    Returns
    -------
    dict
        ``"name@k"`` -> float64 (n_users,) with NaN for users without relevant items.

    Raises
    ------
    ValueError
        As :func:`parse_metric` and the metric functions; a name of
        :data:`recsys.evaluation.beyond_accuracy.BEYOND_METRICS` (those need catalogue data: use
        :func:`recsys.evaluation.evaluator.evaluate`).
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    parsed = [parse_metric(text, default_k) for text in metrics]
    for name, _ in parsed:
        if name not in METRICS:
            raise ValueError(f"metric {name!r} is not a relevance metric; compute_metrics takes "
                             f"{sorted(METRICS)}")
    if not parsed:
        return {}
    depth = max(k for _, k in parsed)
    if sp.issparse(recommended):
        lists = sp.csr_matrix(recommended)
        if not sp.issparse(relevant) or relevant.shape != lists.shape:
            raise ValueError(f"relevant must be a scipy.sparse matrix of the lists' shape "
                             f"{lists.shape}; got {getattr(relevant, 'shape', type(relevant))}")
        rel = _validate(np.empty((lists.shape[0], 0), dtype=np.int64), relevant, depth)[1]
        hits = _hits(None, rel, depth, lists=lists)
    else:
        hits = _prep(recommended, relevant, depth)
    out = {}
    for name, k in parsed:
        out[f"{name}@{k}"] = _KERNELS[name](hits.cut(k))
    return out
