"""Hyperparameters chosen on a validation split carved from the training data (never the test).

:func:`validation_split` holds out part of the *training* interactions with the same protocol
as the test split; :func:`tune` fits every point of a grid on the rest, scores it on the
held-out part by full ranking (:func:`recsys.evaluation.evaluator.evaluate`) and returns the best
parameters together with the whole table, so the choice can be recorded with the model.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["DEFAULT_GRIDS", "SIMPLER", "TIE_REL", "TIE_TOL", "TuningResult", "validation_split", "tune",
           "expand_grid", "grid_edges", "pick_best"]

logger = logging.getLogger(__name__)

#: Small default grids (a few fits each on MovieLens 100K). Sources of the centres: EASE l2 500
#: (Steck 2019 reference notebook), implicit's ALS/BPR defaults, implicit's BM25 K1/B. ALS
#: reaches far stronger regularisation than implicit's default (0.01): on a validation split of
#: MovieLens 100K NDCG@10 rose from 0.2077 (64 factors, regularization 1, alpha 1, the best of
#: the earlier grid) to 0.2814 (128, 30, 3), above EASE's 0.2751 (Rendle et al., "Revisiting the
#: Performance of iALS on Item Recommendation Benchmarks", RecSys 2022, on tuning it this far).
#: Mapped finer on that split (64 factors, regularization 20-80 x alpha 2-8), the good settings
#: lie on a narrow ridge alpha ~ regularization / 8 (e.g. 30/3.5 0.2847, 40/5 0.2864, 50/8 0.2828,
#: while 40/3 gives 0.2662), which a coarse product grid steps over; the grid below crosses it at
#: several strengths (regularization 10-60 x alpha 2-8).
DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "ease": {"l2": [50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0]},
    "itemknn": {"neighbors": [50, 200], "weighting": ["none", "bm25"]},
    "als": {"factors": [64, 128], "regularization": [10.0, 20.0, 40.0, 60.0], "alpha": [2.0, 3.0, 5.0, 8.0]},
    "bpr": {"factors": [64], "learning_rate": [0.01, 0.05], "iterations": [100]},
    "trending": {"half_life_days": [1.0, 30.0, 365.0]},
    # the ALS grid: on MovieLens 100K validation the hybrid's warm NDCG@10 rose 0.2077 -> 0.2819
    # (64, 30, 3 on the previous ALS grid); its cold-item numbers on the test split moved within
    # noise (recall@10 0.1066 -> 0.0988, paired t p 0.21; benchmarks/bench_ranking.py protocol C)
    "hybrid": {"factors": [64, 128], "regularization": [10.0, 20.0, 40.0, 60.0], "alpha": [2.0, 3.0, 5.0, 8.0]},
    "popularity": {},
    "content": {},
    "ease-content": {"l2": [20.0, 30.0, 50.0], "feature_weight": [0.0, 20.0, 80.0],
                     "popularity_weight": [0.0, 0.02]},
    "graph-filter": {"layers": [2, 3, 4], "feature_weight": [0.0, 0.1, 0.2]},
    "lastitem": {"n_last": [1, 2, 3]},
    "windowknn": {"window": [3, 10], "alpha": [0.2, 0.5], "recency": [0.5, 1.0]},
    "sasrec": {"num_layers": [1, 2]},
    "gru4rec": {"embed_dim": [64]},
}


#: Tie-break order: among grid points whose validation metric is within ``tol`` of the best,
#: the simplest wins. ``(param, +1)``: a larger value is simpler (stronger regularisation);
#: ``(param, -1)``: a smaller value is simpler (fewer factors / neighbours). Compared in this
#: order; what it does not decide goes to the earlier grid point.
SIMPLER: dict[str, list[tuple[str, int]]] = {
    "ease": [("l2", +1)],
    "itemknn": [("neighbors", -1)],
    "als": [("regularization", +1), ("factors", -1)],
    "hybrid": [("regularization", +1), ("ridge_alpha", +1), ("factors", -1)],
    "bpr": [("regularization", +1), ("factors", -1)],
    "trending": [("half_life_days", +1)],
    "graph-filter": [("layers", -1), ("feature_weight", -1)],
}

#: Default tie tolerance (absolute, in units of the metric): below the user-bootstrap noise of
#: NDCG@10 on MovieLens 100K (about 0.008 half-width, issue 19.1).
TIE_TOL = 1e-3
#: ... capped at this share of the best score, so that sparse logs whose metrics are small
#: (TikTok's validation NDCG@20 is about 0.047: 1e-3 is 2% of it and would call the content
#: graphs' measured gain a tie) are not decided by the absolute tolerance alone.
TIE_REL = 0.005


def pick_best(table: list[dict], metric: str, name: str, tol: float = TIE_TOL) -> int:
    """Index of the chosen grid point: the simplest of those within ``tol`` of the best.

    Parameters
    ----------
    table : list of dict
        One row per grid point: ``{"params": {...}, metric: float, ...}``, in grid order.
    metric : str
        Key of the score to maximise.
    name : str
        Model name, the key of :data:`SIMPLER`.
    tol : float
        Points scoring ``>= best - min(tol, TIE_REL * |best|)`` tie (>= 0; 0 = strict maximum,
        earlier point wins). :data:`TIE_REL` (0.5%) keeps the tolerance below the differences
        that matter on logs with small metric values.

    Returns
    -------
    int
    """
    if not tol >= 0:
        raise ValueError(f"tol must be a number >= 0 (metric units), got {tol!r}")
    best = max(row[metric] for row in table)
    tol = min(tol, TIE_REL * abs(best))
    tied = [i for i, row in enumerate(table) if row[metric] >= best - tol]
    order = SIMPLER.get(name.lower(), [])

    def simplicity(i: int):
        p = table[i]["params"]
        return tuple(-sign * p[n] if n in p and isinstance(p[n], (int, float)) else 0
                     for n, sign in order) + (i,)

    return min(tied, key=simplicity)


@dataclass
class TuningResult:
    """Outcome of :func:`tune`.

    Attributes
    ----------
    model : str
    best_params : dict
        Grid point with the highest validation ``metric`` (ties: the first in grid order).
    metric : str
        e.g. ``"ndcg@10"``.
    best_score : float
    table : list of dict
        One entry per grid point: its params, every validation metric, fit seconds.
    protocol : dict
        How the validation split was made (protocol, ratio, seed, sizes).
    edges : dict
        Parameters chosen at the lowest or highest value of their grid (:func:`grid_edges`).
    """

    model: str
    best_params: dict
    metric: str
    best_score: float
    table: list = field(default_factory=list)
    protocol: dict = field(default_factory=dict)
    edges: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form (stored in ``model.json`` under ``"tuning"``)."""
        return {"model": self.model, "best_params": self.best_params, "metric": self.metric,
                "best_score": self.best_score, "validation": self.protocol,
                "at_grid_edge": self.edges, "table": self.table}


