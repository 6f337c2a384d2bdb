"""Content-based models on item embeddings (CLIP video embeddings, or any unit vectors).

* :class:`ContentModel`: a user's profile is the mean of the embeddings of the items in the
  user's row; items are scored by inner product with it (= cosine, embeddings L2-normalised).
* :class:`HybridColdStart`: ALS whose item factors are also predicted from the item's
  embedding by a ridge regression, so an item with no interactions (every synthetic clip)
  still has factors and a collaborative score.

Both take the embeddings at fit time: ``fit(user_items, item_embeddings=E)``, ``E`` of shape
``(n_items, d)`` aligned with the columns of ``user_items`` (see :func:`align_item_embeddings`).
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from .base import Recommender, to_csr_for_fit
from .factorization import ALS

__all__ = ["ContentModel", "HybridColdStart", "align_item_embeddings", "check_item_embeddings"]

logger = logging.getLogger(__name__)


def check_item_embeddings(item_embeddings, n_items: int) -> np.ndarray:
    """Validate item embeddings and return them L2-normalised as float32.

    Parameters
    ----------
    item_embeddings : array-like, float, shape (n_items, d)
    n_items : int
        Columns of the interaction matrix.

    Returns
    -------
    np.ndarray, float32, shape (n_items, d), unit rows.

    Raises
    ------
    ValueError
        ``None``, wrong shape, NaN/inf, or a zero row (an item without an embedding).
    """
    if item_embeddings is None:
        raise ValueError(
            "item_embeddings is required: (n_items, d) float vectors aligned with the columns "
            "of user_items; fix: fit(user_items, item_embeddings=align_item_embeddings(...))"
        )
    e = np.asarray(item_embeddings, dtype=np.float32)
    if e.ndim != 2 or e.shape[0] != n_items:
        raise ValueError(
            f"item_embeddings has shape {e.shape}, expected ({n_items}, d): one row per item "
            "column of user_items; fix: align them with align_item_embeddings"
        )
    if not np.all(np.isfinite(e)):
        raise ValueError("item_embeddings holds NaN or infinite values; fix: re-embed those items")
    norms = np.linalg.norm(e, axis=1)
    if (norms == 0).any():
        bad = np.flatnonzero(norms == 0)[:5].tolist()
        raise ValueError(
            f"item_embeddings has {int((norms == 0).sum())} all-zero rows (items {bad}...): items "
            "without an embedding; fix: embed them or drop them from the interaction log"
        )
    return e / norms[:, None]


def align_item_embeddings(item_ids, video_ids, embeddings) -> np.ndarray:
    """Reorder embeddings (keyed by ``video_id``) to the item columns of a training matrix.

    Parameters
    ----------
    item_ids : sequence of str, length n_items
        ``item_ids[item_index]`` of the training matrix.
    video_ids : sequence of str, length n_videos
        Ids of the rows of ``embeddings`` (``EmbeddingFolder.load_videos()`` metadata).
    embeddings : np.ndarray, float, shape (n_videos, d)

    Returns
    -------
    np.ndarray, float32, shape (n_items, d)

    Raises
    ------
    ValueError
        Some items have no embedding (names up to 5 of them and the count).
    """
    lookup = {str(v): i for i, v in enumerate(video_ids)}
    pos = np.array([lookup.get(str(i), -1) for i in item_ids], dtype=np.int64)
    if (pos < 0).any():
        missing = [str(item_ids[i]) for i in np.flatnonzero(pos < 0)[:5]]
        raise ValueError(
            f"{int((pos < 0).sum())} of {len(pos)} items have no embedding (e.g. {missing}); "
            "fix: embed those videos (recsys embed) or drop their interactions"
        )
    return np.asarray(embeddings, dtype=np.float32)[pos]


class _EmbeddingFit:
    """Mixin: ``fit(user_items, item_embeddings=E)`` stores checked embeddings for ``_fit``."""

    side_inputs: ClassVar[tuple[str, ...]] = ("item_embeddings",)

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False, callback=None, *,
            item_embeddings=None):
        """Fit on ``user_items`` (n_users, n_items) and ``item_embeddings`` (n_items, d).

        ``show_progress`` and ``callback`` as in :meth:`Recommender.fit`.

        Raises
        ------
        ValueError
            See :func:`check_item_embeddings` and :meth:`Recommender.fit`.
        """
        ui = to_csr_for_fit(user_items)
        self._embeddings = check_item_embeddings(item_embeddings, ui.shape[1])
        try:
            return super().fit(ui, show_progress=show_progress, callback=callback)
        finally:
            del self._embeddings


class ContentModel(_EmbeddingFit, Recommender):
    """Content-based recommender: user profile = mean embedding of the user's items.

    ``profile_u = normalise(mean_{j in row u, x_uj != 0} e_j)`` (unweighted mean of the
    watched items' unit embeddings), ``score_uj = profile_u . e_j`` (cosine). This is the exact
    inner-product search a FAISS ``IndexFlatIP`` does; candidate retrieval
    (:mod:`recsys.candidates`) runs the same profiles through a
    :class:`embeddings.index.video_index.VideoIndex`. A user with an empty row has a zero profile: every
    item scores 0 (ties to the lower index); :mod:`recsys.two_stage` replaces such lists with
    the popularity fallback and says so.

    Attributes
    ----------
    item_embeddings_ : np.ndarray, float32, shape (n_items, d), unit rows.
    """

    _state_attrs = ("item_embeddings_",)

    def __init__(self) -> None:
        pass

    def _fit(self, user_items: sp.csr_matrix) -> None:
        self.item_embeddings_ = self._embeddings

    def user_profiles(self, rows: sp.csr_matrix) -> np.ndarray:
        """Unit profile vectors, float32 (n, d); zero rows for users without history."""
        self._check_fitted()
        b = sp.csr_matrix(rows, dtype=np.float32, copy=True)
        b.data = (b.data != 0).astype(np.float32)
        prof = np.asarray(b @ self.item_embeddings_, dtype=np.float32)
        norms = np.linalg.norm(prof, axis=1, keepdims=True)
        return np.divide(prof, norms, out=np.zeros_like(prof), where=norms > 0)

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        return self.user_profiles(rows) @ self.item_embeddings_.T

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        return self.item_embeddings_[items] @ self.item_embeddings_.T


class HybridColdStart(_EmbeddingFit, ALS):
    """ALS with item factors predicted from content for items without interactions.

    1. Fit ALS on ``user_items`` (see :class:`ALS`).
    2. On the items with at least one interaction, fit a ridge regression
       (``sklearn.linear_model.Ridge(alpha=ridge_alpha)``) from the unit embedding ``e_j`` to
       the ALS factors ``v_j``: ``v_j ~ e_j @ W + b``.
    3. Items with no interaction get ``v_j = e_j @ W + b``, so every item, including synthetic
       clips and videos added later (:meth:`item_factors_from_embeddings`), has a
       collaborative score ``user_factors @ v_j``. This is the attribute-to-feature mapping
       of Gantner et al., "Learning Attribute-to-Feature Mappings for Cold-Start
       Recommendations", ICDM 2010 (linear, ridge-regularised variant).

    Parameters
    ----------
    ridge_alpha : float
        Ridge L2 penalty (> 0).
    factors, regularization, alpha, iterations, random_state, num_threads, device
        As for :class:`ALS`.

    Attributes
    ----------
    user_factors_, item_factors_ : np.ndarray, float32
        As for ALS; cold items' rows are the mapped factors.
    mapping_ : np.ndarray, float32, shape (d, factors)
    intercept_ : np.ndarray, float32, shape (factors,)
    cold_items_ : np.ndarray, int64
        Item indices without interactions at fit time.
    """

    _state_attrs = ("user_factors_", "item_factors_", "mapping_", "intercept_", "cold_items_")

    def __init__(self, ridge_alpha: float = 1.0, factors: int = 64, regularization: float = 0.01,
                 alpha: float = 1.0, iterations: int = 15, random_state: int | None = 0,
                 num_threads: int = 0, device: str = "cpu") -> None:
        self.ridge_alpha = ridge_alpha
        super().__init__(factors=factors, regularization=regularization, alpha=alpha,
                         iterations=iterations, random_state=random_state,
                         num_threads=num_threads, device=device)

    def _validate_params(self) -> None:
        super()._validate_params()
        a = self.ridge_alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not a > 0:
            raise ValueError(f"ridge_alpha must be a number > 0, got {a!r}")

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from sklearn.linear_model import Ridge

        if not (user_items.data != 0).any():
            raise ValueError(
                f"user_items (shape {user_items.shape}) holds no interactions; HybridColdStart "
                "learns its content-to-factor mapping from interacted items and needs at least "
                "one; fix: fit on a matrix with interactions, or use ContentModel for a "
                "catalogue without any"
            )
        super()._fit(user_items)
        counts = np.bincount(user_items.indices[user_items.data != 0],
                             minlength=user_items.shape[1])
        warm = counts > 0
        e = self._embeddings
        ridge = Ridge(alpha=float(self.ridge_alpha)).fit(e[warm], self.item_factors_[warm])
        self.mapping_ = np.ascontiguousarray(ridge.coef_.T, dtype=np.float32)
        self.intercept_ = np.asarray(ridge.intercept_, dtype=np.float32).reshape(-1)
        self.cold_items_ = np.flatnonzero(~warm).astype(np.int64)
        if self.cold_items_.size:
            self.item_factors_[self.cold_items_] = self.item_factors_from_embeddings(
                e[self.cold_items_])
            logger.info("HybridColdStart: %d cold items got mapped factors", self.cold_items_.size)

    def item_factors_from_embeddings(self, embeddings) -> np.ndarray:
        """Collaborative factors predicted from content.

        Parameters
        ----------
        embeddings : array-like, float, shape (n, d)
            Item embeddings (normalised here).

        Returns
        -------
        np.ndarray, float32, shape (n, factors_width)
        """
        e = check_item_embeddings(embeddings, np.shape(embeddings)[0])
        if e.shape[1] != self.mapping_.shape[0]:
            raise ValueError(
                f"embeddings have dimension {e.shape[1]}, the model was fitted on "
                f"{self.mapping_.shape[0]}; fix: use the same encoder"
            )
        return e @ self.mapping_ + self.intercept_
