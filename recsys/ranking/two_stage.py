"""Two-stage recommendation: candidates from several sources, fused, ranked, cut to ``k``.

Stage 1 (recall): :mod:`recsys.ranking.candidates` sources (collaborative top-N, content nearest
neighbours of the user's history through a FAISS index, popularity) each propose up to
``n_candidates`` unseen items. Their lists are fused (:mod:`recsys.ranking.fusion`): by default
``"collaborative"`` (the collaborative source's order kept, the other sources' items after it),
because untuned reciprocal rank fusion ranked a wrong-group item first for 36 of 50 users on a
checkerboard where EASE alone is always right, and scored NDCG@10 0.379 against EASE's 0.481 on
MovieLens 100K (issue 19). ``"rrf"`` (k = 60) and ``"weighted"`` are for settings chosen on
validation data (:func:`tune_two_stage`); without validation data RRF is the right tool only
when no source is known to be better than the others. Where validation data exist, the
two-stage path (``recsys train --two-stage --tune``, :func:`recsys.ranking.training.train_ranker`)
trains a learned stage (:class:`recsys.models.LTRRecommender`) instead and keeps it when it beats
its sources on that validation split (``benchmarks/bench_ltr.py``: better than EASE on all four
MovieLens 100K metrics with five sources, than last-item kNN on MicroLens-50K; not better than
``ease-content`` on TikTok); this module's fusion remains the tool without validation data.

Stage 2 (precision): each candidate gets

* ``fused``: its fused score divided by the user's best fused score (in (0, 1]);
* ``long_term_interest``: the mean cosine similarity between the candidate's embedding and
  the ``interest_top_m`` most similar items of the user's whole history. This is the
  search-based long-term interest feature of Kuaishou's TWIN (Chang et al., KDD 2023) and
  Alibaba's SIM (Pi et al., CIKM 2020): retrieve the relevant part of a long history per
  candidate instead of averaging all of it. 0 when there are no embeddings.

and is ranked by ``fused + interest_weight * long_term_interest`` (ties: lower item index).
Seen items are never candidates. Every result names the sources that proposed it with their
rank and score.

Cold start: a user with an empty row gets the popularity source alone, and every result says
``fallback = "popularity: user has no history"``.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from recsys.models.base import check_user_items, topk
from recsys.ranking.candidates import CollaborativeSource, ContentSource, PopularitySource
from recsys.ranking.fusion import FUSIONS

__all__ = ["TwoStageRecommender", "long_term_interest", "tune_two_stage", "COLD_START_FALLBACK"]

logger = logging.getLogger(__name__)

COLD_START_FALLBACK = "popularity: user has no history"


def long_term_interest(item_embeddings: np.ndarray, history: np.ndarray, candidates: np.ndarray,
                       top_m: int = 5) -> np.ndarray:
    """Similarity of each candidate to the most similar items of a user's history.

    Parameters
    ----------
    item_embeddings : np.ndarray, float32, shape (n_items, d)
        Unit rows.
    history : np.ndarray, int, shape (h,)
        Item indices the user interacted with (any length; order irrelevant).
    candidates : np.ndarray, int, shape (c,)
    top_m : int
        How many most similar history items are averaged (>= 1; fewer if ``h < top_m``).

    Returns
    -------
    np.ndarray, float32, shape (c,)
        Mean cosine of the ``min(top_m, h)`` most similar history items; 0 for an empty history.
    """
    if isinstance(top_m, bool) or not isinstance(top_m, (int, np.integer)) or top_m < 1:
        raise ValueError(f"top_m must be an int >= 1, got {top_m!r}")
    candidates = np.asarray(candidates, dtype=np.int64)
    history = np.asarray(history, dtype=np.int64)
    if history.size == 0 or candidates.size == 0:
        return np.zeros(candidates.size, dtype=np.float32)
    sims = item_embeddings[candidates] @ item_embeddings[history].T  # (c, h)
    m = min(int(top_m), history.size)
    top = np.partition(sims, history.size - m, axis=1)[:, history.size - m:]
    return top.mean(axis=1).astype(np.float32)


class TwoStageRecommender:
    """Candidate retrieval + fusion + ranking over a fitted collaborative model.

    Parameters
    ----------
    collaborative : recsys.models.Recommender
        Fitted on ``user_items``.
    user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
        Training matrix (popularity counts; the history of fitted users).
    item_embeddings : np.ndarray, float32, shape (n_items, d), optional
        Enables the content source and the long-term-interest feature.
    index : embeddings.index.video_index.VideoIndex, optional
        FAISS index of the items (``video_id = str(item_index)``); an exact one is built when
        embeddings are given without it.
    n_candidates : int
        Candidates per source (>= 1).
    fusion : {"collaborative", "rrf", "weighted"}
        Default ``"collaborative"``: never worse than the collaborative source alone.
    rrf_k : float
        RRF constant (Cormack et al. 2009: 60).
    weights : dict[str, float], optional
        Per-source fusion weights (``"collaborative"``, ``"content"``, ``"popularity"``).
    interest_weight : float
        Weight of the long-term-interest feature in the ranking score (>= 0).
    interest_top_m : int
        History items averaged by :func:`long_term_interest`.
    validated : bool
        True when these settings were chosen on validation data (:func:`tune_two_stage` sets
        it); ``"rrf"``/``"weighted"`` fusion or an interest weight without it logs a warning.
    """

    def __init__(self, collaborative, user_items, item_embeddings=None, *, index=None,
                 n_candidates: int = 100, fusion: str = "collaborative", rrf_k: float = 60.0,
                 weights: dict | None = None, interest_weight: float = 0.0,
                 interest_top_m: int = 5, validated: bool = False) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {sorted(FUSIONS)}, got {fusion!r}")
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)) \
                or n_candidates < 1:
            raise ValueError(f"n_candidates must be an int >= 1, got {n_candidates!r}")
        if not np.isfinite(interest_weight) or interest_weight < 0:
            raise ValueError(f"interest_weight must be a finite number >= 0, got {interest_weight!r}")
        self.user_items = check_user_items(user_items)
        self.collaborative = CollaborativeSource(collaborative)
        self.popularity = PopularitySource(self.user_items)
        self.content = None
        self.item_embeddings = None
        if item_embeddings is not None:
            self.content = ContentSource(item_embeddings, index=index)
            self.item_embeddings = self.content.item_embeddings
        self.n_candidates = int(n_candidates)
        self.fusion = fusion
        self.rrf_k = float(rrf_k)
        self.weights = weights
        self.interest_weight = float(interest_weight)
        self.interest_top_m = int(interest_top_m)
        self.n_items = self.user_items.shape[1]
        self.validated = bool(validated)
        if not self.validated and (fusion != "collaborative" or self.interest_weight > 0):
            logger.warning("two-stage fusion %r with interest weight %s was not chosen on "
                           "validation data and may rank worse than the collaborative source "
                           "alone; fix: tune_two_stage (recsys train --tune --two-stage) or "
                           "fusion='collaborative'", fusion, self.interest_weight)

    def config(self) -> dict:
        """The settings as a JSON-ready dict (recorded with the model)."""
        return {"n_candidates": self.n_candidates, "fusion": self.fusion, "rrf_k": self.rrf_k,
                "weights": self.weights, "interest_weight": self.interest_weight,
                "interest_top_m": self.interest_top_m, "validated": self.validated,
                "sources": ["collaborative"] + (["content"] if self.content else []) + ["popularity"]}

    def explain(self, user_index, user_items: sp.csr_matrix, k: int = 10) -> list[list[dict]]:
        """Ranked results with their provenance, one list per user.

        Parameters
        ----------
        user_index : array-like of int, shape (n,)
            Rows of the users in the fitted matrix (``>= n_users`` for users the
            collaborative model may fold in, e.g. EASE, ALS).
        user_items : scipy.sparse.csr_matrix, shape (n, n_items)
            These users' rows (history); their items are never recommended.
        k : int

        Returns
        -------
        list of list of dict
            Per user, up to ``k`` dicts ``{"item_index", "score", "fused", "long_term_interest",
            "sources": {name: {"rank", "score"}}, "fallback"}`` best first; ``fallback`` is None
            or :data:`COLD_START_FALLBACK`.

        Raises
        ------
        ValueError
            Bad ``k``, shapes, or ids (as :meth:`Recommender.recommend`).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        users = np.atleast_1d(np.asarray(user_index, dtype=np.int64))
        rows = check_user_items(user_items)
        if rows.shape != (users.size, self.n_items):
            raise ValueError(f"user_items has shape {rows.shape}, expected ({users.size}, "
                             f"{self.n_items}): one row per user; fix: pass user_items[user_index]")
        n = self.n_candidates
        empty = np.diff(rows.indptr) == 0
        sources = {}
        warm = np.flatnonzero(~empty)
        ids, sc = np.full((users.size, n), -1, np.int64), np.full((users.size, n), -np.inf, np.float32)
        if warm.size:
            ids[warm], sc[warm] = self.collaborative.retrieve(users[warm], rows[warm], n)
        sources["collaborative"] = (ids, sc)
        if self.content is not None:
            sources["content"] = self.content.retrieve(users, rows, n)
        sources["popularity"] = self.popularity.retrieve(users, rows, n)
        fused = FUSIONS[self.fusion](sources, weights=self.weights,
                                     **({"rrf_k": self.rrf_k} if self.fusion != "weighted" else {}))
        out = []
        for u, cands in enumerate(fused):
            if not cands:
                out.append([])
                continue
            items = np.array([c[0] for c in cands], dtype=np.int64)
            f = np.array([c[1] for c in cands], dtype=np.float64)
            f = f / f.max() if f.max() > 0 else f
            hist = rows.indices[rows.indptr[u]:rows.indptr[u + 1]]
            lti = (long_term_interest(self.item_embeddings, hist, items, self.interest_top_m)
                   if self.item_embeddings is not None else np.zeros(items.size, np.float32))
            score = f + self.interest_weight * lti.astype(np.float64)
            order = np.lexsort((items, -score))[:k]
            fallback = COLD_START_FALLBACK if empty[u] else None
            out.append([{"item_index": int(items[i]), "score": float(score[i]), "fused": float(f[i]),
                         "long_term_interest": float(lti[i]), "sources": cands[i][2],
                         "fallback": fallback} for i in order])
        return out

    def recommend(self, user_index, user_items: sp.csr_matrix, k: int = 10, *,
                  filter_already_liked_items: bool = True, filter_items=None):
        """Same results as :meth:`explain` as ``(ids, scores)`` arrays (n, k), -1 / -inf padded.

        The implicit-style signature lets :func:`recsys.evaluation.evaluator.evaluate` score the
        pipeline. Seen items are always removed.

        Raises
        ------
        ValueError
            ``filter_already_liked_items=False`` or ``filter_items`` given (not supported:
            candidates never include seen items).
        """
        if not filter_already_liked_items or filter_items is not None:
            raise ValueError("TwoStageRecommender always removes seen items and takes no "
                             "filter_items; fix: call it with the defaults")
        scalar = np.ndim(user_index) == 0
        res = self.explain(np.atleast_1d(user_index), user_items, k)
        ids = np.full((len(res), k), -1, np.int64)
        scores = np.full((len(res), k), -np.inf, np.float32)
        for u, lst in enumerate(res):
            ids[u, :len(lst)] = [r["item_index"] for r in lst]
            scores[u, :len(lst)] = [r["score"] for r in lst]
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def similar_items(self, item_index, k: int = 10):
        """Similar items: the collaborative model's, else cosine of the item embeddings.

        Returns and raises as :meth:`recsys.models.Recommender.similar_items`;
        NotImplementedError when neither is available.
        """
        try:
            return self.collaborative.model.similar_items(item_index, k)
        except NotImplementedError:
            if self.item_embeddings is None:
                raise
        from recsys.models.base import _as_index_array

        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        items, scalar = _as_index_array(item_index, "item_index", upper=self.n_items)
        s = self.item_embeddings[items] @ self.item_embeddings.T
        s[np.arange(items.size), items] = -np.inf
        ids, scores = topk(s.astype(np.float32), int(k))
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def save(self, folder) -> None:
        """Write to the folder ``folder`` (atomic; no pickle; the FAISS index is not pickled).

        Layout: ``two_stage.json`` (settings), ``collaborative`` (the model's own ``save``),
        ``user_items.npz``, and with embeddings ``item_embeddings.npy`` and ``index/``
        (:meth:`embeddings.index.VideoIndex.save`).
        """
        import json

        from embeddings._io import atomic_dir

        with atomic_dir(folder) as tmp:
            self.collaborative.model.save(tmp / "collaborative")
            sp.save_npz(tmp / "user_items.npz", self.user_items, compressed=True)
            if self.content is not None:
                np.save(tmp / "item_embeddings.npy", self.item_embeddings)
                self.content.index.save(tmp / "index")
            (tmp / "two_stage.json").write_text(json.dumps(
                {"class": type(self).__name__, "format_version": 1, **self.config()}, indent=2)
                + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder) -> TwoStageRecommender:
        """Load a folder written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            ``folder/two_stage.json`` is missing (not a saved two-stage recommender).
        """
        import json
        from pathlib import Path

        from recsys.models import Recommender

        folder = Path(folder)
        if not (folder / "two_stage.json").is_file():
            raise FileNotFoundError(f"{folder / 'two_stage.json'} is missing: {folder} was not "
                                    "written by TwoStageRecommender.save")
        cfg = json.loads((folder / "two_stage.json").read_text(encoding="utf-8"))
        model = Recommender.load(folder / "collaborative")
        ui = sp.load_npz(folder / "user_items.npz").tocsr()
        emb, index = None, None
        if (folder / "item_embeddings.npy").is_file():
            from embeddings.index import VideoIndex

            emb = np.load(folder / "item_embeddings.npy", allow_pickle=False)
            index = VideoIndex.load(folder / "index")
        keys = ("n_candidates", "fusion", "rrf_k", "weights", "interest_weight", "interest_top_m",
                "validated")
        return cls(model, ui, emb, index=index, **{k: cfg[k] for k in keys if k in cfg})


