"""Offline evaluation of a recommender: full ranking over all items, training items removed.

Protocol of :func:`evaluate`:

1. Users with no test item (no entry > 0 in their ``test_user_items`` row) are excluded and
   counted (``n_users_skipped_no_test``).
2. For the other users, in batches, the model ranks **every** item
   (``model.recommend(user_index_array, train_user_items[user_index_array], k=K,
   filter_already_liked_items=True)``, implicit's convention: the second argument holds the
   rows of the users asked for) with ``K`` the largest cut-off requested.
3. Each metric of :mod:`recsys.metrics` is computed against the test rows; the summary is the
   mean over evaluated users.

Deterministic tie-breaking among equal scores is the model's job (the contract: ties go to the
lower item index); this module scores whatever order it receives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .metrics import METRICS, parse_metric

__all__ = ["DEFAULT_METRICS", "EvaluationResult", "evaluate"]

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")


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
    """

    per_user: pd.DataFrame
    summary: dict[str, float]
    n_users_evaluated: int
    n_users_skipped_no_test: int
    k: int
    metrics: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        parts = ", ".join(f"{name}={value:.4f}" for name, value in self.summary.items())
        return (f"{parts} ({self.n_users_evaluated} users evaluated, "
                f"{self.n_users_skipped_no_test} without test items skipped)")


def _as_csr(name: str, matrix) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise ValueError(
            f"{name} must be a scipy.sparse matrix (n_users, n_items); got {type(matrix)!r}; "
            "build it with recsys.data.Dataset.to_user_items"
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


def evaluate(model, train_user_items, test_user_items, *, k: int = 10,
             metrics=DEFAULT_METRICS, batch_size: int = 1024) -> EvaluationResult:
    """Evaluate ``model`` by full ranking against held-out interactions.

    Parameters
    ----------
    model : object
        Fitted on ``train_user_items``; has ``recommend(user_index_array, user_items_rows, k,
        filter_already_liked_items=True)`` returning ``(ids, scores)`` with ids int
        (n, <= k) item_index, -1 padding (recsys.models.Recommender, implicit).
    train_user_items : scipy.sparse matrix
        (n_users, n_items) training interactions; these items are filtered out of the lists.
    test_user_items : scipy.sparse matrix
        (n_users, n_items) held-out interactions, same shape and user/item indices; entries
        > 0 are relevant (value = gain for ``ndcg_graded``).
    k : int
        Cut-off for metrics named without one.
    metrics : iterable of str
        Names (``"ndcg"``, cut-off ``k``) or ``"name@k"`` strings, keys of
        :data:`recsys.metrics.METRICS`.
    batch_size : int
        Users per ``recommend`` call (memory: the model scores batch_size x n_items).

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ValueError
        Non-sparse or differently shaped matrices; ``k`` or ``batch_size`` < 1; unknown metric;
        the model returns malformed ids, items outside ``[0, n_items)``, repeated items, or
        training items although asked to filter them (a model bug that would deflate scores).
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
    if isinstance(metrics, str):
        metrics = (metrics,)
    parsed = [parse_metric(m, default_k=int(k)) for m in metrics]
    if not parsed:
        raise ValueError(f"metrics={metrics!r} is empty; name at least one of {sorted(METRICS)}")
    names = list(dict.fromkeys(f"{n}@{kk}" for n, kk in parsed))
    parsed = [parse_metric(n) for n in names]
    depth = max(kk for _, kk in parsed)

    n_users, n_items = test.shape
    test_pos = test.copy()
    test_pos.data = (test_pos.data > 0).astype(np.int8)
    test_pos.eliminate_zeros()
    n_test = np.diff(test_pos.indptr)
    users = np.flatnonzero(n_test > 0)
    n_skipped = int(n_users - users.size)
    if n_skipped:
        logger.info("evaluate: %d of %d users have no test items and are skipped",
                    n_skipped, n_users)
    n_cold = int(np.count_nonzero(np.diff(train.indptr)[users] == 0))
    if n_cold:
        logger.info("evaluate: %d evaluated users have no training items (cold start)", n_cold)

    values = {name: np.empty(users.size, dtype=np.float64) for name in names}
    for start in range(0, users.size, int(batch_size)):
        batch = users[start:start + int(batch_size)]
        train_rows = train[batch]
        ids, _scores = model.recommend(batch, train_rows, k=depth,
                                       filter_already_liked_items=True)
        ids = _fix_ids(ids, batch.size, depth, n_items)
        leaked = _count_training_items(ids, train_rows)
        if leaked:
            raise ValueError(
                f"{type(model).__name__}.recommend returned {leaked} training items although "
                "called with filter_already_liked_items=True; fix the model's filtering"
            )
        test_rows = test[batch]
        for (name, kk), key in zip(parsed, names, strict=True):
            values[key][start:start + batch.size] = METRICS[name](ids, test_rows, kk)

    per_user = pd.DataFrame({"user_index": users.astype(np.int64),
                             "n_test_items": n_test[users].astype(np.int64)})
    for key in names:
        per_user[key] = values[key]
    summary = {key: (float(values[key].mean()) if users.size else float("nan")) for key in names}
    return EvaluationResult(per_user=per_user, summary=summary, n_users_evaluated=int(users.size),
                            n_users_skipped_no_test=n_skipped, k=depth, metrics=tuple(names))
