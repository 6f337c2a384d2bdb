"""Batch recommendation over user blocks as a Ray Data job (``engine="ray"`` of batch serving).

The single-process path, :func:`recsys.stages.recommend_users`, is the mapper: every block of
users is recommended by exactly that function inside a Ray actor that holds the fitted model
(sent once through the object store), and the blocks are put back in user order, so the table
equals the single-process one row for row. Ray is imported only when the function runs.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

__all__ = ["recommend_users_ray"]

log = logging.getLogger(__name__)


class _RecommendActor:
    """Ray Data actor: holds the fitted model, recommends one block of users per call."""

    def __init__(self, refs, k: int, two_stage):
        import ray

        self.tm, self.idx = ray.get(refs[0]), ray.get(refs[1])
        self.k, self.two_stage = k, two_stage

    def __call__(self, batch: dict) -> pd.DataFrame:
        from recsys.stages import recommend_users

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
    tm : recsys.artifacts.TrainedModel
        A fitted model (as for :func:`recsys.stages.recommend_users`).
    user_ids : sequence of str or None
        External user ids (all training users when None).
    k : int
        Items per user.
    block_size : int
        Users per block (one actor call).
    num_actors : int
        Actors in the pool, each holding one copy of the model.
    two_stage : bool or None
        As in :func:`recsys.stages.recommend_users`.
    address, num_cpus :
        Ray cluster address (None: a local Ray for this call) and local CPUs.

    Returns
    -------
    pandas.DataFrame
        ``user_id, rank, item_id, score`` (plus the two-stage columns when used): the same rows in
        the same order as :func:`recsys.stages.recommend_users` gives for ``user_ids``.

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
