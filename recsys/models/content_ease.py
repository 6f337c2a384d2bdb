"""EASE with item side information: the collective (feature-augmented Gram) closed form.

Jeunen, Van Balen and Goethals, "Closed-Form Models for Collaborative Filtering with
Side-Information", RecSys 2020 (collective EASE, "cEASE"): stack the item feature matrix,
transposed and weighted, under the interaction matrix as extra "users" and solve EASE on the
stack. With ``F_m`` the ``(n_items, d_m)`` feature matrix of modality ``m`` this only changes the
Gram matrix::

    G = X^T X + sum_m w_m * F_m F_m^T + l2 * I + p / (1 - p) * diagMat(diag(X^T X))
    P = G^-1,  B = I - P diagMat(1 / diag(P))       (Steck 2019, eq. 8)
    score_u = X_u B  (+ popularity_weight * log1p(n_j) / max log1p(n))

The last term is the dropout emphasis of Steck, "Autoencoders that don't overfit towards the
Identity", NeurIPS 2020 (DLAE's ``Lambda = p/(1-p) diagMat(diag(X^T X))``, ``p`` = ``dropout``):
popular items get a larger ridge. Features are mean-centred and L2-normalised per item first, so ``F_m F_m^T`` is the item-item
cosine matrix of the modality and ``w_m`` is in units of co-occurrence counts. Items without
any training interaction still get weights from their content neighbours, so they can be
recommended (cold start). ``popularity_weight`` adds a (log) popularity prior, which matters on
sparse logs where most users have one or two training items.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .base import Recommender, to_csr_for_fit
from .ease import _GIB, ease_memory_bytes

__all__ = ["ContentEASE", "ItemFeaturesRecommender", "check_item_features", "feature_weights",
           "normalise_features"]


def normalise_features(x: np.ndarray) -> np.ndarray:
    """Mean-centre the columns and L2-normalise the rows (zero rows stay zero), float64."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def check_item_features(item_features, n_items: int) -> list[np.ndarray]:
    """Validate one matrix or a sequence of matrices of item features.

    Parameters
    ----------
    item_features : None, array-like (n_items, d) or sequence of them
    n_items : int
        Columns of the interaction matrix.

    Returns
    -------
    list of np.ndarray, float64, each (n_items, d_m); ``[]`` for None.

    Raises
    ------
    ValueError
        A matrix that is not 2-D, has another row count, or holds NaN/inf (names which one).
    """
    if item_features is None:
        return []
    if isinstance(item_features, np.ndarray) and item_features.ndim == 2:
        item_features = [item_features]
    out = []
    for m, f in enumerate(item_features):
        f = np.asarray(f, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] != n_items:
            raise ValueError(f"item_features[{m}] has shape {f.shape}, expected ({n_items}, d): "
                             "one row per item column of user_items; fix: align the rows with "
                             "the item index (recsys.data.side.load_item_features(item_ids=))")
        if not np.isfinite(f).all():
            r = int(np.flatnonzero(~np.isfinite(f).all(axis=1))[0])
            raise ValueError(f"item_features[{m}] row {r} holds NaN or inf; fix: re-extract "
                             "that item's features or drop the item")
        out.append(f)
    return out


def feature_weights(weight, n: int, *, max_total: float | None = None) -> list[float]:
    """One weight per feature matrix from ``weight`` (a number for all, or one per matrix).

    Parameters
    ----------
    weight : float or sequence of float
        Each >= 0.
    n : int
        Number of feature matrices given to ``fit``.
    max_total : float, optional
        Upper bound of the sum (GraphFilter's mixing shares must sum to <= 1).

    Returns
    -------
    list of float, length ``n`` (``[]`` for a number and no matrices).

    Raises
    ------
    ValueError
        A list of another length than ``n``, a negative or non-numeric value, a sum over
        ``max_total``.
    """
    scalar = isinstance(weight, (int, float)) and not isinstance(weight, bool)
    ws = [weight] * n if scalar else list(weight)
    if len(ws) != n:
        raise ValueError(f"feature_weight has {len(ws)} values for {n} feature matrices; "
                         "give one number or one per matrix")
    for v in ws:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"feature_weight values must be numbers >= 0, got {weight!r}")
    if max_total is not None and sum(ws) > max_total + 1e-9:
        raise ValueError(f"feature_weight sums to {sum(ws)} > {max_total}: the weights mix the "
                         "interaction graph with the content graphs; fix: scale them down")
    return [float(v) for v in ws]


