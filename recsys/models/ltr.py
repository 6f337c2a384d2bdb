"""A learned second stage: a LightGBM ranker over candidates pooled from stage-1 recommenders.

Stage 1 (recall): every source (any fitted-or-unfitted :class:`recsys.models.Recommender`:
EASE, ItemKNN, ALS, popularity, content, and later sequential models) proposes its top
``budgets[name]`` unseen items per user; the union is the candidate pool. Recall@N of each
source and of the union is measured on the validation split and kept in ``report_``.

Stage 2 (precision): one row of features per (user, candidate):

* per source ``s``: ``s__score`` (the source's score of the candidate, from ``Recommender.score``,
  divided by the absolute value of the user's best score from ``s``, so that sources fitted on
  less data during training and on all of it at serving give comparable values)
  and ``s__rank`` (1-based rank in the source's proposals; NaN when ``s`` did not propose it,
  which LightGBM treats as missing);
* ``n_sources``: how many sources proposed it;
* ``item_popularity``: share of training users who interacted with the item;
* ``user_history``: the user's number of training interactions;
* ``content_mean``, ``content_max`` (only when ``item_embeddings`` are given): mean and max
  cosine similarity of the candidate to the user's history items;
* with ``interaction_times``: item age, recent popularity over several windows, the user's
  recency and popularity around the user's time (timestamps only), and short-term
  similarity of the candidate to the user's last ``n_last`` items (co-occurrence cosine,
  transition probability, content cosine); see :mod:`recsys.models.ltr_features`. They are
  computed from the fit part of the ranker's validation split while training and from the
  whole training matrix when serving: never from a label.

The ranker is LightGBM's gradient-boosted trees with the XE-NDCG listwise loss
(``objective="rank_xendcg"``, Bruch, Wang, Bendersky and Najork, "An Alternative Cross Entropy
Loss for Learning-to-Rank", WWW 2020; ``lgb_params={"objective": "lambdarank"}`` gives
LambdaMART, Burges 2010). XE-NDCG is the default because it trained longer before early
stopping and ranked better on a nested validation split of MovieLens 100K (the stage's NDCG@10
0.2728 -> 0.2771 over the same five sources, 0.2835 -> 0.2864 with a tuned ALS added;
``benchmarks/bench_ltr.py --help``). It is trained on a validation split carved from the
*training* matrix only: the sources are refitted on the fit part, their candidates for the
held-out part are labelled with the held-out relevance (graded: the rating on rating logs,
passed as ``relevance``), and early stopping watches NDCG@10 on a seeded 20% of the
validation users. The sources are then fitted on the whole training matrix for serving.
Alternatively (``fit(validation=(user_items, later))``) the labels come from a predefined
validation period after the training data, the sources are fitted once, and the period's own
popular items join as the built-in ``label-popularity`` source (see ``label_popularity``).

Saved as one folder (:meth:`LTRRecommender.save`): ``meta.json``, ``state.npz``,
``booster.txt`` (LightGBM's own text format, ``Booster.save_model``) and one saved model per
source under ``sources/``; nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from embeddings._io import atomic_dir

from .base import FORMAT_VERSION, Recommender, check_user_items, topk
from .ltr_features import build_context, context_feature_names, context_features, resolve_time_kind

__all__ = ["LTRRecommender", "DEFAULT_SOURCES", "MAIN_OBJECTIVE", "carve_holdout"]

logger = logging.getLogger(__name__)

#: Stage-1 sources used when none are given (registry names; default hyperparameters).
DEFAULT_SOURCES = ("ease", "itemknn", "popularity")
# Small trees, large leaves and L2: item popularity and user history length nearly identify
# items and users, and deeper trees memorise them (training NDCG rises, validation falls).
_LGB_DEFAULTS = {"objective": "rank_xendcg", "metric": "ndcg", "eval_at": [10],
                 "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 200,
                 "lambda_l2": 10.0, "feature_fraction": 0.9, "min_sum_hessian_in_leaf": 0.0,
                 "verbosity": -1, "deterministic": True, "force_row_wise": True}


def carve_holdout(user_items: sp.csr_matrix, ratio: float = 0.25, seed: int = 42
                  ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split a training matrix into (fit part, held-out part), per user, seeded.

    Each stored entry is held out with probability ``ratio`` (one uniform draw per entry in
    CSR order: rows by user, columns sorted, so the split does not depend on the order of the
    original log); users with fewer than 2 interactions keep all of theirs.

    Parameters
    ----------
    user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
    ratio : float
        Held-out share in (0, 1).
    seed : int

    Returns
    -------
    (fit, held_out) : tuple of scipy.sparse.csr_matrix, both (n_users, n_items)
        Disjoint; ``fit + held_out == user_items``.

    Raises
    ------
    ValueError
        ``ratio`` outside (0, 1).
    """
    if not (isinstance(ratio, (int, float)) and 0.0 < float(ratio) < 1.0):
        raise ValueError(f"ratio must be a number in (0, 1), got {ratio!r}; fix: e.g. 0.25")
    ui = check_user_items(user_items).copy()
    ui.sort_indices()
    counts = np.diff(ui.indptr)
    rng = np.random.default_rng(seed)
    hold = rng.random(ui.nnz) < float(ratio)
    hold &= np.repeat(counts >= 2, counts)
    held = ui.copy()
    held.data = np.where(hold, held.data, 0).astype(held.data.dtype)
    fit = ui.copy()
    fit.data = np.where(hold, 0, fit.data).astype(fit.data.dtype)
    held.eliminate_zeros()
    fit.eliminate_zeros()
    return fit.tocsr(), held.tocsr()


#: Name of the built-in source of ``label_popularity`` (features ``label-popularity__score/rank``).
LABEL_POPULARITY = "label-popularity"
#: Name of the head trained on the interactions themselves (always present).
MAIN_OBJECTIVE = "interaction"


