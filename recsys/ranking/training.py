"""Training with validation-chosen hyperparameters, content embeddings and two-stage serving.

The library side of ``recsys train --tune --embeddings EMB_DIR --two-stage`` and
``recsys recommend --two-stage``; :func:`recsys.app.stages.train_model` and
:func:`recsys.app.stages.recommend_users` delegate here when those options are used.

Rules for bad input (stated, never silent):

* duplicate (user, item) rows count once (the matrix is binary; :meth:`Dataset.to_user_items`);
* NaN ratings: rows with a NaN ``rating`` raise ``ValueError`` (drop or fill them first);
* items without an embedding raise ``ValueError`` naming them (:func:`align_item_embeddings`);
* unknown user ids: plain models raise ``KeyError``; two-stage serving treats them as
  cold-start users and every row says ``fallback = "popularity: user_id unknown (no history)"``.

Two-stage ranker: with validation data (``tune=True``) the default second stage is learned
(:class:`recsys.models.LTRRecommender` over the tuned model, ``itemknn``, ``popularity`` and
``content`` with embeddings, trained on the tuning's validation split); it is kept when its
guard finds it better than each of its sources on the validation users, and the fusion chosen
by :func:`recsys.ranking.two_stage.tune_two_stage` is kept otherwise (``info["two_stage"]``
says which, with both validation numbers). On MovieLens 100K (Recommenders' protocol,
``benchmarks/bench_ltr.py``, five sources) the learned stage beat EASE on MAP, NDCG@10, P@10
and R@10 (paired t, p < 0.05) and, over a coarsely tuned ALS, that ALS too; over an ALS tuned on
its regularization/alpha ridge its guard served that ALS alone (the ranker was no better on
the validation users). On
MicroLens-50K it beat SASRec alone and on TikTok graph-filter (trained on the validation file,
cross-fitted over users, with ``label-popularity``); trained on a holdout carved from TikTok's
training file it did not. A predefined ``validation`` frame labels the learned stage directly.
Without validation data fusion stays (the collaborative order by default; RRF only for sources
of unknown relative quality).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

__all__ = ["load_item_embeddings", "train_ranker", "recommend_two_stage", "UNKNOWN_USER_FALLBACK"]

logger = logging.getLogger(__name__)

UNKNOWN_USER_FALLBACK = "popularity: user_id unknown (no history)"


def load_item_embeddings(emb_dir, item_ids) -> np.ndarray:
    """Video embeddings of an embedding folder, aligned with ``item_ids`` (video_id = item_id).

    Returns
    -------
    np.ndarray, float32, shape (n_items, d)

    Raises
    ------
    ValueError
        Items without an embedding (see :func:`recsys.models.align_item_embeddings`).
    """
    from embeddings.store import EmbeddingFolder
    from recsys.models import align_item_embeddings

    meta, emb = EmbeddingFolder.open(emb_dir).load_videos()
    return align_item_embeddings(item_ids, meta["video_id"].astype(str).tolist() if len(meta)
                                 else [], emb)


def train_ranker(df: pd.DataFrame, name: str, params: dict | None = None, *, dataset=None,
                 source: str | None = None, tune: bool = False, grid: dict | None = None,
                 item_embeddings: np.ndarray | None = None, two_stage: bool = False,
                 validation: pd.DataFrame | None = None, item_features: list | None = None,
                 seed: int = 42, progress: bool = False, two_stage_ranker: str = "auto",
                 tune_metric: str = "ndcg@10"):
    """Fit ``name`` on ``df``, optionally tuning it and configuring two-stage serving.

    Parameters
    ----------
    df : pandas.DataFrame
        Interactions (``user_id``, ``item_id``, optional ``rating``, ``timestamp``).
    name : str
        Registry name (:data:`recsys.models.MODELS`).
    params : dict, optional
        Fixed parameters (with ``tune``: applied to every grid point, overriding the grid).
    dataset : recsys.data.interactions.Dataset, optional
    source : str, optional
        Recorded as ``trained_on``.
    tune : bool
        Choose hyperparameters on a validation split carved from ``df``
        (:func:`recsys.ranking.tuning.tune`; stratified by item, ratio 0.75) and record the table.
    grid : dict, optional
        Grid for ``tune`` (default :data:`recsys.ranking.tuning.DEFAULT_GRIDS`).
    item_embeddings : np.ndarray, float32, shape (n_items, d), optional
        For content/hybrid models and the two-stage content source.
    validation : pandas.DataFrame, optional
        A predefined validation split for ``tune`` (instead of carving one from ``df``).
    item_features : list of np.ndarray, optional
        Item feature matrices ``(n_items, d_m)`` in ``dataset.item_ids`` order, for models
        declaring the ``item_features`` side input (``ease-content``); any other model raises.
    progress : bool
        tqdm bar over the ``tune`` grid points (on a terminal only).
    tune_metric : str
        Validation metric ``tune`` maximises, ``"name@k"`` (the other validation metrics are
        reported at the same ``k``).
    two_stage : bool
        Record a two-stage configuration (with ``tune``: chosen on the validation split by
        :func:`recsys.ranking.two_stage.tune_two_stage`; else the collaborative order with the other
        sources' items after it, 100 candidates, no interest weight).
    two_stage_ranker : {"auto", "ltr", "fusion"}
        Second stage of ``two_stage``: "auto" tries the learned stage when ``tune`` gives
        validation data and keeps it only if it beats its sources there (module docstring);
        "ltr" keeps it whenever validation data exist; "fusion" never tries it.
    seed : int
        Seed of the validation split.

    Returns
    -------
    recsys.ranking.artifacts.TrainedModel
        ``info`` holds ``params``, ``tuning`` (when tuned) and ``two_stage`` (when asked).
        When the learned stage is kept, ``model`` is that :class:`LTRRecommender` (the tuned
        ``name`` model is its source of the same name) and ``info["two_stage"]["ranker"]`` is
        ``"ltr"``.

    Raises
    ------
    ValueError
        NaN ratings, unknown model or parameters, missing side inputs, or what fitting raises.
    """
    from recsys.data.interactions import build_dataset
    from recsys.models import fit_model, interaction_times_matrix, make_model
    from recsys.ranking.artifacts import TrainedModel
    from recsys.ranking.tuning import tune as run_tune
    from recsys.ranking.two_stage import tune_two_stage

    if two_stage_ranker not in ("auto", "ltr", "fusion"):
        raise ValueError(f"two_stage_ranker={two_stage_ranker!r}: expected 'auto', 'ltr' or "
                         "'fusion'")
    if "rating" in df.columns and df["rating"].isna().any():
        raise ValueError(f"{int(df['rating'].isna().sum())} interactions have a NaN rating; fix: "
                         "drop them (df.dropna(subset=['rating'])) or fill them before training")
    dataset = dataset or build_dataset(df)
    ui = dataset.to_user_items(df)
    times = (interaction_times_matrix(dataset, df)
             if "timestamp" in df.columns and not df["timestamp"].isna().any() else None)
    info: dict = {"model": name, "trained_on": source}
    params = dict(params or {})
    from recsys.models import MODELS, is_next_item, side_inputs

    if item_features is not None and "item_features" not in side_inputs(MODELS.get(name, object)):
        takers = ", ".join(repr(n) for n, c in MODELS.items() if "item_features" in side_inputs(c))
        raise ValueError(f"model {name!r} cannot use item features; fix: drop --item-features/"
                         f"--item-text, or train one of {takers} (take any number of matrices)")
    if validation is not None and not tune:
        raise ValueError("a validation split is used only for tuning; fix: add tune=True "
                         "(--tune) or drop the validation file")
    if tune:
        t_tune = time.perf_counter()
        # next-item models are validated on each user's latest item (leave-last-out by time)
        sequential = is_next_item(name)
        result = run_tune(df, name, grid, dataset=dataset, fixed=params, metric=tune_metric,
                          k=int(str(tune_metric).rsplit("@", 1)[-1]),
                          item_embeddings=item_embeddings, seed=seed, validation_df=validation,
                          item_features=item_features, progress=progress,
                          **({"protocol": "leave_last_out"} if sequential else {}))
        params = result.best_params
        info["tuning"] = {**result.to_dict(), "seconds": round(time.perf_counter() - t_tune, 3)}
    model = make_model(name, **params)
    t0 = time.perf_counter()
    fit_model(model, ui, item_embeddings=item_embeddings, interaction_times=times,
              item_features=item_features)
    fit_s = time.perf_counter() - t0
    info.update({"params": model.get_params(), "n_users": ui.shape[0], "n_items": ui.shape[1],
                 "n_interactions": int(ui.nnz), "fit_seconds": round(fit_s, 4),
                 "duplicates_rule": "duplicate (user, item) rows count once (binary matrix)",
                 "item_embeddings": None if item_embeddings is None else list(np.shape(item_embeddings)),
                 "item_features": None if item_features is None else [list(np.shape(f)) for f in item_features]})
    if two_stage:
        # untuned: the collaborative order (never worse than that source; issue 19 item 4)
        untuned = {"n_candidates": 100, "fusion": "collaborative", "interest_weight": 0.0}
        if tune:
            # fusion tuning refits the model without times: not for next-item models
            fusion_tunable = "interaction_times" not in side_inputs(model)
            tt = (tune_two_stage(df, dataset, name, params, item_embeddings=item_embeddings,
                                 seed=seed) if fusion_tunable else None)
            fusion_choice = tt["best"] if tt else {**untuned, "validated": False}
            info["two_stage"] = {**fusion_choice, "ranker": "fusion"}
            if tt:
                info["two_stage_tuning"] = tt
            if two_stage_ranker != "fusion" and name != "ltr":
                ltr = _learned_stage(df, dataset, name, model, ui, times, item_embeddings,
                                     item_features, validation, seed)
                rep = ltr.report_
                wins = rep["fallback"] is None
                info["two_stage_learned"] = {
                    "guard_ndcg@10": rep["guard_ndcg@10"], "recall_at_budget": rep["recall_at_budget"],
                    "recall_union": rep["recall_union"], "best_iteration": rep["best_iteration"],
                    "feature_importance_gain": rep["feature_importance_gain"],
                    "beats_sources_on_validation": wins}
                if wins or two_stage_ranker == "ltr":
                    info["two_stage"] = {"ranker": "ltr", "validated": True,
                                         "sources": list(ltr.sources_), "fusion_choice": fusion_choice}
                    model = ltr
        else:
            info["two_stage"] = untuned
    return TrainedModel(model=model, user_items=ui,
                        user_ids=np.asarray(dataset.user_ids, dtype=object),
                        item_ids=np.asarray(dataset.item_ids, dtype=object), info=info,
                        item_embeddings=item_embeddings)


def _learned_stage(df, dataset, name, model, ui, times, item_embeddings, item_features,
                   validation, seed):
    """LTRRecommender over the fitted ``model`` and default sources, trained on the tuning's
    validation split (the predefined ``validation`` frame, else one carved as the tuning
    carves it: leave-last-out for next-item models, stratified by item otherwise)."""
    from recsys.models import LTRRecommender, is_next_item, make_model
    from recsys.ranking.tuning import validation_split

    sources = {name: model}
    for extra in ("itemknn", "popularity") + (("content",) if item_embeddings is not None else ()):
        if extra != name:
            sources[extra] = make_model(extra)
    if validation is not None:
        fit_ui, held = ui, dataset.to_user_items(validation)
    else:  # next-item models: each user's latest item, as their tuning; else stratified
        sequential = is_next_item(name) and times is not None
        fit_df, valid_df = validation_split(df, protocol="leave_last_out" if sequential else
                                            "stratified",
                                            ratio=0.75, filter_by="item", seed=seed)
        fit_ui, held = dataset.to_user_items(fit_df), dataset.to_user_items(valid_df)
    ltr = LTRRecommender(sources=sources, seed=seed)
    return ltr.fit(ui, item_embeddings=item_embeddings, interaction_times=times,
                   item_features=item_features, validation=(fit_ui, held))


def _recommend_learned(tm, user_ids, k: int, batch_size: int) -> pd.DataFrame:
    """Two-stage rows of a learned stage (``tm.model`` an LTRRecommender); users unknown or
    without history get popularity with the fallback rule stated."""
    import json

    from recsys.ranking.two_stage import COLD_START_FALLBACK

    lookup = {str(u): i for i, u in enumerate(tm.user_ids)}
    idx = np.array([lookup.get(str(u), -1) for u in user_ids], dtype=np.int64)
    counts = np.asarray((tm.user_items != 0).sum(axis=0)).ravel().astype(np.float64)
    popular = np.argsort(-counts, kind="stable")
    hist = np.diff(tm.user_items.indptr)
    recs = []
    warm = np.flatnonzero((idx >= 0) & (hist[np.maximum(idx, 0)] > 0))
    served = {}
    for s in range(0, warm.size, batch_size):
        b = idx[warm[s:s + batch_size]]
        for j, lst in zip(warm[s:s + batch_size], tm.model.explain(b, tm.user_items[b], k), strict=True):
            served[int(j)] = lst
    for j, u in enumerate(user_ids):
        if j in served:
            for rank, r in enumerate(served[j], 1):
                recs.append({"user_id": str(u), "rank": rank, "item_id": tm.item_ids[r["item_index"]],
                             "score": r["score"], "sources": json.dumps(r["sources"]),
                             "long_term_interest": None, "fallback": None})
            continue
        why = UNKNOWN_USER_FALLBACK if idx[j] < 0 else COLD_START_FALLBACK
        for rank, i in enumerate(popular[:k], 1):
            recs.append({"user_id": str(u), "rank": rank, "item_id": tm.item_ids[i],
                         "score": float(counts[i]),
                         "sources": json.dumps({"popularity": {"rank": rank, "score": float(counts[i])}}),
                         "long_term_interest": None, "fallback": why})
    cols = ["user_id", "rank", "item_id", "score", "sources", "long_term_interest", "fallback"]
    return pd.DataFrame(recs, columns=cols)


def recommend_two_stage(tm, user_ids=None, *, k: int = 10, config: dict | None = None,
                        batch_size: int = 1024) -> pd.DataFrame:
    """Two-stage top-``k`` for ``user_ids`` (all users when None) as a long table.

    Parameters
    ----------
    tm : recsys.ranking.artifacts.TrainedModel
    user_ids : list of str, optional
        Unknown ids are served as cold-start users (popularity, stated in ``fallback``).
    k : int
    config : dict, optional
        :class:`recsys.ranking.two_stage.TwoStageRecommender` settings; default ``tm.info["two_stage"]``
        or the collaborative order with 100 candidates. A model that is a learned stage
        (:class:`recsys.models.LTRRecommender`) serves through its own ranker unless
        ``config`` is given; ``long_term_interest`` is then None and ``sources`` its provenance.

    Returns
    -------
    pandas.DataFrame
        ``user_id, rank, item_id, score, sources (JSON: {source: {rank, score}}),
        long_term_interest, fallback`` (None or the rule that applied).
    """
    import json

    import scipy.sparse as sp

    from recsys.models import LTRRecommender
    from recsys.ranking.two_stage import TwoStageRecommender

    if isinstance(tm.model, LTRRecommender) and config is None:
        return _recommend_learned(tm, list(tm.user_ids) if user_ids is None else list(user_ids), k,
                                  batch_size)
    cfg = dict(config or tm.info.get("two_stage") or {"n_candidates": 100, "fusion": "collaborative"})
    cfg = {key: v for key, v in cfg.items() if key not in ("ranker", "sources", "fusion_choice")}
    ts = TwoStageRecommender(tm.model, tm.user_items, getattr(tm, "item_embeddings", None), **cfg)
    n_users = len(tm.user_ids)
    if user_ids is None:
        user_ids = list(tm.user_ids)
    lookup = {str(u): i for i, u in enumerate(tm.user_ids)}
    idx = np.array([lookup.get(str(u), -1) for u in user_ids], dtype=np.int64)
    frames = []
    for s in range(0, len(idx), batch_size):
        b = idx[s:s + batch_size]
        known = b >= 0
        rows = sp.vstack([tm.user_items[i] if i >= 0 else sp.csr_matrix((1, tm.user_items.shape[1]),
                                                                        dtype=np.float32)
                          for i in b]).tocsr()
        users = np.where(known, b, n_users)  # unknown: a new row with no history
        res = ts.explain(users, rows, k)
        recs = []
        for j, lst in enumerate(res):
            for rank, r in enumerate(lst, 1):
                recs.append({"user_id": str(user_ids[s + j]), "rank": rank,
                             "item_id": tm.item_ids[r["item_index"]], "score": r["score"],
                             "sources": json.dumps(r["sources"]),
                             "long_term_interest": r["long_term_interest"],
                             "fallback": UNKNOWN_USER_FALLBACK if not known[j] else r["fallback"]})
        frames.append(pd.DataFrame(recs))
    cols = ["user_id", "rank", "item_id", "score", "sources", "long_term_interest", "fallback"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
