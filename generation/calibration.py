"""Calibrating the backfill gate on labelled queries: probability, conformal threshold, evaluation.

Input: labelled pairs (query text, relevant ``video_id``), e.g. every caption of a catalog and
its own clip. For each distinct query the index is searched (synthetic items excluded), the
:func:`~generation.confidence.confidence_features` of its top-k are computed, and the label is
"the top-1 result is relevant".

:func:`calibrate` splits the queries in two halves (seeded): a :class:`Calibrator` is fitted
on the first, and everything reported is measured on the second, held-out half:

- AUROC of the raw confidence (top-1 cosine) and of the calibrated probability against the
  label (Hanley & McNeil 1982; ``sklearn.metrics.roc_auc_score``);
- the risk-coverage curve (Geifman & El-Yaniv, NeurIPS 2017, "Selective classification for
  deep neural networks"): for each threshold t, coverage = fraction of queries answered without
  generation (confidence >= t), trigger rate = 1 - coverage, risk = fraction of answered
  queries whose top-1 is not relevant;
- optionally a split-conformal threshold for an error rate ``alpha``: t = the
  ceil((n + 1)(1 - alpha))-th smallest calibrated confidence among the n held-out queries whose
  top-1 is NOT relevant (class-conditional split conformal, Vovk 2012; Angelopoulos & Bates
  2021, "A Gentle Introduction to Conformal Prediction", Sec. 1 and 4.5). For a new query whose
  top-1 is not relevant, exchangeable with those n, P(no generation) = P(confidence > t) <= alpha.

The result is saved as ``calibration.json`` in the index folder (:func:`save_calibration`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings._io import atomic_path, write_json

from .confidence import Calibrator, confidence_features, confidence_score
from .results import synthetic_ids

__all__ = ["CALIBRATION_FILE", "CalibrationResult", "labelled_queries", "collect_features", "auroc",
           "risk_coverage", "conformal_threshold", "calibrate", "save_calibration",
           "load_calibration", "plot_risk_coverage", "preserve_calibration"]

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"


def labelled_queries(pairs: pd.DataFrame) -> dict[str, set[str]]:
    """Group (query, relevant id) pairs: ``{query text: {relevant video_id, ...}}``.

    Parameters
    ----------
    pairs : pd.DataFrame
        Columns ``video_id`` and ``query`` or ``caption`` (a catalog's caption CSV works as is).
        Rows with an empty query are dropped (logged).

    Raises
    ------
    ValueError
        Missing columns or no usable row.
    """
    text_col = "query" if "query" in pairs.columns else "caption"
    missing = [c for c in ("video_id", text_col) if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs is missing columns {missing} (has {list(pairs.columns)}); expected "
                         "video_id and query (or caption)")
    text = pairs[text_col].fillna("").astype(str).str.strip()
    keep = text != ""
    if (~keep).any():
        logger.warning("calibration: %d rows without query text dropped", int((~keep).sum()))
    out: dict[str, set[str]] = {}
    for q, vid in zip(text[keep], pairs.loc[keep, "video_id"].astype(str), strict=True):
        out.setdefault(q, set()).add(vid)
    if not out:
        raise ValueError("pairs has no row with query text; fill the query/caption column")
    return out


def collect_features(index, encoder, queries: dict[str, set[str]], *, k: int = 10,
                     batch_size: int = 256, progress: bool = False):
    """Search every labelled query (synthetic items excluded) and label its top-1.

    Parameters
    ----------
    index : embeddings.index.video_index.VideoIndex
    encoder : object with ``encode_text(list[str]) -> (n, d)``
    queries : dict
        Output of :func:`labelled_queries`. Queries none of whose relevant ids is a real item
        of the index are dropped (logged, counted in the returned ``n_dropped``).
    k : int
        List length for the features (>= 2 for margin/spread).
    batch_size : int
        Queries per ``encode_text`` call.
    progress : bool
        tqdm bar over the encoded queries (:func:`embeddings.progress.progress_bar`: terminal only).

    Returns
    -------
    features : pd.DataFrame
        One row per kept query (:data:`~generation.confidence.FEATURE_COLUMNS`), plus
        ``query`` and ``top1_id``.
    labels : np.ndarray
        int64 (n,), 1 where the top-1 id is relevant.
    info : dict
        ``n_queries``, ``n_dropped``, ``n_synthetic_excluded``.

    Raises
    ------
    ValueError
        ``k`` < 2, or no query left.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k={k!r}: expected an integer >= 2 (margin and spread need 2 results)")
    syn = synthetic_ids(index)
    syn_set = set(syn)
    real = set(index.metadata["video_id"].astype(str)) - syn_set
    kept = {q: rel for q, rel in queries.items() if rel & real}
    n_dropped = len(queries) - len(kept)
    if n_dropped:
        logger.warning("calibration: %d queries dropped: none of their relevant ids is a real item "
                       "of the index", n_dropped)
    if not kept:
        raise ValueError("no labelled query has a relevant id in the index; check that the CSV's "
                         "video_id values match the index (recsys search shows them)")
    texts = list(kept)
    from embeddings.progress import progress_bar

    parts = []
    with progress_bar(len(texts), "calibrate: encode queries", "query", progress) as bar:
        for s in range(0, len(texts), batch_size):
            parts.append(np.asarray(encoder.encode_text(texts[s:s + batch_size], batch_size=batch_size),
                                    dtype=np.float32))
            bar.update(len(parts[-1]))
    q = np.concatenate(parts)
    res = index.search(q, k=k, exclude_ids=syn)
    emb = np.zeros((len(texts), k, index.dim), dtype=np.float32)
    for row in range(len(texts)):
        ids = [str(v) for v in res.ids[row] if v is not None]
        if ids:
            emb[row, :len(ids)] = index.reconstruct(ids)
    feats = confidence_features(res.scores, emb)
    top1 = [None if v is None else str(v) for v in res.ids[:, 0]]
    labels = np.array([int(t is not None and t in kept[text]) for t, text in zip(top1, texts, strict=True)],
                      dtype=np.int64)
    feats.insert(0, "query", texts)
    feats["top1_id"] = top1
    return feats, labels, {"n_queries": len(texts), "n_dropped": n_dropped,
                           "n_synthetic_excluded": len(syn)}


def auroc(confidence, labels) -> float:
    """Area under the ROC curve of ``confidence`` for ``labels`` (1 = relevant); NaN with one class."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(confidence, dtype=np.float64)))


def risk_coverage(confidence, labels, thresholds=None) -> pd.DataFrame:
    """Risk-coverage table of the gate "generate when confidence < threshold".

    Parameters
    ----------
    confidence : array-like
        float (n,) confidences in [0, 1].
    labels : array-like
        0/1 (n,), 1 = top-1 relevant.
    thresholds : array-like or None
        Thresholds to tabulate; None: 0, every distinct confidence, and 1.

    Returns
    -------
    pd.DataFrame
        Columns ``threshold``, ``trigger_rate`` (fraction with confidence < threshold),
        ``coverage`` (1 - trigger_rate), ``risk`` (fraction of non-triggering queries whose
        top-1 is not relevant; NaN at zero coverage), ``n_answered``.
    """
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    t = np.unique(np.concatenate([[0.0, 1.0], c])) if thresholds is None else np.asarray(thresholds, float)
    rows = []
    for thr in t:
        answered = c >= thr
        n = int(answered.sum())
        rows.append({"threshold": float(thr), "trigger_rate": 1.0 - n / max(len(c), 1),
                     "coverage": n / max(len(c), 1),
                     "risk": float((y[answered] == 0).mean()) if n else float("nan"), "n_answered": n})
    return pd.DataFrame(rows)


def conformal_threshold(negative_confidence, alpha: float) -> float:
    """Split-conformal gate for queries whose top-1 is not relevant (module docstring).

    Parameters
    ----------
    negative_confidence : array-like
        float (n,) confidences of held-out queries whose top-1 is NOT relevant.
    alpha : float
        Target error rate in (0, 1): the fraction of such queries allowed through without
        generation.

    Returns
    -------
    float
        Threshold in [0, 1] for ``needs_backfill(confidence, threshold)`` (generate when
        confidence < threshold): the next float above the order statistic, so a query passes
        only when its confidence is strictly greater. 1.0 (always generate) when
        ceil((n + 1)(1 - alpha)) > n: too few negatives for this alpha (logged).

    Raises
    ------
    ValueError
        ``alpha`` outside (0, 1) or no negatives.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r}: expected an error rate in (0, 1), e.g. 0.1")
    s = np.sort(np.asarray(negative_confidence, dtype=np.float64))
    n = len(s)
    if n == 0:
        raise ValueError("no held-out query with an irrelevant top-1: the conformal threshold needs "
                         "some; add harder queries or pass alpha=None")
    rank = math.ceil((n + 1) * (1.0 - alpha))
    if rank > n:
        logger.warning("conformal threshold: %d negatives are too few for alpha=%g (need >= %d); "
                       "threshold 1.0 (always generate)", n, alpha, math.ceil(1 / alpha) - 1)
        return 1.0
    return float(min(1.0, np.nextafter(s[rank - 1], np.inf)))