def _labels(m: sp.csr_matrix) -> sp.csr_matrix:
    """Signal values as LightGBM ranking labels: rounded, clipped to [0, 30], zeros dropped."""
    m = sp.csr_matrix(m, dtype=np.float64, copy=True)
    m.data = np.clip(np.rint(m.data), 0, 30)
    m.eliminate_zeros()
    return m


def _standardise_per_user(pred: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``pred`` (float64, one value per pair) minus its user's mean, divided by its user's
    standard deviation (1 where a user's values are all equal); ``r`` = row of each pair."""
    n = int(r.max()) + 1 if r.size else 0
    cnt = np.maximum(np.bincount(r, minlength=n), 1)
    mean = np.bincount(r, weights=pred, minlength=n) / cnt
    var = np.bincount(r, weights=(pred - mean[r]) ** 2, minlength=n) / cnt
    std = np.sqrt(var)
    std[std <= 1e-12] = 1.0
    return (pred - mean[r]) / std[r]


class _LabelPopularity:
    """Popularity of items among the ranker's held-out (label) interactions.

    ``score(rows, users)`` gives every user ``counts + tiebreak``, where ``counts[j]`` is the
    number of label rows holding item ``j`` and ``tiebreak`` (< 0.5) orders equal counts by
    training popularity. With ``own`` (the label matrix itself, while training the ranker) a
    user's own label items are subtracted (leave-own-user-out), so the feature never holds
    that user's label: the target-encoding leak of Micci-Barreca (2001) is avoided.
    """

    def __init__(self, counts: np.ndarray, tiebreak: np.ndarray, own: sp.csr_matrix | None = None):
        self.counts = np.asarray(counts, dtype=np.float32)
        self.tiebreak = np.asarray(tiebreak, dtype=np.float32)
        self.own = own

    @staticmethod
    def from_labels(held: sp.csr_matrix, train: sp.csr_matrix, own: bool) -> _LabelPopularity:
        m = held.shape[1]
        counts = np.bincount(held.indices[held.data != 0], minlength=m).astype(np.float32)
        pop = np.bincount(train.indices, minlength=m).astype(np.float32)
        tiebreak = 0.5 * pop / (pop.max() + 1.0) if m else pop
        return _LabelPopularity(counts, tiebreak, held if own else None)

    def score(self, rows: sp.csr_matrix, users) -> np.ndarray:
        s = np.tile(self.counts + self.tiebreak, (rows.shape[0], 1))
        if self.own is not None and users is not None:
            h = self.own[np.asarray(users, dtype=np.int64)]
            r, c = h.nonzero()
            s[r, c] -= 1.0
        return s


def _ndcg10(pred: np.ndarray, label: np.ndarray) -> float:
    """Binary NDCG@10 of one group ordered by ``pred`` (ties: original order)."""
    rel = (np.asarray(label)[np.argsort(-np.asarray(pred), kind="stable")][:10] > 0)
    disc = 1.0 / np.log2(np.arange(2, 12))
    ideal = disc[:min(10, int((np.asarray(label) > 0).sum()))].sum()
    return float((rel * disc[:rel.size]).sum() / ideal) if ideal > 0 else 0.0


def _clone(model: Recommender) -> Recommender:
    return type(model)(**model.get_params())


def _is_fitted_on(model: Recommender, user_items: sp.csr_matrix) -> bool:
    return getattr(model, "n_items_", None) == user_items.shape[1] and \
        getattr(model, "n_users_", None) == user_items.shape[0]


class LTRRecommender(Recommender):
    """A LightGBM ranker (XE-NDCG loss) over candidates pooled from several stage-1 recommenders.

    Parameters
    ----------
    sources : dict[str, Recommender] or list of str, optional
        Stage-1 recommenders by name (unfitted, or fitted on the very matrix given to ``fit``,
        then reused for serving), or registry names (default :data:`DEFAULT_SOURCES`).
    budgets : dict[str, int], optional
        Candidates per source (default ``n_candidates`` for every source).
    n_candidates : int
        Default recall budget per source (>= 1).
    holdout : float
        Share of each user's training interactions held out to train the ranker, in (0, 1).
    n_folds : int
        Number of seeded holdouts (seeds ``seed``, ``seed + 1``, ...) whose candidates are
        pooled into the ranker's training data (more query groups; each costs one fit of
        every source).
    num_boost_round : int
        Maximum boosting rounds (early stopping usually ends sooner).
    early_stopping_rounds : int
        Stop when validation NDCG@10 has not improved for this many rounds.
    lgb_params : dict, optional
        Overrides of LightGBM parameters (defaults: ``objective="rank_xendcg"`` (module
        docstring; ``"lambdarank"`` for LambdaMART),
        learning rate 0.05, 15 leaves, ``min_data_in_leaf`` min(200, rows / 100) and >= 5,
        ``lambda_l2`` 10, NDCG@10 for
        early stopping, monotone constraints: non-decreasing in every ``__score`` feature,
        non-increasing in every ``__rank`` feature).
    num_threads : int
        LightGBM threads.
    time_features : {"auto", "global", "order", "none"}
        Kind of the ``interaction_times`` given to ``fit`` (:func:`recsys.models.ltr_features.
        resolve_time_kind`): "global" unix times (all time and short-term features), "order"
        per-user positions (short-term features only), "auto" guesses (positions when every
        value is below 1e6), "none" ignores the times for features (sources still get them).
    time_windows : sequence of float
        Recent-popularity windows as shares of the log's time span, each in (0, 1].
    n_last : int
        How many of the user's last items the short-term features look at.
    label_popularity : {"auto", True, False}
        Add the built-in source ``label-popularity``: items ranked by how often they occur in
        the ranker's labels (the held-out part of ``validation``), leave-own-user-out while
        training, all labels when serving. "auto" turns it on when the labels lie outside
        the training matrix and every split's fit part is the whole matrix, i.e. a predefined
        validation period after the training data (a validation file): there the labels'
        period has its own popular items, which the sources fitted on older data cannot know
        (TikTok's val.tsv: 1,272 distinct items, median training popularity 17 vs 3 over
        all items, ``benchmarks/bench_ltr.py --dataset tiktok``). Off for splits carved from
        the training data, whose labels follow the training popularity.
    objective_weights : dict[str, float], optional
        Weights of the heads when ``fit`` was given ``objectives`` (several feedback signals,
        e.g. KuaiRand's ``is_like``, ``long_view``): ``{"interaction": w, name: w, ...}``,
        each >= 0, not all 0; default 1 for every head. One ranker (head) is trained per
        objective on the same candidates and features, with that signal's value on the
        held-out interactions as the label (0 for candidates without it); the served score
        is ``sum_k w_k * z_k`` where ``z_k`` is head ``k``'s prediction standardised within
        the user's candidate pool (mean 0, standard deviation 1), so that heads whose raw
        scores have different scales weigh as their weights say (the weighted-sum fusion of
        multi-task rankers, e.g. Zhao et al., "Recommending What Video to Watch Next",
        RecSys 2019). Without ``objectives`` there is one head and only ``"interaction"``
        may be named.
    seed : int
        Seed of the holdout, the early-stopping users and LightGBM.

    Attributes
    ----------
    sources_ : dict[str, Recommender]
        The serving sources, fitted on the whole training matrix (the built-in
        ``label-popularity`` source, when on, is not among them: ``label_counts_``).
    label_counts_ : np.ndarray, float32, shape (n_items,), or None
        Label occurrences per item of ``label-popularity`` (None when off).
    booster_ : lightgbm.Booster
        The ``"interaction"`` head.
    heads_ : dict[str, lightgbm.Booster]
        The other objectives' heads (empty without ``objectives``).
    fallback_ : str or None
        The source served alone when the guard (Notes) found the ranker not better.
    feature_names_ : list of str
    item_popularity_ : np.ndarray, float32, shape (n_items,)
    context_ : dict or None
        Time and sequence summaries of the training matrix
        (:func:`recsys.models.ltr_features.build_context`); None without times.
    report_ : dict
        Validation recall@budget per source and of the union, pool size, best iteration,
        validation NDCG@10, feature importance (gain), numbers of users and rows.

    Notes
    -----
    Guard: after training, the ranker and each source's own order are scored (binary NDCG@10
    within the pool) on the early-stopping users; when a source alone is at least as good,
    ``fallback_`` names it and ``recommend`` serves that source alone (``report_["guard_ndcg@10"]``
    holds the numbers), so the learned stage is never worse than its best source on validation.
    With several objectives there is no fallback (a source serves one signal, the blend several);
    the guard's numbers are still reported for the ``"interaction"`` head.

    Ties of the ranker's (piecewise-constant) scores are broken by the best source's rank
    (``report_["tiebreak"]``): a score of ``pred - 1e-4 * rank / (budget + 1)``.

    Seen items are never candidates, so ``filter_already_liked_items=False`` still excludes
    them. Scores outside the pool are ``-inf`` (items no source proposed are never ranked).
    """

    side_inputs = ()
    saves_folder = True

    def __init__(self, sources: Any = None, budgets: dict | None = None, n_candidates: int = 100,
                 holdout: float = 0.25, n_folds: int = 1, num_boost_round: int = 500,
                 early_stopping_rounds: int = 30, lgb_params: dict | None = None,
                 num_threads: int = 1, time_features: str = "auto",
                 time_windows: Any = (0.01, 0.05, 0.2), n_last: int = 3,
                 label_popularity: Any = "auto", objective_weights: dict | None = None,
                 seed: int = 42) -> None:
        self.sources = sources
        self.budgets = budgets
        self.n_candidates = n_candidates
        self.holdout = holdout
        self.n_folds = n_folds
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.lgb_params = lgb_params
        self.num_threads = num_threads
        self.time_features = time_features
        self.time_windows = time_windows
        self.n_last = n_last
        self.label_popularity = label_popularity
        self.objective_weights = objective_weights
        self.seed = seed

    # ------------------------------------------------------------------ validation
    def _source_dict(self) -> dict[str, Recommender]:
        from recsys.models import make_model

        src = list(DEFAULT_SOURCES) if self.sources is None else self.sources
        if isinstance(src, dict):
            out = dict(src)
        elif isinstance(src, (list, tuple)):
            out = {}
            for s in src:
                if not isinstance(s, str):
                    raise ValueError(f"sources given as a list must hold registry names, got {s!r}; "
                                     "fix: pass a dict {name: Recommender} for model instances")
                out[s] = make_model(s)
        else:
            raise ValueError(f"sources must be a dict {{name: Recommender}} or a list of model "
                             f"names, got {type(src).__name__}")
        if not out:
            raise ValueError("sources is empty; pass at least one stage-1 recommender")
        for name, m in out.items():
            if not isinstance(m, Recommender) or isinstance(m, LTRRecommender):
                raise ValueError(f"sources[{name!r}] must be a Recommender (not an LTRRecommender), "
                                 f"got {type(m).__name__}")
            if name == LABEL_POPULARITY:
                raise ValueError(f"source name {name!r} is reserved for the built-in source "
                                 "(label_popularity=True); fix: rename the source")
            if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"source name {name!r} must be letters, digits, '_' or '-' (it "
                                 "names LightGBM features); fix: rename the source")
        return out

    def _validate_params(self) -> None:
        for name in ("n_candidates", "n_folds", "num_boost_round", "early_stopping_rounds", "num_threads",
                     "n_last"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not (isinstance(self.holdout, (int, float)) and 0 < self.holdout < 1):
            raise ValueError(f"holdout must be a number in (0, 1), got {self.holdout!r}; fix: 0.25")
        if not (self.label_popularity in (True, False) or self.label_popularity == "auto"):
            raise ValueError(f"label_popularity must be 'auto', True or False, got "
                             f"{self.label_popularity!r}")
        resolve_time_kind(self.time_features, None)
        w = np.asarray(self.time_windows, dtype=np.float64).ravel()
        if w.size == 0 or not np.all((w > 0) & (w <= 1)):
            raise ValueError(f"time_windows must be shares of the log's span in (0, 1], got "
                             f"{self.time_windows!r}; fix: e.g. (0.01, 0.05, 0.2)")
        names = self._source_dict()
        for name, b in (self.budgets or {}).items():
            if name not in names:
                raise ValueError(f"budgets names unknown source {name!r}; sources: {sorted(names)}")
            if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
                raise ValueError(f"budgets[{name!r}] must be an int >= 1, got {b!r}")

    def _check_objectives(self, objectives: Any, shape: tuple) -> dict[str, sp.csr_matrix]:
        """Validated ``{name: CSR}`` of the further objectives (empty for None)."""
        if objectives is None:
            return {}
        if not isinstance(objectives, dict):
            raise ValueError(f"objectives must be a dict {{name: CSR matrix}}, got "
                             f"{type(objectives).__name__}")
        out = {}
        for name, m in objectives.items():
            if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"objective name {name!r} must be letters, digits, '_' or '-'; "
                                 "fix: rename it")
            if name == MAIN_OBJECTIVE:
                raise ValueError(f"objective name {name!r} is reserved for the head trained on "
                                 "the interactions themselves; fix: rename the signal")
            mat = check_user_items(m, f"objectives[{name!r}]")
            if mat.shape != shape:
                raise ValueError(f"objectives[{name!r}] has shape {mat.shape}, expected {shape} "
                                 "(like user_items)")
            out[name] = mat
        return out

    def _objective_weights(self, names: list[str]) -> dict[str, float]:
        """``objective_weights`` resolved for the heads ``"interaction"`` + ``names``."""
        heads = [MAIN_OBJECTIVE] + names
        given = self.objective_weights or {}
        if not isinstance(given, dict):
            raise ValueError(f"objective_weights must be a dict {{objective: weight}}, got "
                             f"{type(given).__name__}")
        unknown = sorted(set(given) - set(heads))
        if unknown:
            raise ValueError(f"objective_weights names unknown objective(s) {unknown}; the heads "
                             f"are {heads} (pass the signals as fit(objectives=...))")
        out = {}
        for h in heads:
            w = given.get(h, 1.0)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w) or w < 0:
                raise ValueError(f"objective_weights[{h!r}] must be a number >= 0, got {w!r}")
            out[h] = float(w)
        if not any(out.values()):
            raise ValueError("objective_weights are all 0; fix: give at least one head a weight > 0")
        return out

    def _budget(self, name: str) -> int:
        return int((self.budgets or {}).get(name, self.n_candidates))

    # ------------------------------------------------------------------ features
    def _pool(self, sources: dict, rows: sp.csr_matrix, users: np.ndarray | None,
              pop: np.ndarray, emb: np.ndarray | None, ctx: dict | None = None):
        """Candidates and features of a batch of users.

        Returns (r, c, X, proposed) with r, c int arrays (row in batch, item), X float32
        (n_pairs, n_features), proposed bool (n_pairs, n_sources), pairs ordered by row.
        """
        n, m = rows.shape
        seen = rows.copy()
        seen.data = np.ones_like(seen.data)
        seen_r = np.repeat(np.arange(n), np.diff(rows.indptr))
        dense_scores, ranks = [], []
        pool = np.zeros((n, m), dtype=bool)
        for name, model in sources.items():
            s = np.array(model.score(rows, users), dtype=np.float32, copy=True)
            s[seen_r, rows.indices] = -np.inf
            ids, sc = topk(s, min(self._budget(name), m))
            rk = np.full((n, m), np.nan, dtype=np.float32)
            ok = ids >= 0
            rr = np.repeat(np.arange(n), ok.sum(axis=1))
            rk[rr, ids[ok]] = (np.nonzero(ok)[1] + 1).astype(np.float32)
            pool[rr, ids[ok]] = True
            # relative to the user's best score of this source: comparable between the sources
            # fitted on the holdout's fit part (training) and on all training data (serving)
            top = np.abs(sc[:, 0]).astype(np.float64) if sc.shape[1] else np.zeros(n)
            top = np.where(np.isfinite(top) & (top > 0), top, 1.0)
            s = (s / top[:, None]).astype(np.float32)
            dense_scores.append(s)
            ranks.append(rk)
        r, c = np.nonzero(pool)
        hist = np.diff(rows.indptr).astype(np.float32)
        cols = []
        proposed = np.zeros((r.size, len(sources)), dtype=bool)
        for j, (s, rk) in enumerate(zip(dense_scores, ranks, strict=True)):
            cols += [s[r, c], rk[r, c]]
            proposed[:, j] = ~np.isnan(rk[r, c])
        cols += [proposed.sum(axis=1).astype(np.float32), pop[c], hist[r]]
        if emb is not None:
            mean = np.zeros(r.size, np.float32)
            mx = np.zeros(r.size, np.float32)
            starts = np.searchsorted(r, np.arange(n + 1))
            for u in range(n):
                a, b = starts[u], starts[u + 1]
                h = rows.indices[rows.indptr[u]:rows.indptr[u + 1]]
                if a == b or h.size == 0:
                    continue
                sims = emb[c[a:b]] @ emb[h].T
                mean[a:b] = sims.mean(axis=1)
                mx[a:b] = sims.max(axis=1)
            cols += [mean, mx]
        if r.size:
            cols += context_features(ctx, r, c, users, emb)
        X = np.column_stack(cols).astype(np.float32) if r.size else \
            np.zeros((0, len(self._feature_names(list(sources), emb is not None, ctx))), np.float32)
        return r, c, X, proposed

    @staticmethod
    def _feature_names(names: list[str], content: bool, ctx: dict | None = None) -> list[str]:
        out = []
        for s in names:
            out += [f"{s}__score", f"{s}__rank"]
        out += ["n_sources", "item_popularity", "user_history"]
        out += ["content_mean", "content_max"] if content else []
        if ctx is None:
            return out
        return out + context_feature_names(ctx["kind"], ctx["windows"], content)

    # ------------------------------------------------------------------ fitting
    def fit(self, user_items: sp.csr_matrix, *, relevance: sp.csr_matrix | None = None,
            item_embeddings: np.ndarray | None = None, interaction_times: Any = None,
            item_features: Any = None, validation: tuple | None = None,
            objectives: dict | None = None) -> LTRRecommender:
        """Train the ranker on a validation split carved from ``user_items``, then fit sources.

        Parameters
        ----------
        user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
            Training interactions (never the test split).
        relevance : scipy.sparse.csr_matrix, shape (n_users, n_items), optional
            Graded relevance of the training interactions (e.g. the 1-5 rating), rounded to
            integers in [0, 30] as LightGBM's labels; default ``user_items`` (binary logs: 1).
        item_embeddings : np.ndarray, float32, shape (n_items, d), optional
            Unit rows; adds the content features and is passed to sources that need it.
        interaction_times : scipy.sparse.csr_matrix, optional
            Time (unix seconds) or position of every interaction: passed to sources that need
            it (TrendingPopularity, SASRec, ...) masked like each fit part, and the source of
            the time and short-term features (``time_features``).
        item_features : list of np.ndarray, optional
            Item side-information matrices (one per modality, rows = items) passed to the
            sources that take them (:class:`recsys.models.ContentEASE`); not features
            themselves (use ``item_embeddings`` for the content-similarity features).
        validation : (fit_part, held_out) pair of CSR matrices, or a list of pairs, optional
            Use these splits instead of :func:`carve_holdout` (e.g. the evaluation protocol's
            own splitter applied to the training data); ``n_folds`` is then ignored. The
            held-out part may lie outside ``user_items`` (a predefined validation period, fit
            part = ``user_items`` itself): its interactions are the labels (binary unless
            ``relevance`` covers them), the sources are fitted once on ``user_items`` (or
            reused when already fitted on it) and ``label_popularity="auto"`` turns on.
        objectives : dict[str, scipy.sparse.csr_matrix], optional
            Further feedback signals, one matrix per name, shaped like ``user_items``, holding
            the signal's value (>= 0; e.g. 1 where liked, or a watch-ratio grade) on the
            interactions that have it, including those of a ``validation`` held-out part.
            Values are rounded to integers in [0, 30] as labels (bin continuous signals such
            as watch ratio first). One head is trained per name besides ``"interaction"``;
            ``objective_weights`` blends them.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Bad matrices, shapes, parameters, or no held-out item found by any source; an
            objective name that is reserved or not letters/digits/'_'/'-', a matrix of another
            shape or with negative or non-finite values, ``objective_weights`` naming an
            unknown objective or with negative, non-finite or only zero weights.
        """
        import lightgbm as lgb

        from recsys.models import fit_model
        from recsys.models.content import check_item_embeddings

        ui = check_user_items(user_items)
        if ui.shape[0] == 0 or ui.shape[1] == 0 or ui.nnz == 0:
            raise ValueError(f"user_items has shape {ui.shape} and {ui.nnz} interactions; need "
                             "at least one interaction to train a ranker")
        self._validate_params()
        n_users, n_items = ui.shape
        emb = None
        if item_embeddings is not None:
            emb = check_item_embeddings(item_embeddings, n_items)
        rel = ui if relevance is None else check_user_items(relevance, "relevance")
        if rel.shape != ui.shape:
            raise ValueError(f"relevance has shape {rel.shape}, expected {ui.shape} (like user_items)")
        signals = self._check_objectives(objectives, ui.shape)
        weights = self._objective_weights(list(signals))
        if validation is None:
            splits = [carve_holdout(ui, self.holdout, self.seed + f) for f in range(int(self.n_folds))]
        else:
            pairs = [validation] if isinstance(validation, tuple) else list(validation)
            splits = []
            for pair in pairs:
                fit_ui, held = (check_user_items(v, "validation") for v in pair)
                if fit_ui.shape != ui.shape or held.shape != ui.shape:
                    raise ValueError(f"validation matrices have shapes {fit_ui.shape}, "
                                     f"{held.shape}; expected {ui.shape} each")
                splits.append((fit_ui, held))
        given = self._source_dict()
        outside = all(fit_ui.shape == ui.shape and (fit_ui != ui).nnz == 0
                      and held.multiply(ui).nnz == 0 for fit_ui, held in splits)
        use_lp = outside if self.label_popularity == "auto" else bool(self.label_popularity)
        names = list(given) + ([LABEL_POPULARITY] if use_lp else [])
        times = None if interaction_times is None else sp.csr_matrix(interaction_times)
        if times is not None and times.shape != ui.shape:
            raise ValueError(f"interaction_times has shape {times.shape}, expected {ui.shape}")
        kind = resolve_time_kind(self.time_features, times)
        ctx_args = {"windows": tuple(float(w) for w in np.ravel(self.time_windows)),
                    "n_last": int(self.n_last)}
        Xs, ys, groups, group_user, hits = [], [], [], [], np.zeros(len(names) + 1)
        ys_sig: dict[str, list] = {k: [] for k in signals}
        n_held = 0
        fitted_whole: dict[str, Recommender] = {}
        step = max(1, (1 << 22) // n_items)
        for fit_ui, held in splits:
            side = {"item_embeddings": emb, "item_features": item_features}
            if interaction_times is not None:
                t = sp.csr_matrix(interaction_times)
                side["interaction_times"] = t.multiply(fit_ui != 0).tocsr()
            # a split whose fit part is the whole training matrix (a predefined validation
            # file, e.g.) reuses sources already fitted on it instead of refitting clones
            whole = fit_ui.shape == ui.shape and (fit_ui != ui).nnz == 0
            val_sources = {}
            for n, m in given.items():
                if whole and n not in fitted_whole:  # fitted once, kept for serving
                    fitted_whole[n] = m if _is_fitted_on(m, ui) else fit_model(_clone(m), ui, **side)
                val_sources[n] = fitted_whole[n] if whole else fit_model(_clone(m), fit_ui, **side)
            if use_lp:
                val_sources[LABEL_POPULARITY] = _LabelPopularity.from_labels(held, fit_ui, own=True)
            # features see the fit part only: the held-out interactions are the labels
            ctx = build_context(fit_ui, side.get("interaction_times"), kind, **ctx_args)
            feature_names = self._feature_names(names, emb is not None, ctx)
            pop_fit = (np.bincount(fit_ui.indices, minlength=n_items)
                       / max(n_users, 1)).astype(np.float32)
            users = np.flatnonzero(np.diff(held.indptr) > 0)
            n_held += int(held.nnz)
            # graded label of each held-out item: its relevance (rounded), at least 1
            # (a held-out part outside ``user_items``, e.g. a validation file, is binary unless
            # ``relevance`` covers it)
            relv = (held != 0).astype(np.float64).maximum(rel.multiply(held != 0)).tocsr()
            relv.data = np.clip(np.rint(relv.data), 1, 30)
            sig_held = {k: _labels(v.multiply(held != 0).tocsr()) for k, v in signals.items()}
            for a in range(0, users.size, step):
                ub = users[a:a + step]
                r, c, X, proposed = self._pool(val_sources, fit_ui[ub], ub, pop_fit, emb, ctx)
                lab = np.asarray(relv[ub[r], c]).ravel()
                sig = {k: np.asarray(v[ub[r], c]).ravel() for k, v in sig_held.items()}
                hits[:-1] += proposed[lab > 0].sum(axis=0)
                hits[-1] += (lab > 0).sum()
                starts = np.searchsorted(r, np.arange(ub.size + 1))
                for u in range(ub.size):
                    s0, s1 = starts[u], starts[u + 1]
                    if s1 > s0 and lab[s0:s1].max() > 0:
                        Xs.append(X[s0:s1])
                        ys.append(lab[s0:s1])
                        for k in signals:
                            ys_sig[k].append(sig[k][s0:s1])
                        groups.append(s1 - s0)
                        group_user.append(ub[u])
        if n_held == 0:
            raise ValueError("the validation split holds no interaction (every user has < 2); "
                             "fix: more data per user or pass validation=")
        if not groups:
            raise ValueError("no held-out item is among any source's candidates; raise the "
                             "budgets (n_candidates) or check the sources")
        rng = np.random.default_rng(self.seed)
        is_eval = (rng.random(n_users) < 0.2)[np.asarray(group_user)]  # split by user, not fold
        if len(groups) < 5 or is_eval.all():  # too few users to hold some out: no early stopping
            is_eval[:] = False
        # a source's score may only raise, its rank only lower, the prediction (all else equal)
        mono = [1 if f.endswith("__score") else -1 if f.endswith("__rank") else 0
                for f in feature_names]
        params = {**_LGB_DEFAULTS, "monotone_constraints": mono, **(self.lgb_params or {}),
                  "num_threads": int(self.num_threads), "seed": int(self.seed)}

        def dataset(mask, labels=ys):
            idx = np.flatnonzero(mask)
            return lgb.Dataset(np.vstack([Xs[i] for i in idx]),
                               label=np.concatenate([labels[i] for i in idx]),
                               group=[groups[i] for i in idx], feature_name=feature_names,
                               free_raw_data=True)

        n_rows = int(sum(groups[i] for i in np.flatnonzero(~is_eval)))
        if "min_data_in_leaf" not in (self.lgb_params or {}):  # small logs: smaller leaves
            params["min_data_in_leaf"] = int(min(params["min_data_in_leaf"], max(5, n_rows // 100)))
        train_set = dataset(~is_eval)
        callbacks = []
        valid_sets = []
        if is_eval.any():
            valid_sets = [dataset(is_eval)]
            callbacks = [lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)]
        booster = lgb.train(params, train_set, num_boost_round=int(self.num_boost_round),
                            valid_sets=valid_sets, callbacks=callbacks)
        best_it = int(booster.best_iteration or booster.current_iteration())
        best_score = (float(next(iter(booster.best_score["valid_0"].values())))
                      if valid_sets and booster.best_score.get("valid_0") else None)
        gain = booster.feature_importance("gain", iteration=best_it)
        heads, head_report = {}, {}
        for k in signals:  # one head per further objective: same rows, that signal as labels
            cb = [lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)] if callbacks else []
            vs = [dataset(is_eval, ys_sig[k])] if valid_sets else []
            hb = lgb.train(params, dataset(~is_eval, ys_sig[k]), num_boost_round=int(self.num_boost_round),
                           valid_sets=vs, callbacks=cb)
            h_it = int(hb.best_iteration or hb.current_iteration())
            heads[k] = (hb, h_it)
            pos = float(np.mean(np.concatenate(ys_sig[k]) > 0)) if ys_sig[k] else 0.0
            head_report[k] = {
                "best_iteration": h_it, "positive_share_of_candidates": pos,
                "validation_ndcg@10": (float(next(iter(hb.best_score["valid_0"].values())))
                                       if vs and hb.best_score.get("valid_0") else None),
                "feature_importance_gain": {f: float(g) for f, g in zip(
                    feature_names, hb.feature_importance("gain", iteration=h_it), strict=True)}}
        # guard: on the early-stopping users, compare the ranker with each source's own order
        # (binary NDCG@10 within the pool); serve the best source alone if it is not beaten
        guard = {}
        if is_eval.any():
            idx = np.flatnonzero(is_eval)
            preds = {"ltr": [booster.predict(Xs[i], num_iteration=best_it) for i in idx]}
            for j, n in enumerate(names):  # rank column 2j + 1; unproposed (NaN) last
                preds[n] = [-np.nan_to_num(Xs[i][:, 2 * j + 1], nan=np.inf) for i in idx]
            guard = {n: float(np.mean([_ndcg10(p, ys[i]) for p, i in zip(v, idx, strict=True)]))
                     for n, v in preds.items()}
        best_src = max(names, key=lambda n: guard.get(n, -1.0)) if guard else None
        fallback = best_src if guard and guard[best_src] >= guard["ltr"] and not signals else None

        # serving sources: the given ones when already fitted on this matrix, else fitted clones
        side_full = {"item_embeddings": emb, "interaction_times": interaction_times,
                     "item_features": item_features}
        self.sources_ = {n: (fitted_whole[n] if n in fitted_whole else m if _is_fitted_on(m, ui)
                             else fit_model(_clone(m), ui, **side_full)) for n, m in given.items()}
        if use_lp:
            held_all = sp.csr_matrix(sum((h != 0).astype(np.float32) for _, h in splits))
            lp = _LabelPopularity.from_labels(held_all, ui, own=False)
            self.label_counts_ = lp.counts
        else:
            self.label_counts_ = None
        self.booster_ = booster
        self.heads_ = {k: hb for k, (hb, _) in heads.items()}
        self.head_iterations_ = {k: it for k, (_, it) in heads.items()}
        self.objective_weights_ = weights
        self.fallback_ = fallback
        self.tiebreak_ = best_src or names[0]
        self.best_iteration_ = best_it
        self.feature_names_ = feature_names
        self.item_popularity_ = (np.bincount(ui.indices, minlength=n_items)
                                 / max(n_users, 1)).astype(np.float32)
        self.item_embeddings_ = emb
        self.context_ = build_context(ui, times, kind, **ctx_args)
        self.report_ = {
            "folds": len(splits), "held_out_items": n_held,
            "recall_at_budget": {n: float(hits[j] / n_held) for j, n in enumerate(names)},
            "recall_union": float(hits[-1] / n_held),
            "budgets": {n: self._budget(n) for n in names},
            "training_groups": int((~is_eval).sum()), "early_stopping_groups": int(is_eval.sum()),
            "training_rows": int(sum(groups[i] for i in np.flatnonzero(~is_eval))),
            "best_iteration": best_it, "validation_ndcg@10": best_score,
            "guard_ndcg@10": guard, "fallback": fallback, "tiebreak": best_src or names[0],
            "feature_importance_gain": {f: float(g) for f, g in zip(feature_names, gain, strict=True)},
            "objectives": head_report, "objective_weights": weights,
        }
        logger.info("ltr: union recall %.3f over %d held-out items, best iteration %d",
                    self.report_["recall_union"], n_held, best_it)
        self.n_users_ = int(n_users)
        self.n_items_ = int(n_items)
        return self

    def _fit(self, user_items):  # pragma: no cover - fit is overridden
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring
    def _serving_sources(self) -> dict:
        """``sources_`` plus the built-in ``label-popularity`` source when it is on."""
        if getattr(self, "label_counts_", None) is None:
            return self.sources_
        pop = self.item_popularity_ * float(self.n_users_)  # training users per item, as in fit
        tiebreak = 0.5 * pop / (pop.max() + 1.0) if pop.size else pop
        return {**self.sources_, LABEL_POPULARITY: _LabelPopularity(self.label_counts_, tiebreak)}

    def _predict_pool(self, rows: sp.csr_matrix, user_index):
        r, c, X, proposed = self._pool(self._serving_sources(), rows, user_index, self.item_popularity_,
                                       self.item_embeddings_, self.context_)
        pred = (self.booster_.predict(X, num_iteration=self.best_iteration_) if r.size
                else np.zeros(0))
        heads = getattr(self, "heads_", None) or {}
        if heads and r.size:  # several objectives: weighted sum of per-user standardised heads
            w = self.objective_weights_
            blend = w[MAIN_OBJECTIVE] * _standardise_per_user(np.asarray(pred, np.float64), r)
            for k, hb in heads.items():
                hp = hb.predict(X, num_iteration=self.head_iterations_[k])
                blend = blend + w[k] * _standardise_per_user(np.asarray(hp, np.float64), r)
            pred = blend
        return r, c, X, proposed, np.asarray(pred, dtype=np.float32)

    def _score(self, rows: sp.csr_matrix, user_index) -> np.ndarray:
        if self.fallback_ is not None:
            return self._serving_sources()[self.fallback_].score(rows, user_index)
        r, c, X, _, pred = self._predict_pool(rows, user_index)
        out = np.full(rows.shape, -np.inf, dtype=np.float32)
        # ties of the ranker (its trees are piecewise constant) follow the best source's order
        j = list(self._serving_sources()).index(self.tiebreak_)
        rank = np.nan_to_num(X[:, 2 * j + 1].astype(np.float64), nan=self._budget(self.tiebreak_) + 1)
        out[r, c] = pred.astype(np.float64) - 1e-4 * rank / (self._budget(self.tiebreak_) + 1)
        return out

    def explain(self, user_index, user_items: sp.csr_matrix, k: int = 10, *,
                n_features: int = 3) -> list[list[dict]]:
        """Ranked results with provenance and the features that moved each score most.

        Parameters
        ----------
        user_index : array-like of int, shape (n,)
        user_items : scipy.sparse.csr_matrix, shape (n, n_items)
            These users' rows (``user_items[user_index]``).
        k : int
        n_features : int
            How many features to report per result (largest absolute SHAP contribution,
            LightGBM's ``pred_contrib=True``).

        Returns
        -------
        list of list of dict
            Per user, up to ``k`` dicts ``{"item_index", "score", "sources": {name: {"rank",
            "score"}}, "top_features": {feature: contribution}}`` best first; ``score`` is the
            served score (the fallback source's when ``fallback_`` is set), source scores are
            relative to the user's best score from that source. With several objectives the
            feature contributions are those of the ``"interaction"`` head.
        """
        self._check_fitted()
        ids, served = self.recommend(np.atleast_1d(user_index), user_items, k=k)
        users = np.atleast_1d(np.asarray(user_index, dtype=np.int64))
        rows = check_user_items(user_items)
        r, c, X, proposed, pred = self._predict_pool(rows, users)
        contrib = (self.booster_.predict(X, num_iteration=self.best_iteration_, pred_contrib=True)
                   if r.size else np.zeros((0, len(self.feature_names_) + 1)))
        where = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(r, c, strict=True))}
        names = list(self._serving_sources())
        out = []
        for u in range(users.size):
            lst = []
            for pos, item in enumerate(ids[u]):
                if item < 0:
                    continue
                i = where.get((u, int(item)))
                if i is None:  # fallback source's item outside the pool (k > its budget)
                    lst.append({"item_index": int(item), "score": float(served[u, pos]), "sources": {},
                                "top_features": {}})
                    continue
                src = {n: {"rank": int(X[i, 2 * j + 1]), "score": float(X[i, 2 * j])}
                       for j, n in enumerate(names) if proposed[i, j]}
                top = np.argsort(-np.abs(contrib[i, :-1]))[:n_features]
                lst.append({"item_index": int(item), "score": float(served[u, pos]), "sources": src,
                            "top_features": {self.feature_names_[f]: float(contrib[i, f]) for f in top}})
            out.append(lst)
        return out

    def similar_items(self, item_index, k: int = 10):
        """Similar items from the first source that has an item-item notion (EASE, ItemKNN,
        ALS, content ...); see :meth:`Recommender.similar_items`.

        Raises
        ------
        NotImplementedError
            When no source supports it (e.g. popularity only).
        """
        self._check_fitted()
        for model in self.sources_.values():
            try:
                return model.similar_items(item_index, k)
            except NotImplementedError:
                continue
        raise NotImplementedError(f"no source of this LTRRecommender ({sorted(self.sources_)}) "
                                  "has an item-item similarity")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to the folder ``path`` (atomic; no pickle).

        Layout: ``meta.json`` (class, params without the sources, format version, counts,
        feature names, best iteration, report, source names, heads and their weights),
        ``booster.txt`` (``lightgbm.Booster.save_model``, the ``"interaction"`` head),
        ``heads/<objective>.txt`` (the other objectives' heads), ``state.npz`` (item popularity, optional item
        embeddings, the time context as ``ctx__<name>`` arrays) and ``sources/<name>`` (each
        source's own ``save``).
        """
        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k != "sources"}
        meta = {"class": type(self).__name__, "format_version": FORMAT_VERSION, "params": params,
                "n_users": self.n_users_, "n_items": self.n_items_,
                "sources": list(self.sources_), "feature_names": self.feature_names_,
                "best_iteration": self.best_iteration_, "report": self.report_,
                "heads": {k: int(it) for k, it in (getattr(self, "head_iterations_", None) or {}).items()},
                "objective_weights": getattr(self, "objective_weights_", None),
                "time_kind": (self.context_ or {}).get("kind")}
        with atomic_dir(path) as tmp:
            (tmp / "sources").mkdir()
            for name, model in self.sources_.items():
                model.save(tmp / "sources" / name)
            self.booster_.save_model(str(tmp / "booster.txt"))
            if getattr(self, "heads_", None):
                (tmp / "heads").mkdir()
                for k, hb in self.heads_.items():
                    hb.save_model(str(tmp / "heads" / f"{k}.txt"))
            state = {"item_popularity": self.item_popularity_}
            if self.label_counts_ is not None:
                state["label_counts"] = self.label_counts_
            if self.item_embeddings_ is not None:
                state["item_embeddings"] = self.item_embeddings_
            for key, value in (self.context_ or {}).items():
                if key != "kind":
                    state[f"ctx__{key}"] = value
            with open(tmp / "state.npz", "wb") as fh:
                np.savez(fh, **state)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        logger.info("saved LTRRecommender to %s", path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LTRRecommender:
        """Load a folder written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            ``path`` or one of its files is missing.
        ValueError
            Not an LTRRecommender folder, or another format version.
        """
        import lightgbm as lgb

        folder = Path(path)
        for name in ("meta.json", "booster.txt", "state.npz"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} is missing: {folder} is not a folder "
                                        "written by LTRRecommender.save")
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("class") != cls.__name__ or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder} holds class {meta.get('class')!r} format "
                             f"{meta.get('format_version')!r}; expected {cls.__name__!r} "
                             f"format {FORMAT_VERSION}; fix: refit and save with this version")
        sources = {n: Recommender.load(folder / "sources" / n) for n in meta["sources"]}
        model = cls(sources=sources, **meta["params"])
        model.sources_ = sources
        model.booster_ = lgb.Booster(model_file=str(folder / "booster.txt"))
        head_its = meta.get("heads") or {}
        for k in head_its:
            if not str(k).replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"{folder / 'meta.json'} names a head {k!r} that is not letters, "
                                 "digits, '_' or '-'; fix: save the model again with this version")
            if not (folder / "heads" / f"{k}.txt").is_file():
                raise FileNotFoundError(f"{folder / 'heads' / (k + '.txt')} is missing: the folder "
                                        f"lists the head {k!r} in meta.json; fix: save the model again")
        model.heads_ = {k: lgb.Booster(model_file=str(folder / "heads" / f"{k}.txt")) for k in head_its}
        model.head_iterations_ = {k: int(it) for k, it in head_its.items()}
        model.objective_weights_ = meta.get("objective_weights") or {MAIN_OBJECTIVE: 1.0}
        with np.load(folder / "state.npz", allow_pickle=False) as npz:
            model.item_popularity_ = npz["item_popularity"]
            model.item_embeddings_ = npz["item_embeddings"] if "item_embeddings" in npz.files else None
            model.label_counts_ = npz["label_counts"] if "label_counts" in npz.files else None
            ctx = {k[5:]: npz[k] for k in npz.files if k.startswith("ctx__")}
        model.context_ = {**ctx, "kind": meta["time_kind"]} if meta.get("time_kind") else None
        model.feature_names_ = meta["feature_names"]
        model.best_iteration_ = int(meta["best_iteration"])
        model.report_ = meta["report"]
        model.fallback_ = meta["report"].get("fallback")
        model.tiebreak_ = meta["report"]["tiebreak"]
        model.n_users_ = int(meta["n_users"])
        model.n_items_ = int(meta["n_items"])
        return model
