"""Retrieval confidence: features of a top-k result list, a score in [0, 1], and thresholds.

Backfill (:mod:`generation.backfill`) synthesises candidates when the confidence of a text
query's retrieval is under a threshold. The confidence used now is deliberately the simplest
defensible one: the top-1 cosine similarity, clipped to [0, 1]. A :class:`Calibrator` can
replace it with a probability of relevance fitted on labelled queries.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from embeddings._io import write_json

__all__ = [
    "FEATURE_COLUMNS",
    "DEFAULT_THRESHOLDS",
    "FALLBACK_THRESHOLD",
    "confidence_features",
    "confidence_score",
    "default_threshold",
    "needs_backfill",
    "is_low_confidence",
    "Calibrator",
]

logger = logging.getLogger(__name__)

FEATURE_COLUMNS = ("top1", "margin", "gap12", "spread", "coherence", "n_valid")

#: Heuristic top-1 text->image cosine thresholds, keyed ``"<model>/<pretrained>"``.
#: Not fitted on our data. For OpenAI CLIP ViT-B-32, matching caption/image pairs typically
#: score about 0.28-0.35 and unrelated pairs about 0.10-0.20; CLIPScore (Hessel et al., EMNLP
#: 2021, "CLIPScore: A Reference-free Evaluation Metric for Image Captioning") rescales this
#: model's cosine by w = 2.5 precisely because it rarely exceeds 0.4. 0.25 sits between the two
#: populations. Fit a :class:`Calibrator` on labelled queries to replace it.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ViT-B-32/openai": 0.25,
}

#: Used for encoders without an entry (logged as a warning). For random-weight encoders
#: (``random_weights=True``) no threshold is meaningful: similarities carry no semantics.
FALLBACK_THRESHOLD = 0.25


def confidence_features(scores: np.ndarray, embeddings: np.ndarray | None = None) -> pd.DataFrame:
    """Per-query features of retrieved top-k lists.

    Parameters
    ----------
    scores : np.ndarray
        float (n_queries, k) cosine similarities, descending per row; padding ``-inf``
        (or NaN) marks missing results.
    embeddings : np.ndarray or None
        float (n_queries, k, d) L2-normalised embeddings of the retrieved items (padding rows
        ignored), needed for ``coherence``.

    Returns
    -------
    pd.DataFrame
        One row per query, columns :data:`FEATURE_COLUMNS`:

        - ``top1``: score at rank 1 (NaN if no result);
        - ``margin``: ``top1 - mean(scores at ranks 2..k)`` over valid ranks (NaN if < 2 valid);
          how much the best hit stands out from the rest of the list;
        - ``gap12``: ``top1 - top2`` (NaN if < 2 valid);
        - ``spread``: population standard deviation (ddof=0) of the valid top-k scores
          (NaN if none);
        - ``coherence``: mean pairwise cosine among the valid top-k embeddings, i < j
          (NaN without ``embeddings`` or with < 2 valid);
        - ``n_valid``: number of non-padding results.

    Raises
    ------
    ValueError
        If ``scores`` is not 2-D, or ``embeddings`` is not (n_queries, k, d).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores has shape {s.shape}; expected (n_queries, k); "
                         "pass SearchResult.scores (2-D even for one query)")
    valid = np.isfinite(s)
    n_valid = valid.sum(axis=1)
    masked = np.where(valid, s, np.nan)
    with np.errstate(invalid="ignore"), _quiet_nan_warnings():
        top1 = np.where(n_valid > 0, masked[:, 0] if s.shape[1] else np.nan, np.nan)
        rest_mean = np.nanmean(masked[:, 1:], axis=1) if s.shape[1] > 1 else np.full(len(s), np.nan)
        margin = np.where(n_valid >= 2, top1 - rest_mean, np.nan)
        gap12 = np.where(n_valid >= 2, top1 - (masked[:, 1] if s.shape[1] > 1 else np.nan), np.nan)
        spread = np.where(n_valid > 0, np.nanstd(masked, axis=1), np.nan)
    coherence = np.full(len(s), np.nan)
    if embeddings is not None:
        e = np.asarray(embeddings, dtype=np.float64)
        if e.ndim != 3 or e.shape[:2] != s.shape:
            raise ValueError(f"embeddings has shape {e.shape}; expected (n_queries, k, d) with "
                             f"(n_queries, k) = {s.shape}")
        for q in range(len(s)):
            v = e[q][valid[q]]
            if len(v) >= 2:
                gram = v @ v.T
                iu = np.triu_indices(len(v), k=1)
                coherence[q] = float(gram[iu].mean())
    return pd.DataFrame({"top1": top1, "margin": margin, "gap12": gap12, "spread": spread,
                         "coherence": coherence, "n_valid": n_valid.astype(np.int64)})


