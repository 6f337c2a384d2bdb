"""Time-decayed popularity ("trending"): recent interactions count more than old ones."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .base import Recommender, to_csr_for_fit

__all__ = ["TrendingPopularity", "interaction_times_matrix"]

_DAY_S = 86_400.0


def interaction_times_matrix(dataset, df: pd.DataFrame) -> sp.csr_matrix:
    """Latest interaction time of every (user, item) pair as a CSR matrix.

    Parameters
    ----------
    dataset : recsys.data.interactions.Dataset
        Id maps (the same as the training matrix's).
    df : pandas.DataFrame
        Columns ``user_id``, ``item_id``, ``timestamp`` (unix seconds, int).

    Returns
    -------
    scipy.sparse.csr_matrix, float64, shape (n_users, n_items)
        Duplicate pairs keep their **latest** timestamp (the rule of
        :func:`recsys.data.interactions.drop_duplicate_interactions`); rows with unknown ids are dropped.
        A timestamp of 0 is stored as 1e-9 so it stays a stored entry.

    Raises
    ------
    ValueError
        ``timestamp`` missing or holding NaN.
    """
    if "timestamp" not in df.columns or df["timestamp"].isna().any():
        raise ValueError(
            "interaction_times_matrix needs a timestamp column without NaN (unix seconds); "
            "fix: load a log with times, or use the Popularity model instead of trending"
        )
    rows = dataset.user_indices(df["user_id"].to_numpy())
    cols = dataset.item_indices(df["item_id"].to_numpy())
    ok = (rows >= 0) & (cols >= 0)
    t = df["timestamp"].to_numpy(dtype=np.float64)[ok]
    key = rows[ok].astype(np.int64) * dataset.n_items + cols[ok]
    frame = pd.DataFrame({"key": key, "t": t}).groupby("key", sort=True)["t"].max()
    k = frame.index.to_numpy()
    vals = np.maximum(frame.to_numpy(), 1e-9)
    return sp.csr_matrix((vals, (k // dataset.n_items, k % dataset.n_items)),
                         shape=(dataset.n_users, dataset.n_items))


class TrendingPopularity(Recommender):
    """Popularity with exponential time decay, the same list for every user.

    ``score_j = sum_u 2 ** (-(now - t_uj) / half_life)`` over the users ``u`` who interacted
    with item ``j`` at (latest) time ``t_uj``: an interaction ``half_life_days`` old counts
    half as much as one at ``now``. Exponential decay of counts is the usual "hot" score
    (e.g. Ding & Li, "Time weight collaborative filtering", CIKM 2005, use the same half-life
    form for item weights).

    Parameters
    ----------
    half_life_days : float
        Half-life of an interaction's weight, in days (> 0).
    now : float or None
        Reference time in unix seconds; None = the latest interaction time of the training
        data (stated rule, so refitting on the same data gives the same scores).

    Fitting
    -------
    ``fit(user_items, interaction_times=T)`` where ``T`` is a CSR matrix of the same shape
    with the unix time of each interaction (see :func:`interaction_times_matrix`). Entries of
    ``user_items`` without a time raise ``ValueError``; there is no silent fallback to
    undecayed counts.

    Attributes
    ----------
    item_scores_ : np.ndarray, float32, shape (n_items,)
    now_ : float
        Reference time used, unix seconds.
    """

    _state_attrs = ("item_scores_", "now_")
    side_inputs: ClassVar[tuple[str, ...]] = ("interaction_times",)

    def __init__(self, half_life_days: float = 7.0, now: float | None = None) -> None:
        self.half_life_days = half_life_days
        self.now = now

    def _validate_params(self) -> None:
        h = self.half_life_days
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not h > 0 or math.isinf(h):
            raise ValueError(f"half_life_days must be a finite number > 0 (days), got {h!r}")
        if self.now is not None and not isinstance(self.now, (int, float)):
            raise ValueError(f"now must be unix seconds (a number) or None, got {self.now!r}")

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False, callback=None, *,
            interaction_times: sp.csr_matrix | None = None):
        """Fit on ``user_items`` with per-interaction times (see class docstring).

        ``show_progress`` and ``callback`` as in :meth:`Recommender.fit`.

        Raises
        ------
        ValueError
            ``interaction_times`` missing, of another shape, NaN, or lacking a time for a
            stored interaction; plus what :meth:`Recommender.fit` raises.
        """
        if interaction_times is None:
            raise ValueError(
                "TrendingPopularity needs interaction_times (CSR, same shape as user_items, unix "
                "seconds); fix: fit(user_items, interaction_times=interaction_times_matrix(ds, df))"
            )
        times = to_csr_for_fit(interaction_times, "interaction_times")
        ui = to_csr_for_fit(user_items)
        if times.shape != ui.shape:
            raise ValueError(
                f"interaction_times has shape {times.shape}, user_items {ui.shape}; expected the "
                "same shape; fix: build both from the same Dataset"
            )
        self._times = times
        try:
            return super().fit(ui, show_progress=show_progress, callback=callback)
        finally:
            del self._times

    def _fit(self, user_items: sp.csr_matrix) -> None:
        ui = user_items.tocoo()
        keep = ui.data != 0
        if keep.any():
            t = np.asarray(self._times[ui.row[keep], ui.col[keep]]).ravel()
        else:  # no interactions: every item scores 0 (scipy cannot index with empty arrays)
            t = np.empty(0, dtype=np.float64)
        if t.size and (t == 0).any():
            raise ValueError(
                f"{int((t == 0).sum())} interactions of user_items have no time in "
                "interaction_times; fix: give every interaction a timestamp"
            )
        now = float(self.now) if self.now is not None else (float(t.max()) if t.size else 0.0)
        age_days = (now - t) / _DAY_S
        w = np.exp2(-age_days / float(self.half_life_days))
        self.item_scores_ = np.bincount(ui.col[keep], weights=w,
                                        minlength=ui.shape[1]).astype(np.float32)
        self.now_ = np.float64(now)

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (rows.shape[0], self.item_scores_.size))

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            "TrendingPopularity has no item-item similarity; use ItemKNN, EASE, ALS, BPR or "
            "ContentModel for similar_items"
        )