def grid_edges(grid: dict[str, list], chosen: dict) -> dict[str, str]:
    """Numeric parameters whose chosen value is the lowest or highest of its grid values.

    A best point on the edge of the grid says the optimum may lie beyond it (or, for a
    parameter the tie rule pushes one way, that the rule chose it).

    Parameters
    ----------
    grid : dict
        ``{param: [values]}`` that was searched.
    chosen : dict
        The chosen point (``TuningResult.best_params``).

    Returns
    -------
    dict
        ``{param: "lowest" | "highest"}`` for each parameter with at least two distinct numeric
        values whose chosen value is their minimum or maximum; booleans, strings and
        one-value lists are left out.
    """
    out = {}
    for p, values in grid.items():
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if p not in chosen or len(set(nums)) < 2 or len(nums) != len(values):
            continue
        if chosen[p] == max(nums):
            out[p] = "highest"
        elif chosen[p] == min(nums):
            out[p] = "lowest"
    return out


def validation_split(train_df: pd.DataFrame, *, protocol: str = "stratified", ratio: float = 0.75,
                     filter_by: str = "item", seed: int = 42):
    """Split the *training* interactions into (fit part, validation part).

    Parameters
    ----------
    train_df : pandas.DataFrame
        The training split only (the test split must never be passed here).
    protocol : {"stratified", "leave_last_out", "random_holdout"}
        ``stratified``: :func:`recsys.data.splits.stratified_split` (Recommenders'
        ``python_stratified_split``) with ``ratio``, ``filter_by``, ``seed``;
        ``leave_last_out``: the latest interaction per user; ``random_holdout``: a seeded
        ``1 - ratio`` share per user.
    ratio : float
        Share kept for fitting, in (0, 1).
    filter_by : {"user", "item"}
    seed : int

    Returns
    -------
    (fit_df, valid_df) : tuple of pandas.DataFrame

    Notes
    -----
    The rows are first sorted (stable) by ``user_id``, ``item_id`` and ``timestamp`` (those
    present), so the split depends on the log's content and the seed, not on its row order.

    Raises
    ------
    ValueError
        Unknown protocol, or what the splitter raises.
    """
    from recsys.data import splits

    # one canonical row order first, so that the seeded draws (one per row, in row order) give
    # the same split for the same log however its rows were ordered (issue 19.2)
    keys = [c for c in ("user_id", "item_id", "timestamp") if c in train_df.columns]
    if keys:
        train_df = train_df.sort_values(keys, kind="stable")
    if protocol == "stratified":
        return splits.stratified_split(train_df, ratio, filter_by=filter_by, seed=seed)
    if protocol == "leave_last_out":
        return splits.leave_last_out(train_df)
    if protocol == "random_holdout":
        return splits.random_holdout(train_df, 1.0 - ratio, seed=seed)
    raise ValueError(f"protocol={protocol!r}: expected 'stratified', 'leave_last_out' or "
                     "'random_holdout'")


