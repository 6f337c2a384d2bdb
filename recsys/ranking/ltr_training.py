"""Training the learned second stage end to end: ``recsys train FILE --model ltr [--tune]``.

Builds :class:`recsys.models.LTRRecommender` over stage-1 sources (default ``ease``,
``itemknn``, ``popularity``, plus ``content`` when item embeddings are given):

* ``tune=False``: sources with their default parameters; the ranker is trained on a seeded
  per-user holdout of the log (:func:`recsys.models.ltr.carve_holdout`).
* ``tune=True``: every source's hyperparameters are chosen by :func:`recsys.ranking.tuning.tune` on a
  validation split carved from the log (stratified by item, 0.75, as ``recsys train --tune``);
  the ranker is trained on that same validation split (sources refitted on its fit part) and
  early-stopped on NDCG@10 of 20% of its users.
* ``validation=FRAME`` (``recsys train --model ltr --validation FILE``): a predefined
  validation period after the training log. The sources (tuned on it with ``tune``) are fitted
  once on the whole log, the ranker learns from the validation interactions, and the built-in
  ``label-popularity`` source (the validation period's own popular items, leave-own-user-out
  while training) joins the pool. On TikTok's val.tsv, cross-fitted over users, this beat
  graph-filter by +0.076 Recall@20 and the validation popularity alone by +0.023
  (``benchmarks/bench_ltr.py --dataset tiktok``). Evaluate such a model on a later test
  split, never on the validation file it learned from.

With a timestamp column (or the positions of a sequence file) the interaction times feed the
time and short-term features (:mod:`recsys.models.ltr_features`; ``--param time_features=none``
turns them off) and the sources that need them (``sasrec``, ``lastitem``, ``trending``).

Several feedback signals (``params["objectives"]``: columns of the log such as KuaiRand's
``is_like`` and ``long_view``, read by ``recsys train --param objectives=is_like,long_view``):
one ranker head per signal besides the interaction head, blended by ``objective_weights``
(a weighted sum of per-user standardised head scores; default weight 1 each).

Labels: the held-out interaction (binary) by default; ``label="graded"`` uses the rating
column (on MovieLens 100K graded labels scored lower on validation, see
``benchmarks/bench_ltr.py --help``).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

__all__ = ["objective_names", "train_ltr"]

logger = logging.getLogger(__name__)


def objective_names(value) -> list[str] | None:
    """Names of the feedback columns given as ``params["objectives"]``, in order.

    Parameters
    ----------
    value : None, str or sequence of str
        A comma-separated string (``"is_like,long_view"``, as ``--param`` gives it) or a list
        of names (a pipeline file's ``objectives = ["is_like", "long_view"]``).

    Returns
    -------
    list of str or None
        None for None or nothing named (only the interaction head).

    Raises
    ------
    ValueError
        Anything else (a number, a mapping, a list holding a non-string).
    """
    if value is None:
        return None
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",") if n.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(n, str) for n in value):
        names = [n.strip() for n in value if n.strip()]
    else:
        raise ValueError(f"objectives={value!r}: expected column names, as a list or one "
                         "comma-separated string (e.g. objectives=is_like,long_view)")
    return names or None


def train_ltr(df: pd.DataFrame, params: dict | None = None, *, dataset=None, source: str | None = None,
              tune: bool = False, item_embeddings: np.ndarray | None = None, seed: int = 42,
              validation: pd.DataFrame | None = None, item_features: list | None = None,
              progress: bool = False, tune_metric: str = "ndcg@10", **_ignored):
    """Fit an LTRRecommender on ``df``; returns a :class:`recsys.ranking.artifacts.TrainedModel`.

    Parameters
    ----------
    df : pandas.DataFrame
        Interactions (``user_id``, ``item_id``, optional ``rating``, ``timestamp``).
    params : dict, optional
        ``sources`` (comma-separated registry names or a list), ``label`` ("binary" or
        "graded"), ``objectives`` (comma-separated names of further feedback columns of ``df``,
        and of ``validation`` when given, e.g. ``"is_like,long_view"``: one head each, see
        :class:`LTRRecommender` ``objective_weights``), and any :class:`LTRRecommender`
        argument (``n_candidates``, ``n_folds``, ``objective_weights``...).
    dataset : recsys.data.interactions.Dataset, optional
    source : str, optional
        Recorded as ``trained_on``.
    tune : bool
        Validation-chosen source hyperparameters (module docstring).
    item_embeddings : np.ndarray, float32, shape (n_items, d), optional
    seed : int
    validation : pandas.DataFrame, optional
        Predefined validation interactions (module docstring); rows of users or items absent
        from ``df`` are dropped (logged).
    item_features : list of np.ndarray, optional
        Item side-information matrices (rows = items of ``dataset``) for the sources that take
        them (``graph-filter``, ``ease-content``).
    progress : bool
        Progress bars while tuning.
    tune_metric : str
        ``"name@k"`` the sources' tuning maximises.

    Returns
    -------
    recsys.ranking.artifacts.TrainedModel
        ``info`` holds the sources' parameters (and tuning tables), the ranker's report
        (recall of every source and of the union, feature importance, best iteration).

    Raises
    ------
    ValueError
        Unknown source or label, ``label="graded"`` without a rating column, an objective
        that is not a column of ``df`` (or of ``validation``), or what fitting raises.
    """
    from recsys.data.interactions import build_dataset
    from recsys.models import LTRRecommender, interaction_times_matrix, make_model
    from recsys.models.ltr import DEFAULT_SOURCES
    from recsys.ranking.artifacts import TrainedModel
    from recsys.ranking.tuning import tune as run_tune
    from recsys.ranking.tuning import validation_split

    params = dict(params or {})
    seed = int(params.pop("seed", seed))  # `--param seed=N` seeds the splits and sources alike
    names = params.pop("sources", None)
    if names is None:
        names = list(DEFAULT_SOURCES) + (["content"] if item_embeddings is not None else [])
    elif isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    label = params.pop("label", "binary")
    obj_names = objective_names(params.pop("objectives", None))
    if label not in ("binary", "graded"):
        raise ValueError(f"label={label!r}: expected 'binary' or 'graded'")
    if label == "graded" and "rating" not in df.columns:
        raise ValueError("label='graded' needs a rating column; fix: label=binary")
    dataset = dataset or build_dataset(df)
    ui = dataset.to_user_items(df)
    times = (interaction_times_matrix(dataset, df)
             if "timestamp" in df.columns and not df["timestamp"].isna().any() else None)
    info: dict = {"model": "ltr", "trained_on": source, "sources": {}}
    sources = {}
    for name in names:
        if tune:
            res = run_tune(df, name, dataset=dataset, item_embeddings=item_embeddings, seed=seed,
                           fixed={"num_threads": 1} if name in ("als", "bpr", "hybrid") else None,
                           validation_df=validation, item_features=item_features, progress=progress,
                           metric=tune_metric, k=int(str(tune_metric).rsplit("@", 1)[-1]))
            sources[name] = make_model(name, **res.best_params)
            info["sources"][name] = {"params": res.best_params, "tuning": res.to_dict()}
        else:
            sources[name] = make_model(name)
            info["sources"][name] = {"params": sources[name].get_params()}
    given_validation = validation is not None
    val_df = validation if given_validation else None
    if given_validation:
        held = dataset.to_user_items(validation)
        if held.nnz == 0:
            raise ValueError("the validation file shares no (user, item) pair with the training "
                             "log's users and items; fix: give a validation file of the same users "
                             "and catalogue (e.g. each user's next interactions)")
        validation = (ui, held)
    elif tune:
        fit_df, valid_df = validation_split(df, ratio=0.75, filter_by="item", seed=seed)
        validation = (dataset.to_user_items(fit_df), dataset.to_user_items(valid_df))
    objectives = None
    if obj_names:
        objectives = _objective_matrices(obj_names, dataset, df, val_df)
    relevance = None
    if label == "graded":
        from recsys.data.interactions import drop_duplicate_interactions

        relevance = dataset.to_user_items(drop_duplicate_interactions(df), binary=False)
    model = LTRRecommender(sources=sources, seed=seed, **params)
    t0 = time.perf_counter()
    model.fit(ui, relevance=relevance, item_embeddings=item_embeddings, interaction_times=times,
              item_features=item_features, validation=validation, objectives=objectives)
    fit_s = time.perf_counter() - t0
    info.update({"params": {k: v for k, v in model.get_params().items() if k != "sources"},
                 "label": label, "objectives": list(objectives or {}), "ranker": model.report_, "n_users": ui.shape[0],
                 "n_items": ui.shape[1], "n_interactions": int(ui.nnz),
                 "fit_seconds": round(fit_s, 4),
                 "validation": ("the predefined validation file (ranker labels; label-popularity "
                                f"{'on' if model.label_counts_ is not None else 'off'})"
                                if given_validation else
                                "stratified_split(0.75, filter_by='item') of the training log"
                                if tune else "carve_holdout of the training log"),
                 "duplicates_rule": "duplicate (user, item) rows count once (binary matrix)"})
    return TrainedModel(model=model, user_items=ui,
                        user_ids=np.asarray(dataset.user_ids, dtype=object),
                        item_ids=np.asarray(dataset.item_ids, dtype=object), info=info,
                        item_embeddings=item_embeddings)


def _objective_matrices(names: list[str], dataset, df: pd.DataFrame,
                        val_df: pd.DataFrame | None) -> dict:
    """``{name: CSR}`` of each feedback column's values over the training log plus the
    validation file (when given; the ranker's labels come from it), duplicates dropped by the
    log's duplicate rule.

    Raises
    ------
    ValueError
        A name that is not a column of the log or of the validation file.
    """
    import scipy.sparse as sp

    from recsys.data.interactions import drop_duplicate_interactions

    frames = [("the training log", df)] + ([("the validation file", val_df)] if val_df is not None
                                           else [])
    for what, frame in frames:
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise ValueError(f"objectives {missing} are not columns of {what} (columns: "
                             f"{list(frame.columns)}); fix: name feedback columns of its header, "
                             "which `recsys train` then keeps (load_interactions(signals=))")
    frames = [drop_duplicate_interactions(f) for _, f in frames]
    out = {}
    for n in names:
        mats = [dataset.to_user_items(f.assign(rating=f[n].to_numpy(np.float64)), binary=False)
                for f in frames]
        out[n] = sp.csr_matrix(sum(mats[1:], mats[0]))
    return out
