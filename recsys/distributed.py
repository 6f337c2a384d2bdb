"""Batch recommendation and offline evaluation over user blocks as Ray Data jobs (``engine="ray"``).

The single-process functions are the mappers, run unchanged inside Ray actors that hold the fitted
model and the interaction matrices (sent once through the object store):

* :func:`recommend_users_ray`: every block of users is recommended by
  :func:`recsys.app.stages.recommend_users`; blocks are put back in user order, so the table equals
  the single-process one row for row.
* :func:`evaluate_ray`: every block of evaluated users is scored by
  :func:`recsys.evaluation.evaluator.evaluate` itself (per-user metrics computed in the worker); the driver
  concatenates the per-user rows in user order and aggregates them exactly as ``evaluate`` does,
  so the result equals the single-process :class:`~recsys.evaluation.evaluator.EvaluationResult`.

Ray is imported only when a function runs; the library code of each stage knows nothing of Ray.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["recommend_users_ray", "evaluate_ray"]

log = logging.getLogger(__name__)


class _RecommendActor:
    """Ray Data actor: holds the fitted model, recommends one block of users per call."""

    def __init__(self, refs, k: int, two_stage):
        import ray

        self.tm, self.idx = ray.get(refs[0]), ray.get(refs[1])
        self.k, self.two_stage = k, two_stage

    def __call__(self, batch: dict) -> pd.DataFrame:
        from recsys.app.stages import recommend_users

        parts = []
        for block, start, stop in zip(batch["block"], batch["start"], batch["stop"], strict=True):
            users = [self.tm.user_ids[int(i)] for i in self.idx[int(start):int(stop)]]
            recs = recommend_users(self.tm, users, k=self.k, batch_size=len(users), two_stage=self.two_stage)
            parts.append(recs.assign(_block=int(block)))
        return pd.concat(parts, ignore_index=True)


def recommend_users_ray(tm, user_ids=None, *, k: int = 10, block_size: int = 4096, num_actors: int = 2,
                        two_stage: bool | None = None, address: str | None = None,
                        num_cpus: int | None = None) -> pd.DataFrame:
    """Top-``k`` unseen items for many users, computed block by block on a Ray cluster.

    Parameters
    ----------
    tm : recsys.ranking.artifacts.TrainedModel
        A fitted model (as for :func:`recsys.app.stages.recommend_users`).
    user_ids : sequence of str or None
        External user ids (all training users when None).
    k : int
        Items per user.
    block_size : int
        Users per block (one actor call).
    num_actors : int
        Actors in the pool, each holding one copy of the model.
    two_stage : bool or None
        As in :func:`recsys.app.stages.recommend_users`.
    address, num_cpus :
        Ray cluster address (None: a local Ray for this call) and local CPUs.

    Returns
    -------
    pandas.DataFrame
        ``user_id, rank, item_id, score`` (plus the two-stage columns when used): the same rows in
        the same order as :func:`recsys.app.stages.recommend_users` gives for ``user_ids``.

    Raises
    ------
    KeyError
        A user id not in the training data (checked on the driver, before any work).
    ValueError
        ``k``, ``block_size`` or ``num_actors`` below 1.
    RayUnavailableError
        Ray is not installed.
    """
    from embeddings.ray_engine.cluster import ray_session

    for name, value in (("k", k), ("block_size", block_size), ("num_actors", num_actors)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    idx = (np.arange(len(tm.user_ids)) if user_ids is None
           else np.array([tm.user_index(u) for u in user_ids], dtype=np.int64))
    if len(idx) == 0:
        return pd.DataFrame(columns=["user_id", "rank", "item_id", "score"])
    items = [{"block": b, "start": s, "stop": min(len(idx), s + block_size)}
             for b, s in enumerate(range(0, len(idx), block_size))]
    with ray_session(address, num_cpus=num_cpus) as ray:
        refs = [ray.put(tm), ray.put(idx)]  # in a list: the actors get references, fetched once each
        ds = ray.data.from_items(items)
        ds = ds.map_batches(_RecommendActor, fn_constructor_kwargs={"refs": refs, "k": int(k),
                                                                     "two_stage": two_stage},
                            batch_size=1, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=int(num_actors)))
        parts = list(ds.iter_batches(batch_size=None, batch_format="pandas"))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    # blocks back in user order; inside a block the rows are the single-process order
    out = out.sort_values("_block", kind="stable").drop(columns="_block").reset_index(drop=True)
    for c in out.columns:  # Ray Data hands back Arrow-backed columns: restore the single-process dtypes
        if isinstance(out[c].dtype, pd.ArrowDtype):
            vals = out[c].to_numpy()
            out[c] = pd.Series(list(vals) if vals.dtype == object else vals, index=out.index)
    log.info("ray recommendation: %d users in %d block(s), %d rows", len(idx), -(-len(idx) // block_size), len(out))
    return out


def _rows_only(matrix: sp.csr_matrix, first: int, last: int) -> sp.csr_matrix:
    """``matrix`` with every row outside ``[first, last]`` emptied (no copy of the kept rows' data)."""
    lo, hi = int(matrix.indptr[first]), int(matrix.indptr[last + 1])
    indptr = np.zeros(matrix.shape[0] + 1, dtype=matrix.indptr.dtype)
    indptr[first + 1:last + 2] = matrix.indptr[first + 1:last + 2] - lo
    indptr[last + 2:] = hi - lo
    return sp.csr_matrix((matrix.data[lo:hi], matrix.indices[lo:hi], indptr), shape=matrix.shape)


class _EvaluateActor:
    """Ray Data actor: holds the model and matrices, evaluates one block of users per call."""

    def __init__(self, refs, kwargs: dict):
        import ray

        self.model, self.train, self.test, self.users, self.states, emb = ray.get(list(refs))
        self.kwargs = {**kwargs, "item_embeddings": emb}

    def __call__(self, batch: dict) -> dict:
        from recsys.evaluation.evaluator import evaluate

        parts = []
        for block, start, stop in zip(batch["block"], batch["start"], batch["stop"], strict=True):
            users = self.users[int(start):int(stop)]
            # only this block's users keep test rows, so evaluate() scores exactly them (users without
            # a positive test item are skipped by evaluate itself) with their true user indices
            test = _rows_only(self.test, int(users[0]), int(users[-1]))
            kwargs = dict(self.kwargs)
            if self.states is not None:  # sampled ranking: continue the single random stream here
                rng = np.random.default_rng()
                rng.bit_generator.state = self.states[int(block)]
                kwargs["seed"] = rng  # evaluate calls np.random.default_rng(seed): a Generator passes through
            res = evaluate(self.model, self.train, test, keep_lists=True, **kwargs)
            if not np.array_equal(res.per_user["user_index"].to_numpy(), users):
                raise RuntimeError(f"block {int(block)}: evaluated users differ from the planned block")
            part = {c: res.per_user[c].to_numpy() for c in res.per_user.columns}
            part.update(ids=res.lists, scores=res.list_scores)
            parts.append(part)
        return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


def _block_states(train, test_pos, users, starts, n_negatives: int, seed):
    """Random-generator state at the start of each block, replaying evaluate()'s negative sampling.

    ``evaluate`` draws every user's negatives from one generator, users in index order, so a block
    needs the generator as it stands after all earlier users; the driver replays the draws (with
    evaluate's own sampler) once, in order, and records the state at each block start.
    """
    from recsys.evaluation.evaluator import _sample_negatives

    n_items = train.shape[1]
    rng = np.random.default_rng(seed)
    states = []
    bounds = list(starts) + [len(users)]
    for b in range(len(starts)):
        states.append(rng.bit_generator.state)
        rows = users[bounds[b]:bounds[b + 1]]
        seen_all = (train[rows] + test_pos[rows]).tocsr()  # as evaluate builds it
        seen_all.sort_indices()
        for r in range(rows.size):
            seen = seen_all.indices[seen_all.indptr[r]:seen_all.indptr[r + 1]].astype(np.int64)
            if n_items - seen.size < n_negatives:
                raise ValueError(
                    f"user_index {int(rows[r])} has only {n_items - seen.size} items outside its train and "
                    f"test sets but n_negatives={n_negatives}; lower n_negatives or use full ranking")
            _sample_negatives(seen, n_items, n_negatives, rng)
    return states


def evaluate_ray(model, train_user_items, test_user_items, *, k: int = 10, metrics=None,
                 batch_size: int = 1024, n_negatives: int | None = None, seed: int = 42,
                 item_embeddings=None, keep_lists: bool = False, block_size: int = 8192,
                 num_actors: int = 2, address: str | None = None, num_cpus: int | None = None,
                 users: str = "all"):
    """:func:`recsys.evaluation.evaluator.evaluate` over blocks of users on a Ray cluster; the same result.

    The users with a test item are cut into blocks of ``block_size``; each block is evaluated in a
    Ray actor by :func:`recsys.evaluation.evaluator.evaluate` (the model ranks the block's users, the
    per-user metrics are computed there); the driver puts the per-user rows back in user order and
    computes the summary (means, ``coverage@k``) exactly as ``evaluate`` does. With sampled
    negatives the driver first replays the single random stream of ``evaluate`` to hand every
    block the generator state it would have had, so the same negatives are drawn.

    Parameters
    ----------
    model, train_user_items, test_user_items, k, metrics, batch_size, n_negatives, seed,
    item_embeddings, keep_lists, users :
        As :func:`recsys.evaluation.evaluator.evaluate` (``metrics`` None: its default list). ``model`` must
        be picklable by Ray (every :mod:`recsys.models` recommender is).
    block_size : int
        Evaluated users per block (one actor call). Each block also costs one pass over the
        training matrix's indices (``evaluate`` counts item popularity), so blocks of thousands
        of users keep that overhead small.
    num_actors : int
        Actors in the pool, each holding one copy of the model and both matrices.
    address, num_cpus :
        Ray cluster address (None: a local Ray for this call, or the connection this process
        already has) and local CPUs (see :func:`embeddings.ray_engine.cluster.ray_session`).

    Returns
    -------
    recsys.evaluation.evaluator.EvaluationResult
        Equal to ``evaluate(model, train_user_items, test_user_items, ...)`` with the same
        arguments: same ``per_user`` rows (ascending ``user_index``) and values, same ``summary``,
        counts, ``ranking`` label, and ``lists``/``list_scores`` with ``keep_lists``.

    Raises
    ------
    ValueError
        Everything :func:`recsys.evaluation.evaluator.evaluate` raises on its arguments (checked on the
        driver before any Ray work); ``block_size`` or ``num_actors`` below 1; too few unseen items
        to sample ``n_negatives`` from. Errors of the model inside an actor arrive as Ray's
        ``RayTaskError`` wrapping the original exception.
    RayUnavailableError
        Ray is not installed.
    """
    from embeddings.ray_engine.cluster import ray_session
    from recsys.evaluation.beyond_accuracy import catalog_coverage
    from recsys.evaluation.evaluator import DEFAULT_METRICS, EvaluationResult, evaluate
    from recsys.evaluation.metrics import lists_to_csr, parse_metric

    for name, value in (("block_size", block_size), ("num_actors", num_actors)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    metrics = DEFAULT_METRICS if metrics is None else metrics
    average_over = users  # "all" | "common", as in evaluate(); ``users`` is reused below
    kwargs = {"k": k, "metrics": metrics, "batch_size": batch_size, "n_negatives": n_negatives,
              "seed": seed}
    # every argument check of evaluate(), on the driver, by evaluating nobody (empty test matrix)
    empty = (sp.csr_matrix(test_user_items.shape, dtype=np.float32) if sp.issparse(test_user_items)
             else test_user_items)
    template = evaluate(model, train_user_items, empty, item_embeddings=item_embeddings,
                        keep_lists=keep_lists, users=average_over, **kwargs)
    train, test = sp.csr_matrix(train_user_items), sp.csr_matrix(test_user_items)
    test_pos = test.copy()
    test_pos.data = (test_pos.data > 0).astype(np.int8)
    test_pos.eliminate_zeros()
    n_test = np.diff(test_pos.indptr)
    users = np.flatnonzero(n_test > 0)
    if users.size == 0:
        return template
    names, depth, n_items = template.metrics, template.k, train.shape[1]
    starts = list(range(0, users.size, int(block_size)))
    states = (None if n_negatives is None
              else _block_states(train, test_pos, users, starts, int(n_negatives), seed))
    items = [{"block": b, "start": s, "stop": min(users.size, s + int(block_size))} for b, s in enumerate(starts)]
    with ray_session(address, num_cpus=num_cpus) as ray:
        refs = [ray.put(x) for x in (model, train, test, users, states, item_embeddings)]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(_EvaluateActor, fn_constructor_kwargs={"refs": refs, "kwargs": {**kwargs,
                                                                                              "metrics": names}},
                            batch_size=1, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=int(num_actors)))
        parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    got = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    order = np.argsort(got["user_index"], kind="stable")
    got = {c: v[order] for c, v in got.items()}
    if not np.array_equal(got["user_index"], users):
        raise RuntimeError(f"Ray returned {got['user_index'].size} evaluated users, expected {users.size}; rerun")
    all_ids = got["ids"].astype(np.int64, copy=False).reshape(users.size, depth)
    lists = lists_to_csr(all_ids, n_items, depth)
    in_common = got["in_common"].astype(bool, copy=False)
    per_user = pd.DataFrame({"user_index": users.astype(np.int64),
                             "n_test_items": n_test[users].astype(np.int64),
                             "in_common": in_common})
    summary = {}
    for key in names:  # evaluate()'s aggregation
        name, kk = parse_metric(key)
        if name == "coverage":
            summary[key] = catalog_coverage(lists, n_items, kk)
            continue
        values = got[key].astype(np.float64, copy=False)
        per_user[key] = values
        if average_over == "common" and not name.startswith("ndcg"):
            values = values[in_common]
        summary[key] = (float(np.nanmean(values)) if values.size and not np.isnan(values).all()
                        else float("nan"))
    log.info("ray evaluation: %d users in %d block(s) on %d actor(s)", users.size, len(starts), num_actors)
    return EvaluationResult(per_user=per_user, summary=summary, n_users_evaluated=int(users.size),
                            n_users_skipped_no_test=int(test.shape[0] - users.size), k=depth,
                            metrics=tuple(names), ranking=template.ranking,
                            lists=all_ids if keep_lists else None,
                            list_scores=(got["scores"].astype(np.float32, copy=False).reshape(users.size, depth)
                                         if keep_lists else None))