def tune_two_stage(train_df, dataset, collaborative: str, params: dict | None = None, *,
                   item_embeddings=None, grid: dict | None = None, metric: str = "ndcg@10",
                   k: int = 10, n_candidates: int = 100, seed: int = 42,
                   filter_by: str = "item") -> dict:
    """Choose fusion and ranking settings on a validation split carved from ``train_df``.

    The collaborative model (``collaborative``, ``params``) is fitted on the fit part of
    :func:`recsys.ranking.tuning.validation_split`; each grid point (default ``fusion`` in
    {"collaborative", "rrf", "weighted"} x ``weights`` in {equal, collaborative 1 / others 0.1} x
    ``interest_weight`` in {0, 0.2}; only 0 without embeddings) is scored on the validation
    part.

    Returns
    -------
    dict
        ``{"best": {...settings}, "metric", "best_score", "table": [...], "validation": {...}}``.
    """
    from recsys.evaluation.evaluator import evaluate
    from recsys.models import fit_model, make_model
    from recsys.ranking.tuning import expand_grid, validation_split

    if grid is None:
        grid = {"fusion": ["collaborative", "rrf", "weighted"],
                "weights": [None, {"collaborative": 1.0, "popularity": 0.1,
                                   **({"content": 0.1} if item_embeddings is not None else {})}],
                "interest_weight": [0.0, 0.2] if item_embeddings is not None else [0.0]}
    fit_df, valid_df = validation_split(train_df, ratio=0.75, filter_by=filter_by, seed=seed)
    fit_ui, valid_ui = dataset.to_user_items(fit_df), dataset.to_user_items(valid_df)
    model = fit_model(make_model(collaborative, **(params or {})), fit_ui,
                      item_embeddings=item_embeddings)
    table = []
    for point in expand_grid(grid):
        ts = TwoStageRecommender(model, fit_ui, item_embeddings, n_candidates=n_candidates,
                                 validated=True, **point)
        res = evaluate(ts, fit_ui, valid_ui, k=k, metrics=[metric])
        table.append({"settings": point, metric: res.summary[metric]})
    best = max(range(len(table)), key=lambda i: (table[i][metric], -i))
    # ties (the earliest grid point wins) prefer "collaborative": the simpler setting
    return {"best": {"n_candidates": n_candidates, **table[best]["settings"], "validated": True},
            "metric": metric,
            "best_score": table[best][metric], "table": table,
            "validation": {"protocol": "stratified", "ratio": 0.75, "filter_by": filter_by,
                           "seed": seed, "carved_from": "the training split only"}}