class ItemFeaturesRecommender(Recommender):
    """A Recommender whose ``fit`` also takes optional ``item_features`` (validated here).

    Subclasses read the validated matrices from ``self._features`` (a list of float64
    ``(n_items, d_m)`` arrays, ``[]`` without features) inside ``_fit``; the list is dropped
    after fitting (it is not model state).
    """

    side_inputs: ClassVar[tuple[str, ...]] = ("item_features",)

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False, callback=None, *,
            item_features=None):
        """Fit on ``user_items`` (n_users, n_items) and optional ``item_features``.

        ``show_progress`` and ``callback`` as in :meth:`Recommender.fit` (implicit's keywords;
        a closed-form model has no per-iteration callback: NotImplementedError).

        Raises
        ------
        ValueError
            See :func:`check_item_features`, :meth:`Recommender.fit`, :func:`feature_weights`.
        """
        ui = to_csr_for_fit(user_items)
        self._features = check_item_features(item_features, ui.shape[1])
        try:
            return super().fit(ui, show_progress=show_progress, callback=callback)
        finally:
            del self._features


class ContentEASE(ItemFeaturesRecommender):
    """Collective EASE on interactions plus any number of item feature matrices.

    Parameters
    ----------
    l2 : float
        Ridge added to the Gram diagonal (> 0). Sparse logs want small values (TikTok: ~20).
    feature_weight : float or sequence of float
        ``w_m`` per feature matrix (one value for all, or one per matrix; >= 0). 0 = plain EASE.
    popularity_weight : float
        Weight of the log-popularity prior added to every score (>= 0).
    dropout : float
        Dropout probability ``p`` in [0, 1) of the popularity-proportional ridge (0 = none).
    max_memory_bytes : int
        As for :class:`recsys.models.EASE`.

    Attributes
    ----------
    B_ : np.ndarray, float32, (n_items, n_items)
        Item-item weights, zero diagonal.
    popularity_ : np.ndarray, float32, (n_items,)
        ``log1p(n_j) / max log1p(n)`` of the training matrix.
    n_feature_matrices_ : int

    Notes
    -----
    ``fit(user_items, item_features=...)`` takes one ``(n_items, d)`` array or a list (one per
    modality). Without features it is EASE plus the popularity prior.
    """

    _state_attrs = ("B_", "popularity_")

    def __init__(self, l2: float = 20.0, feature_weight=10.0, popularity_weight: float = 0.0,
                 dropout: float = 0.0, max_memory_bytes: int = 4 * _GIB) -> None:
        self.l2 = l2
        self.feature_weight = feature_weight
        self.popularity_weight = popularity_weight
        self.dropout = dropout
        self.max_memory_bytes = max_memory_bytes

    def _validate_params(self) -> None:
        if isinstance(self.l2, bool) or not isinstance(self.l2, (int, float)) or not self.l2 > 0:
            raise ValueError(f"l2 must be a number > 0, got {self.l2!r}; try 20 on sparse logs")
        p = self.popularity_weight
        if isinstance(p, bool) or not isinstance(p, (int, float)) or p < 0:
            raise ValueError(f"popularity_weight must be a number >= 0, got {p!r}")
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {d!r}")

    def _fit(self, user_items: sp.csr_matrix) -> None:
        n_items = user_items.shape[1]
        need = ease_memory_bytes(n_items)
        if need > self.max_memory_bytes:
            raise ValueError(
                f"ContentEASE on n_items={n_items} needs about {need} bytes, over "
                f"max_memory_bytes={self.max_memory_bytes}; fix: raise it if the memory is there")
        weights = feature_weights(self.feature_weight, len(self._features))
        x = user_items.astype(np.float64)
        gram = (x.T @ x).toarray()
        emphasis = float(self.dropout) / (1.0 - float(self.dropout)) * np.diag(gram).copy()
        for w, f in zip(weights, self._features, strict=True):
            if w > 0:
                fn = normalise_features(f)
                gram += w * (fn @ fn.T)
        gram[np.diag_indices(n_items)] += float(self.l2) + emphasis
        chol, info = scipy.linalg.lapack.dpotrf(gram, lower=False, overwrite_a=True)
        if info != 0:
            raise RuntimeError(f"ContentEASE: Cholesky failed (LAPACK info={info}); raise l2")
        del gram
        p, info = scipy.linalg.lapack.dpotri(chol, lower=False, overwrite_c=True)
        if info != 0:
            raise RuntimeError(f"ContentEASE: inverse failed (LAPACK info={info})")
        p = np.triu(p) + np.triu(p, 1).T
        p /= -np.diag(p).copy()[None, :]
        p[np.diag_indices(n_items)] = 0.0
        self.B_ = p.astype(np.float32)
        counts = np.log1p(np.bincount(user_items.indices, minlength=n_items).astype(np.float64))
        self.popularity_ = (counts / max(counts.max(), 1e-12)).astype(np.float32)
        self.n_feature_matrices_ = len(self._features)

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        s = np.asarray(rows.astype(np.float32) @ self.B_)
        if self.popularity_weight:
            s += np.float32(self.popularity_weight) * self.popularity_[None, :]
        return s

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        return self.B_[items]