class _quiet_nan_warnings:
    """Silence numpy's 'Mean of empty slice' warnings for all-NaN rows (handled explicitly)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def confidence_score(features: pd.DataFrame | Mapping) -> float | np.ndarray:
    """Retrieval confidence in [0, 1]: the top-1 cosine similarity clipped to [0, 1].

    Parameters
    ----------
    features : pd.DataFrame or mapping
        Output of :func:`confidence_features` (a DataFrame: one score per row), or one row of it
        (a mapping or Series with ``top1``: one float).

    Returns
    -------
    float or np.ndarray
        float for a mapping, float64 (n_queries,) for a DataFrame. A query without results
        (NaN ``top1``) scores 0.0.

    Raises
    ------
    ValueError
        If ``top1`` is missing.
    """
    if isinstance(features, pd.DataFrame):
        if "top1" not in features.columns:
            raise ValueError(f"features has columns {list(features.columns)}; expected 'top1' "
                             "(use confidence_features)")
        top1 = features["top1"].to_numpy(np.float64)
        return np.clip(np.nan_to_num(top1, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    if "top1" not in features:
        raise ValueError("features has no 'top1'; expected a row of confidence_features(...)")
    top1 = float(features["top1"])
    return 0.0 if math.isnan(top1) else float(min(1.0, max(0.0, top1)))


def default_threshold(encoder: Mapping | None) -> float:
    """Heuristic confidence threshold for an encoder (see :data:`DEFAULT_THRESHOLDS`).

    Parameters
    ----------
    encoder : mapping or None
        ``ClipEncoder.describe()``: keys ``model``, ``pretrained``, ``random_weights``.

    Returns
    -------
    float
        The table entry for ``"<model>/<pretrained>"``, else :data:`FALLBACK_THRESHOLD` with a
        logged warning (also when the encoder has random weights, where no value is meaningful).
    """
    encoder = dict(encoder or {})
    key = f"{encoder.get('model')}/{encoder.get('pretrained')}"
    if encoder.get("random_weights"):
        logger.warning("encoder %s has random weights: similarities are meaningless, so is any "
                       "threshold; using %.2f", key, FALLBACK_THRESHOLD)
        return FALLBACK_THRESHOLD
    if key in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[key]
    logger.warning("no default confidence threshold for encoder %s; using the heuristic %.2f "
                   "(fit a Calibrator or pass threshold=)", key, FALLBACK_THRESHOLD)
    return FALLBACK_THRESHOLD


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold={threshold!r}: expected a number in [0, 1] "
                         "(1.0 always backfills, 0.0 never does)")
    return float(threshold)


def needs_backfill(confidence: float | np.ndarray, threshold: float) -> bool | np.ndarray:
    """True where ``confidence < threshold``; ``threshold >= 1.0`` is always True, 0.0 never.

    Parameters
    ----------
    confidence : float or np.ndarray
        Scores in [0, 1] from :func:`confidence_score` or :meth:`Calibrator.predict`.
    threshold : float
        In [0, 1].

    Returns
    -------
    bool or np.ndarray of bool (same shape as ``confidence``).

    Raises
    ------
    ValueError
        If ``threshold`` is outside [0, 1].
    """
    t = _check_threshold(threshold)
    c = np.asarray(confidence, dtype=np.float64)
    out = np.ones(c.shape, dtype=bool) if t >= 1.0 else (c < t)
    return bool(out) if out.ndim == 0 else out


is_low_confidence = needs_backfill


class Calibrator:
    """Map confidence features to P(relevant) with logistic or isotonic regression.

    Parameters
    ----------
    method : {"logistic", "isotonic"}
        "logistic": sklearn ``LogisticRegression`` on standardised ``columns``;
        "isotonic": sklearn ``IsotonicRegression`` on ``top1`` only (monotone, increasing,
        clipped outside the fitted range).
    columns : sequence of str
        Feature columns for "logistic" (default top1, margin, spread; all must be finite).

    Fitted state (``coef_``, ``intercept_``, ``mean_``, ``scale_`` or ``x_``, ``y_``) is plain
    numbers, saved as JSON (no pickle); prediction does not need sklearn.
    """

    def __init__(self, method: str = "logistic", columns: Sequence[str] = ("top1", "margin", "spread")):
        self.method = method
        self.columns = tuple(columns)

    def _matrix(self, features: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
        missing = [c for c in columns if c not in features.columns]
        if missing:
            raise ValueError(f"features is missing columns {missing}; use confidence_features")
        x = features[list(columns)].to_numpy(np.float64)
        if not np.isfinite(x).all():
            raise ValueError(f"features columns {list(columns)} contain NaN/inf; drop those queries "
                             "or choose columns that are defined for every query")
        return x

    def fit(self, features: pd.DataFrame, is_relevant) -> Calibrator:
        """Fit on rows of :func:`confidence_features` and 0/1 labels; return self.

        Raises
        ------
        ValueError
            Unknown ``method``, label count mismatch, labels not 0/1 or of one class only.
        """
        y = np.asarray(is_relevant).astype(np.float64).ravel()
        if len(y) != len(features):
            raise ValueError(f"is_relevant has {len(y)} labels for {len(features)} feature rows")
        if not np.isin(y, (0.0, 1.0)).all() or len(np.unique(y)) < 2:
            raise ValueError("is_relevant must hold 0/1 labels with both classes present")
        if self.method == "logistic":
            from sklearn.linear_model import LogisticRegression

            x = self._matrix(features, self.columns)
            self.mean_ = x.mean(axis=0)
            self.scale_ = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
            model = LogisticRegression().fit((x - self.mean_) / self.scale_, y)
            self.coef_ = model.coef_.ravel().astype(np.float64)
            self.intercept_ = float(model.intercept_[0])
        elif self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            x = self._matrix(features, ("top1",)).ravel()
            model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True,
                                       out_of_bounds="clip").fit(x, y)
            self.x_ = np.asarray(model.X_thresholds_, dtype=np.float64)
            self.y_ = np.asarray(model.y_thresholds_, dtype=np.float64)
        else:
            raise ValueError(f"method={self.method!r}: expected 'logistic' or 'isotonic'")
        return self

    def _check_fitted(self) -> None:
        if not (hasattr(self, "coef_") or hasattr(self, "x_")):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this Calibrator is not fitted; call fit() or Calibrator.load()")

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Return P(relevant), float64 (n_queries,) in [0, 1]. Raises NotFittedError if unfitted."""
        self._check_fitted()
        if self.method == "logistic":
            z = ((self._matrix(features, self.columns) - self.mean_) / self.scale_) @ self.coef_
            return 1.0 / (1.0 + np.exp(-(z + self.intercept_)))
        x = self._matrix(features, ("top1",)).ravel()
        return np.interp(x, self.x_, self.y_)  # == IsotonicRegression.predict with clip

    def to_dict(self) -> dict:
        """Fitted state as plain JSON-serialisable numbers. Raises NotFittedError if unfitted."""
        self._check_fitted()
        d = {"method": self.method, "columns": list(self.columns)}
        if self.method == "logistic":
            d.update(coef=self.coef_.tolist(), intercept=self.intercept_,
                     mean=self.mean_.tolist(), scale=self.scale_.tolist())
        else:
            d.update(x=self.x_.tolist(), y=self.y_.tolist())
        return d

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted calibrator as JSON (atomically)."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibrator:
        """Read a calibrator written by :meth:`save`. Raises ValueError on an unknown method."""
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        try:
            return cls.from_dict(d)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibrator:
        """Rebuild a calibrator from :meth:`to_dict` output. Raises ValueError on an unknown method."""
        cal = cls(method=d.get("method"), columns=d.get("columns", ()))
        if cal.method == "logistic":
            cal.coef_ = np.asarray(d["coef"], dtype=np.float64)
            cal.intercept_ = float(d["intercept"])
            cal.mean_ = np.asarray(d["mean"], dtype=np.float64)
            cal.scale_ = np.asarray(d["scale"], dtype=np.float64)
        elif cal.method == "isotonic":
            cal.x_ = np.asarray(d["x"], dtype=np.float64)
            cal.y_ = np.asarray(d["y"], dtype=np.float64)
        else:
            raise ValueError(f"method={cal.method!r}; expected 'logistic' or 'isotonic'")
        return cal
