"""Most-popular baseline: every user gets the items most users interacted with."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Recommender

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Rank items by the number of distinct users who interacted with them.

    The score of item ``j`` is ``item_counts_[j]``, the number of users whose training row
    holds a non-zero value for ``j`` (interaction weights are ignored), the same for every
    user. Ties go to the lower item index. No item-item similarity: ``similar_items``
    raises ``NotImplementedError``.

    Attributes
    ----------
    item_counts_ : np.ndarray, float32, shape (n_items,)
        Users per item in the training matrix.
    """

    _state_attrs = ("item_counts_",)

    def __init__(self) -> None:
        pass

    def _fit(self, user_items: sp.csr_matrix) -> None:
        cols = user_items.indices[user_items.data != 0]
        self.item_counts_ = np.bincount(cols, minlength=user_items.shape[1]).astype(np.float32)

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        return np.broadcast_to(self.item_counts_, (rows.shape[0], self.item_counts_.size))

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            "Popularity has no item-item similarity (every item's score is its user count); "
            "use ItemKNN, EASE, ALS or BPR for similar_items"
        )
