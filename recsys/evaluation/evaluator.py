"""Offline evaluation of a recommender: full ranking over all items, training items removed.

Protocol of :func:`evaluate`:

1. Users with no test item (no entry > 0 in their ``test_user_items`` row) are excluded and
   counted (``n_users_skipped_no_test``).
2. For the other users, in batches, the model ranks **every** item
   (``model.recommend(user_index_array, train_user_items[user_index_array], k=K,
   filter_already_liked_items=True)``, implicit's convention: the second argument holds the
   rows of the users asked for) with ``K`` the largest cut-off requested.
3. Each metric of :mod:`recsys.evaluation.metrics` is computed against the test rows; the summary is the
   mean over evaluated users (``users="all"``, the default): every user with test items
   counts, and a user whose list is empty counts 0. implicit's ``ranking_metrics_at_k`` and
   ``trec_eval -c`` average the same way. ``users="common"`` follows Microsoft Recommenders'
   ``python_evaluation``: precision, recall, MAP (every metric but nDCG) are averaged over
   the users present in both the truth and the predictions (a non-empty list, and at least
   one training interaction: Recommenders predicts for training users), nDCG still over all
   users with test items. ``trec_eval`` without ``-c`` also averages over common queries only.

Deterministic tie-breaking: equal scores are ordered by item index, lower first (ties by score,
then by item id in the Dataset's sorted id order). For full ranking this is the contract of
``Recommender.recommend`` (:func:`recsys.models.base.topk`); for sampled ranking
:func:`rank_candidates` does it here.

Sampled-negative ranking (only when ``n_negatives`` is given): each evaluated user's test items
plus ``n_negatives`` items drawn uniformly without replacement from the items the user has in
neither train nor test are scored with ``model.score`` and ranked; metrics are computed on that
short ranking (He et al., "Neural Collaborative Filtering", WWW 2017, used 100 negatives).
Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020, show such numbers can
rank models differently from full ranking, so every output carries the label in
``EvaluationResult.ranking``.

Beyond-accuracy metrics (:mod:`recsys.evaluation.beyond_accuracy`): ``novelty@k`` (popularity from the
training matrix), ``diversity@k`` (needs ``item_embeddings``) per user, and ``coverage@k`` (one
number, in ``summary`` only; catalogue = all ``n_items``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation.beyond_accuracy import (
    catalog_coverage,
    intra_list_diversity_at_k,
    novelty_at_k,
)
from recsys.evaluation.metrics import METRICS, compute_metrics, lists_to_csr, parse_metric

__all__ = ["DEFAULT_METRICS", "EvaluationResult", "evaluate", "rank_candidates", "FULL_RANKING"]

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")

FULL_RANKING = "full ranking over all items, training items removed"


@dataclass
class EvaluationResult:
    """Result of :func:`evaluate`.

    Attributes
    ----------
    per_user : pandas.DataFrame
        One row per evaluated user: ``user_index`` (int64), ``n_test_items`` (int64) and one
        float64 column per metric named ``"name@k"`` (e.g. ``"recall@10"``).
    summary : dict[str, float]
        ``"name@k"`` -> mean over evaluated users (NaN when no user was evaluated).
    n_users_evaluated : int
    n_users_skipped_no_test : int
        Users (rows) without any test item, left out of every mean.
    k : int
        Length of the lists requested from the model (largest cut-off).
    metrics : tuple of str
        ``"name@k"`` keys in request order.
    ranking : str
        :data:`FULL_RANKING`, or ``"sampled: test items + N negatives per user (seed S)"``.
    lists, list_scores : numpy.ndarray or None
        With ``keep_lists=True``: int64 (n_users_evaluated, k) ranked item_index (-1 padding)
        and float32 scores (-inf padding), rows in ``per_user`` order.
    """

    per_user: pd.DataFrame
    summary: dict[str, float]
    n_users_evaluated: int
    n_users_skipped_no_test: int
    k: int
    metrics: tuple[str, ...] = field(default=())
    ranking: str = FULL_RANKING
    lists: np.ndarray | None = None
    list_scores: np.ndarray | None = None

    def __str__(self) -> str:
        parts = ", ".join(f"{name}={value:.4f}" for name, value in self.summary.items())
        return (f"{parts} ({self.n_users_evaluated} users evaluated, "
                f"{self.n_users_skipped_no_test} without test items skipped; {self.ranking})")


def _as_csr(name: str, matrix) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise ValueError(
            f"{name} must be a scipy.sparse matrix (n_users, n_items); got {type(matrix)!r}; "
            "build it with recsys.data.interactions.Dataset.to_user_items"
        )
    return sp.csr_matrix(matrix)


def _fix_ids(ids, n_rows: int, k: int, n_items: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim == 1 and n_rows == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[0] != n_rows or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"model.recommend returned ids of dtype {ids.dtype} shape {ids.shape}; expected an "
            f"integer array ({n_rows}, <= {k}) of item_index with -1 padding"
        )
    if ids.shape[1] > k:
        ids = ids[:, :k]
    if ids.shape[1] < k:
        ids = np.hstack([ids, np.full((n_rows, k - ids.shape[1]), -1, dtype=ids.dtype)])
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        raise ValueError(
            f"model.recommend returned item indices outside [-1, {n_items - 1}] "
            f"(min {ids.min()}, max {ids.max()})"
        )
    return ids.astype(np.int64)


def _count_training_items(ids: np.ndarray, train_rows: sp.csr_matrix) -> int:
    rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
    cols = ids.ravel()
    ok = cols >= 0
    if not ok.any():
        return 0
    return int(np.count_nonzero(np.asarray(train_rows[rows[ok], cols[ok]]).ravel()))


def rank_candidates(scores: np.ndarray, candidates: np.ndarray, k: int):
    """Order candidate items by score descending, then item index ascending (deterministic).

    Parameters
    ----------
    scores : numpy.ndarray
        float (n, c) score of each candidate; ``-inf`` or NaN-free.
    candidates : numpy.ndarray
        int (n, c) item_index of each candidate, -1 for an empty slot (sorted last).
    k : int
        Length of the returned lists.

    Returns
    -------
    ids : numpy.ndarray
        int64 (n, k), -1 padding.
    top_scores : numpy.ndarray
        float32 (n, k), -inf padding.

    Raises
    ------
    ValueError
        Shapes that differ, or NaN scores.
    """
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.int64)
    if scores.shape != candidates.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and candidates {candidates.shape} must be the "
                         "same 2-D shape")
    if np.isnan(scores).any():
        raise ValueError("scores hold NaN; a model must return finite scores or -inf")
    empty = candidates < 0
    key_item = np.where(empty, np.iinfo(np.int64).max, candidates)
    key_score = np.where(empty, np.inf, -scores)
    order = np.lexsort((key_item, key_score), axis=1)[:, :k]
    ids = np.take_along_axis(candidates, order, axis=1)
    top = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    top[ids < 0] = -np.inf
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        ids = np.hstack([ids, np.full((ids.shape[0], pad), -1, dtype=np.int64)])
        top = np.hstack([top, np.full((top.shape[0], pad), -np.inf, dtype=np.float32)])
    return ids, top


def _sample_negatives(seen: np.ndarray, n_items: int, n: int, rng) -> np.ndarray:
    """``n`` distinct items drawn uniformly from ``[0, n_items)`` minus the sorted ``seen``."""
    j = np.sort(rng.choice(n_items - seen.size, size=n, replace=False))
    # the j-th unseen item is j + (number of seen items s with s - rank(s) <= j)
    return j + np.searchsorted(seen - np.arange(seen.size), j, side="right")


def _sampled_lists(model, batch, train_rows, test_rows, n_negatives, rng, depth):
    if not hasattr(model, "score"):
        raise ValueError(f"{type(model).__name__} has no score(user_items_rows, user_index) "
                         "method, which sampled-negative ranking needs; use full ranking "
                         "(n_negatives=None) or a recsys.models Recommender")
    n_items = train_rows.shape[1]
    seen_all = (train_rows + test_rows).tocsr()
    seen_all.sort_indices()
    width = int(np.diff(test_rows.indptr).max()) + n_negatives
    cand = np.full((batch.size, width), -1, dtype=np.int64)
    for r in range(batch.size):
        seen = seen_all.indices[seen_all.indptr[r]:seen_all.indptr[r + 1]].astype(np.int64)
        if n_items - seen.size < n_negatives:
            raise ValueError(
                f"user_index {int(batch[r])} has only {n_items - seen.size} items outside its "
                f"train and test sets but n_negatives={n_negatives}; lower n_negatives or use "
                "full ranking")
        pos = test_rows.indices[test_rows.indptr[r]:test_rows.indptr[r + 1]]
        cand[r, :pos.size] = pos
        cand[r, pos.size:pos.size + n_negatives] = _sample_negatives(seen, n_items, n_negatives,
                                                                      rng)
    full = np.asarray(model.score(train_rows, batch), dtype=np.float64)
    sc = np.take_along_axis(full, np.maximum(cand, 0), axis=1)
    sc[cand < 0] = -np.inf
    return rank_candidates(sc, cand, depth)


def evaluate(model, train_user_items, test_user_items, *, k: int = 10,
             metrics=DEFAULT_METRICS, batch_size: int = 1024, n_negatives: int | None = None,
             seed: int = 42, item_embeddings=None, keep_lists: bool = False,
             users: str = "all") -> EvaluationResult:
    """Evaluate ``model`` against held-out interactions (full ranking unless ``n_negatives``).

    Parameters
    ----------
    model : object
        Fitted on ``train_user_items``; has ``recommend(user_index_array, user_items_rows, k,
        filter_already_liked_items=True)`` returning ``(ids, scores)`` with ids int
        (n, <= k) item_index, -1 padding (recsys.models.Recommender, implicit). Sampled
        ranking also needs ``score(user_items_rows, user_index)`` -> (n, n_items).
    train_user_items : scipy.sparse matrix
        (n_users, n_items) training interactions; these items are filtered out of the lists.
    test_user_items : scipy.sparse matrix
        (n_users, n_items) held-out interactions, same shape and user/item indices; entries
        > 0 are relevant (value = gain for ``ndcg_graded``).
    k : int
        Cut-off for metrics named without one.
    metrics : iterable of str
        Names (``"ndcg"``, cut-off ``k``) or ``"name@k"`` strings: keys of
        :data:`recsys.evaluation.metrics.METRICS` or ``coverage``, ``novelty``, ``diversity``.
    batch_size : int
        Users per ``recommend`` call (memory: the model scores batch_size x n_items).
    n_negatives : int, optional
        None (default): full ranking. An int >= 1 (papers use 100): sampled-negative ranking,
        labelled in ``result.ranking``.
    seed : int
        Seed of the negative sampler (users drawn in index order, so batching does not matter).
    item_embeddings : numpy.ndarray, optional
        float (n_items, d), rows in item_index order; required for ``diversity``.
    keep_lists : bool
        Keep the ranked lists and scores in the result (for TREC run files).
    users : {"all", "common"}
        Which users a summary mean runs over (module docstring, step 3): ``"all"`` (every user
        with test items; no list = 0) or ``"common"`` (Recommenders' convention: nDCG over all,
        the other metrics over users with training items and a non-empty list). The per-user
        table holds every user either way, with an ``in_common`` column.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ValueError
        Non-sparse or differently shaped matrices; ``k``, ``batch_size`` or ``n_negatives`` < 1;
        unknown metric; ``diversity`` without ``item_embeddings`` or with a wrong number of rows;
        the model returns malformed ids, items outside ``[0, n_items)``, repeated items, or
        training items although asked to filter them (a model bug that would deflate scores);
        too few unseen items to sample negatives from.
    """
    train = _as_csr("train_user_items", train_user_items)
    test = _as_csr("test_user_items", test_user_items)
    if train.shape != test.shape:
        raise ValueError(
            f"train_user_items has shape {train.shape} but test_user_items {test.shape}; build "
            "both with the same Dataset.to_user_items"
        )
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer, e.g. 10")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer, e.g. 1024")
    if n_negatives is not None and (isinstance(n_negatives, bool) or int(n_negatives) != n_negatives
                                    or n_negatives < 1):
        raise ValueError(f"n_negatives={n_negatives!r} must be None (full ranking) or a positive "
                         "integer, e.g. 100")
    if users not in ("all", "common"):
        raise ValueError(f"users={users!r}: expected 'all' (every user with test items, an empty "
                         "list counts 0) or 'common' (Microsoft Recommenders' averaging)")
    average_over = users  # ``users`` is reused below for the evaluated user indices
    if isinstance(metrics, str):
        metrics = (metrics,)
    parsed = [parse_metric(m, default_k=int(k)) for m in metrics]
    if not parsed:
        raise ValueError(f"metrics={metrics!r} is empty; name at least one of {sorted(METRICS)}")
    names = list(dict.fromkeys(f"{n}@{kk}" for n, kk in parsed))
    parsed = [parse_metric(n) for n in names]
    depth = max(kk for _, kk in parsed)
    n_users, n_items = test.shape
    if any(n == "diversity" for n, _ in parsed):
        if item_embeddings is None:
            raise ValueError("metric 'diversity' needs item_embeddings (n_items, d); pass them or "
                             "drop the metric")
        if np.shape(item_embeddings)[0] != n_items:
            raise ValueError(f"item_embeddings has {np.shape(item_embeddings)[0]} rows but there "
                             f"are {n_items} items; pass one row per item_index")
    rel_keys = [key for (n, _), key in zip(parsed, names, strict=True) if n in METRICS]
    user_keys = [key for (n, _), key in zip(parsed, names, strict=True)
                 if n in ("novelty", "diversity")]

    test_pos = test.copy()
    test_pos.data = (test_pos.data > 0).astype(np.int8)
    test_pos.eliminate_zeros()
    n_test = np.diff(test_pos.indptr)
    users = np.flatnonzero(n_test > 0)
    n_skipped = int(n_users - users.size)
    if n_skipped:
        logger.info("evaluate: %d of %d users have no test items and are skipped",
                    n_skipped, n_users)
    train_counts = np.diff(train.indptr)
    n_cold = int(np.count_nonzero(train_counts[users] == 0))
    if n_cold:
        logger.info("evaluate: %d evaluated users have no training items (cold start)", n_cold)
    item_counts = np.bincount(train.indices, minlength=n_items)  # csr: no duplicate entries
    n_train_users = max(int(np.count_nonzero(train_counts)), 1)
    ranking = FULL_RANKING if n_negatives is None else (
        f"sampled: test items + {int(n_negatives)} negatives per user (seed {seed})")
    rng = np.random.default_rng(seed)

    values = {name: np.empty(users.size, dtype=np.float64) for name in rel_keys + user_keys}
    all_ids = np.empty((users.size, depth), dtype=np.int64)
    all_scores = np.empty((users.size, depth), dtype=np.float32) if keep_lists else None
    for start in range(0, users.size, int(batch_size)):
        batch = users[start:start + int(batch_size)]
        train_rows = train[batch]
        test_rows = test[batch]
        if n_negatives is None:
            ids, scores = model.recommend(batch, train_rows, k=depth,
                                          filter_already_liked_items=True)
            ids = _fix_ids(ids, batch.size, depth, n_items)
            leaked = _count_training_items(ids, train_rows)
            if leaked:
                raise ValueError(
                    f"{type(model).__name__}.recommend returned {leaked} training items although "
                    "called with filter_already_liked_items=True; fix the model's filtering"
                )
        else:
            test_bin = test_pos[batch]
            ids, scores = _sampled_lists(model, batch, train_rows, test_bin, int(n_negatives), rng,
                                         depth)
        sl = slice(start, start + batch.size)
        all_ids[sl] = ids
        if keep_lists:
            sc = np.asarray(scores, dtype=np.float32)
            sc = np.atleast_2d(sc)[:, :depth]
            padded = np.full((batch.size, depth), -np.inf, dtype=np.float32)
            padded[:, :sc.shape[1]] = sc
            padded[ids < 0] = -np.inf
            all_scores[sl] = padded
        for key, vals in compute_metrics(ids, test_rows, rel_keys).items():
            values[key][sl] = vals
    lists = lists_to_csr(all_ids, n_items, depth) if users.size else all_ids
    for key in user_keys:
        name, kk = parse_metric(key)
        if name == "novelty":
            values[key] = novelty_at_k(lists, item_counts, n_train_users, kk)
        else:
            values[key] = intra_list_diversity_at_k(lists, item_embeddings, kk)

    in_common = (train_counts[users] > 0) & (all_ids >= 0).any(axis=1)
    per_user = pd.DataFrame({"user_index": users.astype(np.int64),
                             "n_test_items": n_test[users].astype(np.int64),
                             "in_common": in_common})
    summary = {}
    for (name, kk), key in zip(parsed, names, strict=True):
        if name == "coverage":
            summary[key] = catalog_coverage(lists, n_items, kk)
            continue
        per_user[key] = values[key]
        v = values[key]
        if average_over == "common" and not name.startswith("ndcg"):
            v = v[in_common]
        summary[key] = float(np.nanmean(v)) if v.size and not np.isnan(v).all() else float("nan")
    return EvaluationResult(per_user=per_user, summary=summary, n_users_evaluated=int(users.size),
                            n_users_skipped_no_test=n_skipped, k=depth, metrics=tuple(names),
                            ranking=ranking, lists=all_ids if keep_lists else None,
                            list_scores=all_scores)
