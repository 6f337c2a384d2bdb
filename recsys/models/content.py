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
    (:mod:`recsys.ranking.candidates`) runs the same profiles through a
    :class:`embeddings.index.video_index.VideoIndex`. A user with an empty row has a zero profile: every
    item scores 0 (ties to the lower index); :mod:`recsys.ranking.two_stage` replaces such lists with
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
    3. Items with no interaction get ``v_j = c (e_j @ W + b)`` (``c``: step 4), so every item, including synthetic
       clips and videos added later (:meth:`item_factors_from_embeddings`), has a
       collaborative score ``user_factors @ v_j``. This is the attribute-to-feature mapping
       of Gantner et al., "Learning Attribute-to-Feature Mappings for Cold-Start
       Recommendations", ICDM 2010 (linear, ridge-regularised variant).
    4. Calibration (``calibrate=True``): mapped factors are multiplied by ``cold_scale_`` in
       [0, 1]. Why: ALS fits every warm item's factors against its *unobserved* users too (they
       are implicit negatives, pulling ``u . v_j`` towards 0), while a mapped factor is the
       ridge's conditional mean, which has seen no negative evidence. Uncalibrated, a brand-new
       item scores like the average liked item of its content group and crowds out the warm
       item a user is missing (checkerboard with two empty items: an empty item was top-1 for
       46 of 50 users, see tests/recsys/models/test_models_side.py). ``cold_scale_`` is the
       through-origin least-squares slope of the true score ``u . v_j`` on the score of the
       item's *out-of-fold* mapped factors ``u . v~_j`` (5-fold ``cross_val_predict`` on the
       warm items), over up to 200,000 sampled (user, warm item) pairs without an interaction:
       what a mapped score is worth, in warm-score units, for a user who has not touched the
       item. Out-of-fold predictions make the slope shrink when content predicts the factors
       poorly (regression dilution), so the scale doubles as the mapping's confidence: 0 when
       content says nothing, near 1 when it pins the factors down. Clipped to [0, 1]: mapping
       never inflates. With fewer than 4 warm items the scale is 1.
    5. Pessimism (``cold_penalty = z``): a cold item's score for user ``u`` is lowered by
       ``z * sqrt(u^T C u)``, ``C`` the covariance (``cold_cov_``) of the out-of-fold residuals
       ``v_j - c v~_j`` over the warm items: a lower confidence bound on the score the item
       would earn once it had interactions. The calibrated mean alone still ties a new item
       with the typical warm item of the same content (on the fixture an empty item stayed
       top-1 for 19 of 50 users); the bound lets a warm item with behavioural evidence win
       unless content pins the new item's factors down (small ``C``). On the fixture ``z = 1``
       (default, a one-sided 84% bound for Gaussian residuals) left 8 of 50, ``z = 2`` 1 of 50;
       larger ``z`` also hides new items the content does vouch for (on a two-group fixture
       with 10 of 40 items cold, ``z = 2`` pushed own-group cold items below the other group's
       warm items), so ``z`` is a hyperparameter to choose on a cold-start validation split
       (:func:`recsys.evaluation.coldstart.evaluate_cold_start`). The penalty is the same for every cold
       item of a user, so it moves cold items against warm ones, never among themselves. It
       is applied by ``score``/``recommend`` on ``cold_items_``; factors from
       :meth:`item_factors_from_embeddings` are the calibrated mean (step 4) only.

    Parameters
    ----------
    ridge_alpha : float
        Ridge L2 penalty (> 0).
    calibrate : bool
        Scale mapped factors by ``cold_scale_`` and apply the penalty (default; steps 4-5).
        False keeps the raw mapping of Gantner et al.
    cold_penalty : float
        ``z`` of step 5 (>= 0; 0 = calibrated mean only).
    factors, regularization, alpha, iterations, random_state, num_threads, device
        As for :class:`ALS`.

    Attributes
    ----------
    user_factors_, item_factors_ : np.ndarray, float32
        As for ALS; cold items' rows are the mapped factors.
    mapping_ : np.ndarray, float32, shape (d, factors)
    intercept_ : np.ndarray, float32, shape (factors,)
    cold_scale_ : np.ndarray, float32, shape (1,)
        Calibration factor of mapped factors (1 with ``calibrate=False``).
    cold_cov_ : np.ndarray, float32, shape (factors, factors)
        Residual covariance of step 5 (zeros with ``calibrate=False``).
    cold_items_ : np.ndarray, int64
        Item indices without interactions at fit time.
    """

    _state_attrs = ("user_factors_", "item_factors_", "mapping_", "intercept_", "cold_items_",
                    "cold_scale_", "cold_cov_")

    def __init__(self, ridge_alpha: float = 1.0, calibrate: bool = True,
                 cold_penalty: float = 1.0, factors: int = 64, regularization: float = 0.01,
                 alpha: float = 1.0, iterations: int = 15, random_state: int | None = 0,
                 num_threads: int = 0, device: str = "cpu") -> None:
        self.ridge_alpha = ridge_alpha
        self.calibrate = calibrate
        self.cold_penalty = cold_penalty
        super().__init__(factors=factors, regularization=regularization, alpha=alpha,
                         iterations=iterations, random_state=random_state,
                         num_threads=num_threads, device=device)

    def _validate_params(self) -> None:
        super()._validate_params()
        a = self.ridge_alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not a > 0:
            raise ValueError(f"ridge_alpha must be a number > 0, got {a!r}")
        if not isinstance(self.calibrate, bool):
            raise ValueError(f"calibrate must be True or False, got {self.calibrate!r}")
        z = self.cold_penalty
        if isinstance(z, bool) or not isinstance(z, (int, float)) or not z >= 0:
            raise ValueError(f"cold_penalty must be a number >= 0, got {z!r}; 1 is the default")

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
        self.cold_scale_ = np.ones(1, dtype=np.float32)
        width = self.item_factors_.shape[1]
        self.cold_cov_ = np.zeros((width, width), dtype=np.float32)
        if self.calibrate:
            self.cold_scale_[0], self.cold_cov_ = self._calibration(
                user_items, np.flatnonzero(warm), e)
        if self.cold_items_.size:
            self.item_factors_[self.cold_items_] = self.item_factors_from_embeddings(
                e[self.cold_items_])
            logger.info("HybridColdStart: %d cold items got mapped factors", self.cold_items_.size)

    def _calibration(self, user_items: sp.csr_matrix, warm: np.ndarray,
                     e: np.ndarray) -> tuple[float, np.ndarray]:
        """Scale and residual covariance of steps 4-5 of the class docstring."""
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import KFold, cross_val_predict

        width = self.item_factors_.shape[1]
        if warm.size < 4:
            return 1.0, np.zeros((width, width), dtype=np.float32)
        seed = 0 if self.random_state is None else int(self.random_state)
        folds = KFold(n_splits=min(5, warm.size), shuffle=True, random_state=seed)
        v = self.item_factors_[warm]
        v_oof = cross_val_predict(Ridge(alpha=float(self.ridge_alpha)), e[warm], v, cv=folds)
        rng = np.random.default_rng(seed)
        n_pairs = min(200_000, user_items.shape[0] * warm.size)
        us = rng.integers(0, user_items.shape[0], n_pairs)
        js = rng.integers(0, warm.size, n_pairs)
        unobserved = np.asarray(user_items[us, warm[js]]).ravel() == 0
        us, js = us[unobserved], js[unobserved]
        uf = self.user_factors_[us].astype(np.float64)
        true = np.einsum("ij,ij->i", uf, v[js])
        mapped = np.einsum("ij,ij->i", uf, v_oof[js])
        denom = float(mapped @ mapped)
        scale = float(np.clip(true @ mapped / denom, 0.0, 1.0)) if denom > 0 else 1.0
        resid = v - scale * v_oof
        cov = np.atleast_2d(np.cov(resid, rowvar=False)).astype(np.float32)
        logger.info("HybridColdStart: mapped factors calibrated by %.3f (%d unobserved pairs), "
                    "residual sd %.4f", scale, us.size, float(np.sqrt(np.trace(cov))))
        return scale, cov

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        arrays = dict(arrays)
        width = np.shape(arrays["item_factors_"])[1]
        # files saved before the calibration (steps 4-5) load as the raw mapping they hold
        arrays.setdefault("cold_scale_", np.ones(1, dtype=np.float32))
        arrays.setdefault("cold_cov_", np.zeros((width, width), dtype=np.float32))
        super()._set_state(arrays)

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        users = self._user_vectors(rows, user_index)
        s = users @ self.item_factors_.T
        if self.calibrate and self.cold_penalty and self.cold_items_.size:
            sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", users, self.cold_cov_, users), 0))
            s[:, self.cold_items_] -= np.float32(self.cold_penalty) * sd[:, None].astype(
                np.float32)
        return s

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
        return (e @ self.mapping_ + self.intercept_) * getattr(self, "cold_scale_", np.ones(1))[0]
