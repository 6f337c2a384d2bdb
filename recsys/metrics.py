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
    "parse_metric",
    "compute_metrics",
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
    rec = rec[:, :k].astype(np.int64)
    if rec.shape[1] < k:
        pad = np.full((rec.shape[0], k - rec.shape[1]), -1, dtype=np.int64)
        rec = np.hstack([rec, pad])
    n_items = rel.shape[1]
    if rec.size and (rec.min() < -1 or rec.max() >= n_items):
        raise ValueError(
            f"recommended holds item indices outside [-1, {n_items - 1}] (min {rec.min()}, "
            f"max {rec.max()}); use -1 only as padding and indices < n_items={n_items}"
        )
    srt = np.sort(rec, axis=1)
    dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    if dup.any():
        users = np.flatnonzero(dup.any(axis=1))
        raise ValueError(
            f"recommended repeats an item within a row for {users.size} user row(s) (first: "
            f"row {users[0]}); each item may appear once per list"
        )
    rel = rel.copy()
    rel.sum_duplicates()
    rel.data = np.where(rel.data > 0, rel.data, 0).astype(np.float64)
    rel.eliminate_zeros()
    rel.sort_indices()
    return rec, rel, k


def _gains(rec: np.ndarray, rel: sp.csr_matrix) -> np.ndarray:
    """float64 (n_users, k): value of relevant[u, rec[u, i]] (0 for misses and padding)."""
    n_users, k = rec.shape
    n_items = rel.shape[1]
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices.astype(np.int64)  # ascending: csr with sorted indices
    q = np.arange(n_users, dtype=np.int64)[:, None] * n_items + rec
    pos = np.searchsorted(keys, q.ravel())
    pos_c = np.minimum(pos, max(keys.size - 1, 0))
    found = (keys.size > 0) & (rec.ravel() >= 0)
    if keys.size:
        found &= keys[pos_c] == q.ravel()
    out = np.zeros(n_users * k, dtype=np.float64)
    out[found] = rel.data[pos_c[found]]
    return out.reshape(n_users, k)


def _n_rel(rel: sp.csr_matrix) -> np.ndarray:
    return np.diff(rel.indptr).astype(np.float64)


def _nan_where_empty(values: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, values, np.nan)


def _prep(recommended, relevant, k):
    rec, rel, k = _validate(recommended, relevant, k)
    gains = _gains(rec, rel)
    return (gains > 0).astype(np.float64), gains, _n_rel(rel), k, rel


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


def _doc(fn):
    fn.__doc__ = (fn.__doc__ or "") + _DOC_PARAMS
    return fn


@_doc
def precision_at_k(recommended, relevant, k):
    """Precision@K = (relevant items in the top k) / k (padding counts as a miss)."""
    hits, _, n_rel, k, _ = _prep(recommended, relevant, k)
    return _nan_where_empty(hits.sum(axis=1) / k, n_rel)


@_doc
def recall_at_k(recommended, relevant, k):
    """Recall@K = (relevant items in the top k) / n_rel (ranx, MS Recommenders)."""
    hits, _, n_rel, k, _ = _prep(recommended, relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(hits.sum(axis=1) / n_rel, n_rel)


@_doc
def recall_at_k_capped(recommended, relevant, k):
    """Capped Recall@K = (relevant items in the top k) / min(k, n_rel); reaches 1 when n_rel > k."""
    hits, _, n_rel, k, _ = _prep(recommended, relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(hits.sum(axis=1) / np.minimum(k, n_rel), n_rel)


def _discount(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


@_doc
def ndcg_at_k(recommended, relevant, k):
    """Binary nDCG@K (Järvelin & Kekäläinen 2002): DCG = sum_i hit_i / log2(i + 1),
    IDCG = sum_{i <= min(k, n_rel)} 1 / log2(i + 1)."""
    hits, _, n_rel, k, _ = _prep(recommended, relevant, k)
    disc = _discount(k)
    ideal = np.concatenate(([0.0], np.cumsum(disc)))[np.minimum(n_rel, k).astype(np.int64)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty((hits @ disc) / ideal, n_rel)


@_doc
def ndcg_at_k_graded(recommended, relevant, k):
    """Graded nDCG@K with linear gains (Järvelin & Kekäläinen 2002; ranx ``ndcg``):
    DCG = sum_i rel_i / log2(i + 1) with rel_i the relevant value at rank i; IDCG is the DCG
    of the user's k largest values in descending order."""
    _, gains, n_rel, k, rel = _prep(recommended, relevant, k)
    disc = _discount(k)
    # ideal: sort each row's values descending (vectorised via lexsort on row, -value)
    rows = np.repeat(np.arange(rel.shape[0]), np.diff(rel.indptr))
    order = np.lexsort((-rel.data, rows))
    pos = np.arange(order.size) - rel.indptr[rows[order]]
    keep = pos < k
    ideal = np.bincount(rows[order][keep], weights=rel.data[order][keep] * disc[pos[keep]],
                        minlength=rel.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty((gains @ disc) / ideal, n_rel)


def _ap_sum(hits: np.ndarray, k: int) -> np.ndarray:
    prec_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return (prec_at_i * hits).sum(axis=1)


@_doc
def map_at_k(recommended, relevant, k):
    """AP@K = sum_{i <= k} hit_i * Precision@i / n_rel (Manning et al. 2008, ch. 8.4; ranx
    ``map``; MS Recommenders ``map``). Mean over users gives MAP@K."""
    hits, _, n_rel, k, _ = _prep(recommended, relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(_ap_sum(hits, k) / n_rel, n_rel)


@_doc
def map_at_k_capped(recommended, relevant, k):
    """AP@K divided by min(k, n_rel) instead of n_rel (MS Recommenders ``map_at_k`` in recent
    versions, Spark MLlib ``meanAveragePrecisionAt``): reaches 1 when n_rel > k."""
    hits, _, n_rel, k, _ = _prep(recommended, relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(_ap_sum(hits, k) / np.minimum(k, n_rel), n_rel)


@_doc
def mrr_at_k(recommended, relevant, k):
    """Reciprocal rank@K = 1 / (rank of the first relevant item within k), 0 when none."""
    hits, _, n_rel, k, _ = _prep(recommended, relevant, k)
    any_hit = hits.any(axis=1)
    first = np.argmax(hits > 0, axis=1) + 1
    return _nan_where_empty(np.where(any_hit, 1.0 / first, 0.0), n_rel)


@_doc
def hit_rate_at_k(recommended, relevant, k):
    """HitRate@K = 1 if any relevant item is in the top k, else 0."""
    hits, _, n_rel, k, _ = _prep(recommended, relevant, k)
    return _nan_where_empty(hits.any(axis=1).astype(np.float64), n_rel)


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
    if name not in METRICS:
        raise ValueError(f"metric {text!r}: unknown name {name!r}; valid names: {sorted(METRICS)}")
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
    """Several metrics at once.

    Parameters
    ----------
    recommended, relevant
        As for the metric functions.
    metrics : iterable of str
        ``"name@k"`` strings (or bare names with ``default_k``).
    default_k : int, optional

    Returns
    -------
    dict
        ``"name@k"`` -> float64 (n_users,) with NaN for users without relevant items.

    Raises
    ------
    ValueError
        As :func:`parse_metric` and the metric functions.
    """
    out = {}
    for text in metrics:
        name, k = parse_metric(text, default_k)
        out[f"{name}@{k}"] = METRICS[name](recommended, relevant, k)
    return out