def expand_grid(grid: dict[str, list]) -> list[dict]:
    """All combinations of a ``{param: [values]}`` grid, in order (``[{}]`` for an empty grid)."""
    if not grid:
        return [{}]
    names = list(grid)
    for n in names:
        if not isinstance(grid[n], (list, tuple)) or not grid[n]:
            raise ValueError(f"grid[{n!r}] must be a non-empty list of values, got {grid[n]!r}")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def tune(train_df: pd.DataFrame, name: str, grid: dict[str, list] | None = None, *, dataset=None,
         metric: str = "ndcg@10", k: int = 10, fixed: dict | None = None,
         item_embeddings=None, protocol: str = "stratified", ratio: float = 0.75,
         filter_by: str = "item", seed: int = 42, validation_df: pd.DataFrame | None = None,
         item_features=None, progress: bool = False, tol: float = TIE_TOL) -> TuningResult:
    """Choose hyperparameters of model ``name`` on a validation split of ``train_df``.

    Parameters
    ----------
    train_df : pandas.DataFrame
        Training interactions only; the validation split is carved from it.
    name : str
        Registry name (:data:`recsys.models.MODELS`).
    grid : dict, optional
        ``{param: [values]}``; default :data:`DEFAULT_GRIDS` ``[name]``.
    dataset : recsys.data.interactions.Dataset, optional
        Id maps (default: built from ``train_df``).
    metric : str
        Validation metric to maximise (``"ndcg@10"``, ``"map@10"``, ...).
    k : int
        Cut-off of the other reported metrics.
    fixed : dict, optional
        Parameters set for every grid point (e.g. ``{"num_threads": 1}``); a parameter given
        here is removed from the grid.
    item_embeddings : np.ndarray, optional
        (n_items, d) for content/hybrid models.
    protocol, ratio, filter_by, seed
        See :func:`validation_split`.
    validation_df : pandas.DataFrame, optional
        A predefined validation split (e.g. TikTok's ``val.tsv``): models are fitted on all of
        ``train_df`` and judged on it instead of a carved split; its rows with users or items
        unknown to ``dataset`` are dropped (count logged and recorded).
    item_features : list of np.ndarray, optional
        Item feature matrices for models that take them (``ease-content``).
    progress : bool
        tqdm bar over the grid points (:func:`embeddings.progress.progress_bar`: on a terminal only).
    tol : float
        Tie tolerance: of the grid points within ``tol`` of the best ``metric``, the simplest
        (:data:`SIMPLER`: stronger regularisation, fewer factors) is chosen (:func:`pick_best`).

    Returns
    -------
    TuningResult

    Raises
    ------
    ValueError
        Unknown model or parameter, an empty validation split, or what fitting raises.
    """
    from recsys.data.interactions import build_dataset
    from recsys.evaluation.evaluator import evaluate
    from recsys.models import fit_model, make_model
    from recsys.models.trending import interaction_times_matrix

    grid = DEFAULT_GRIDS.get(name.lower(), {}) if grid is None else grid
    grid = {p: v for p, v in grid.items() if p not in (fixed or {})}  # fixed values win
    dataset = dataset or build_dataset(train_df)
    n_dropped = 0
    if validation_df is not None:
        known = (validation_df["user_id"].isin(set(dataset.user_ids))
                 & validation_df["item_id"].isin(set(dataset.item_ids)))
        n_dropped = int((~known).sum())
        if n_dropped:
            logger.warning("tune: %d of %d validation rows name users or items without training "
                           "rows and are dropped", n_dropped, len(validation_df))
        fit_df, valid_df = train_df, validation_df[known.to_numpy()]
    else:
        fit_df, valid_df = validation_split(train_df, protocol=protocol, ratio=ratio,
                                            filter_by=filter_by, seed=seed)
    if len(valid_df) == 0:
        raise ValueError(f"the validation split of {len(train_df)} training rows is empty; use a "
                         "larger training set or a smaller ratio")
    fit_ui = dataset.to_user_items(fit_df)
    valid_ui = dataset.to_user_items(valid_df)
    times = (interaction_times_matrix(dataset, fit_df)
             if "timestamp" in fit_df.columns and not fit_df["timestamp"].isna().any() else None)
    metrics = list(dict.fromkeys([metric, f"ndcg@{k}", f"map@{k}", f"precision@{k}",
                                  f"recall@{k}"]))
    from embeddings.progress import progress_bar

    table = []
    points = expand_grid(grid)
    bar = progress_bar(len(points), f"tune {name}", "setting", progress)
    for point in points:
        bar.set_postfix_str(", ".join(f"{p}={v}" for p, v in point.items()), refresh=False)
        params = {**(fixed or {}), **point}
        model = make_model(name, **params)
        t0 = time.perf_counter()
        fit_model(model, fit_ui, item_embeddings=item_embeddings, interaction_times=times,
                  item_features=item_features)
        fit_s = time.perf_counter() - t0
        res = evaluate(model, fit_ui, valid_ui, k=k, metrics=metrics)
        row = {"params": point, **res.summary, "fit_seconds": round(fit_s, 4)}
        logger.info("tune %s %s: %s=%.4f", name, point, metric, res.summary[metric])
        table.append(row)
        bar.update(1)
    bar.close()
    best = pick_best(table, metric, name, tol)
    info = {"protocol": protocol, "ratio": ratio, "filter_by": filter_by, "seed": seed,
            "row_order": "sorted by user_id, item_id, timestamp before the split",
            "tie_rule": f"within min({tol}, {TIE_REL} x best) of the best {metric}, the simplest point "
                        f"({SIMPLER.get(name.lower(), [])}; then grid order)",
            "n_fit": len(fit_df), "n_valid": len(valid_df),
            "carved_from": "the training split only (the test split is never seen)"}
    if validation_df is not None:
        info = {"protocol": "predefined validation split", "n_fit": len(fit_df),
                "n_valid": len(valid_df), "n_valid_dropped_unknown": n_dropped}
    return TuningResult(model=name, best_params={**(fixed or {}), **table[best]["params"]},
                        metric=metric, best_score=float(table[best][metric]), table=table,
                        protocol=info, edges=grid_edges(grid, table[best]["params"]))