@dataclass
class CalibrationResult:
    """What :func:`calibrate` fitted and measured (all metrics on the held-out half)."""

    calibrator: Calibrator
    threshold: float
    threshold_source: str
    alpha: float | None
    metrics: dict
    curve: pd.DataFrame
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form (the ``calibration.json`` content)."""
        return {"format_version": 1, "calibrator": self.calibrator.to_dict(),
                "threshold": self.threshold, "threshold_source": self.threshold_source,
                "alpha": self.alpha, "metrics": self.metrics, "info": self.info,
                "risk_coverage": self.curve.to_dict(orient="list")}


def calibrate(features: pd.DataFrame, labels, *, method: str = "isotonic", alpha: float | None = None,
              holdout: float = 0.5, seed: int = 0) -> CalibrationResult:
    """Fit P(top-1 relevant) on part of the queries; measure and set the gate on the rest.

    Parameters
    ----------
    features, labels
        From :func:`collect_features`.
    method : {"isotonic", "logistic"}
        :class:`Calibrator` method.
    alpha : float or None
        Error rate for :func:`conformal_threshold`; None: threshold 0.5 on the probability.
    holdout : float
        Fraction of queries held out for evaluation and the conformal threshold, in (0, 1).
    seed : int
        Seed of the split.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    ValueError
        Fewer than 4 queries, a half without both classes (the message says how many of each),
        bad ``holdout``/``alpha``/``method``.
    """
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout={holdout!r}: expected a fraction in (0, 1)")
    if n < 4:
        raise ValueError(f"{n} labelled queries; calibration needs at least 4 (two per half)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_hold = min(n - 2, max(2, int(round(n * holdout))))
    hold, fit = order[:n_hold], order[n_hold:]
    for name, part in (("fit", fit), ("held-out", hold)):
        pos = int(y[part].sum())
        if name == "fit" and (pos == 0 or pos == len(part)):
            raise ValueError(
                f"the {name} half has {pos} relevant and {len(part) - pos} irrelevant top-1 results; "
                f"both are needed (overall {int(y.sum())} of {n} relevant). Add labelled queries, "
                "or use an encoder with real weights (random weights rarely retrieve the right clip)")
    feats = features.reset_index(drop=True)
    cal = Calibrator(method=method).fit(feats.iloc[fit], y[fit])
    p_hold = cal.predict(feats.iloc[hold])
    raw_hold = confidence_score(feats.iloc[hold])
    if alpha is None:
        threshold, source = 0.5, "probability 0.5"
    else:
        threshold = conformal_threshold(p_hold[y[hold] == 0], alpha)
        source = f"split conformal, alpha={alpha:g}"
    curve = risk_coverage(p_hold, y[hold])
    answered = p_hold >= threshold
    metrics = {
        "auroc_calibrated": auroc(p_hold, y[hold]), "auroc_top1": auroc(raw_hold, y[hold]),
        "n_fit": int(len(fit)), "n_heldout": int(len(hold)),
        "heldout_relevant_rate": float(y[hold].mean()),
        "heldout_trigger_rate": float(1.0 - answered.mean()),
        "heldout_risk": float((y[hold][answered] == 0).mean()) if answered.any() else None,
        "heldout_negatives_passed": float(answered[y[hold] == 0].mean()) if (y[hold] == 0).any() else None,
    }
    return CalibrationResult(calibrator=cal, threshold=float(threshold), threshold_source=source,
                             alpha=alpha, metrics=metrics, curve=curve,
                             info={"method": method, "holdout": holdout, "seed": seed, "n_queries": n})


def save_calibration(index_dir: str | os.PathLike, result: CalibrationResult | dict, *,
                     extra: dict | None = None) -> Path:
    """Write ``index_dir/calibration.json`` atomically; return its path.

    Note: ``VideoIndex.save`` rewrites its folder; re-save the calibration after saving the index
    (``recsys query`` does).
    """
    d = result.to_dict() if isinstance(result, CalibrationResult) else dict(result)
    if extra:
        d.update(extra)
    path = Path(index_dir) / CALIBRATION_FILE
    write_json(path, d)
    return path


def load_calibration(index_dir: str | os.PathLike) -> tuple[Calibrator, float, dict] | None:
    """Read ``index_dir/calibration.json``: ``(calibrator, threshold, full dict)``, or None if absent.

    Raises
    ------
    ValueError
        A file that is not a calibration written by :func:`save_calibration`.
    """
    path = Path(index_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    if d.get("format_version") != 1 or "calibrator" not in d or "threshold" not in d:
        raise ValueError(f"{path} is not a calibration file (format_version 1 with calibrator and "
                         "threshold); re-run `recsys calibrate`")
    return Calibrator.from_dict(d["calibrator"]), float(d["threshold"]), d


def plot_risk_coverage(curve: pd.DataFrame, path: str | os.PathLike, *, threshold: float | None = None,
                       title: str = "Backfill gate: risk and trigger rate per threshold",
                       random_weights: bool = False) -> Path:
    """PNG of trigger rate and risk against the threshold (and risk against coverage).

    ``random_weights`` (the index's encoder has random weights) writes
    :data:`embeddings.plotting.RANDOM_WEIGHTS_NOTE` on the figure. Returns the written path
    (atomic write).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embeddings.plotting import mark_random_weights

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.plot(curve["threshold"], curve["trigger_rate"], label="trigger rate (generation)")
    a.plot(curve["threshold"], curve["risk"], label="risk (irrelevant top-1 among answered)")
    if threshold is not None:
        a.axvline(threshold, color="k", ls="--", lw=1, label=f"chosen threshold {threshold:.3f}")
    a.set_xlabel("confidence threshold")
    a.set_ylim(-0.02, 1.02)
    a.legend(fontsize=7)
    b.plot(curve["coverage"], curve["risk"], marker=".")
    b.set_xlabel("coverage (answered without generation)")
    b.set_ylabel("risk")
    b.set_ylim(-0.02, 1.02)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    mark_random_weights(fig, random_weights)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


class preserve_calibration:
    """Context manager: keep ``calibration.json`` (and its PNG) across ``VideoIndex.save(index_dir)``.

    ``VideoIndex.save`` replaces the whole folder atomically, which drops files it did not
    write; the calibration belongs to the index, so ``recsys query`` saves the index inside
    this block and the files are written back (atomically) afterwards.
    """

    FILES = (CALIBRATION_FILE, "risk_coverage.png")

    def __init__(self, index_dir: str | os.PathLike):
        self.index_dir = Path(index_dir)
        self._saved: dict[str, bytes] = {}

    def __enter__(self):
        for name in self.FILES:
            path = self.index_dir / name
            if path.is_file():
                self._saved[name] = path.read_bytes()
        return self

    def __exit__(self, *exc):
        for name, data in self._saved.items():
            path = self.index_dir / name
            if path.parent.is_dir() and not path.is_file():
                with atomic_path(path) as tmp:
                    Path(tmp).write_bytes(data)
        return False
