"""One library function per pipeline stage; the CLI subcommands and ``recsys run`` both call these.

Each function takes plain values (paths, names, numbers), does one stage, writes its outputs
atomically and returns what it made. None reads ``sys.argv`` or the environment.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "embed_catalog", "build_index", "split_interactions", "train_model", "evaluate_models",
    "recommend_users", "QueryOutcome", "run_queries", "open_encoder_for_index",
]

INDEX_META_COLUMNS = ["video_id", "path", "caption", "duration_s", "n_frames"]
ENGINES = ("local", "ray")


def resolve_pretrained(model: str, pretrained: str | None) -> str | None:
    """The ``pretrained`` argument for :func:`embeddings.encoders.open_clip.load_encoder`.

    Unset (None or ``""``) means ``"openai"`` for an open_clip architecture and the repository's
    own weights (None) for an ``hf-hub:`` model; ``"hf-hub"`` (what a manifest records for such a
    model) also means the repository's weights. Anything else is passed on unchanged.
    """
    if str(model).startswith("hf-hub:"):
        return None if pretrained in (None, "", "hf-hub") else pretrained
    return "openai" if pretrained in (None, "") else pretrained


def embed_catalog(videos: str | os.PathLike, out: str | os.PathLike, *, captions=None, model="ViT-B-32",
                  pretrained=None, device="auto", precision="fp32", seed=0, frames=8, batch_size=None,
                  max_side=256, shard_size=256, num_workers=2, progress=True, sampler=None, executor="thread",
                  storage_dtype="float32", engine="local", address=None, num_encoders=1, text_tower=None):
    """Stage 1+2: sample frames of every clip in ``videos`` and encode them into ``out``.

    ``sampler`` (an :class:`embeddings.video.sampling.FrameSampler`) replaces uniform ``frames``;
    ``batch_size=None`` picks one that fits memory. Returns ``(encoder, JobSummary)``. Raises what
    :func:`embeddings.job.discover_inputs`, :func:`embeddings.encoders.open_clip.load_encoder` and
    :func:`embeddings.job.run_embedding_job` raise.

    ``engine="ray"`` runs :func:`embeddings.ray_engine.embed.run_embedding_job_ray` instead (Ray
    cluster at ``address``, or a local one; ``num_encoders`` encoder actors; ``batch_size=None``
    means 64; ``num_workers`` and ``executor`` do not apply) and returns ``(None, JobSummary)``:
    the encoders live in the actors. Same folder format and resume as the local engine.
    """
    from embeddings.encoders.open_clip import load_encoder
    from embeddings.job import discover_inputs, run_embedding_job

    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {ENGINES}")
    inputs = discover_inputs(videos, captions)
    if engine == "ray":
        from embeddings.ray_engine.embed import run_embedding_job_ray
        from embeddings.video.sampling import FrameSampler

        kwargs = {"model": model, "pretrained": resolve_pretrained(model, pretrained), "device": device,
                  "precision": precision, "seed": seed, "text_tower": text_tower}
        summary = run_embedding_job_ray(
            inputs, kwargs, out, sampler=sampler or FrameSampler("uniform", n_frames=frames),
            shard_size=shard_size, batch_size=batch_size or 64, num_encoders=num_encoders, max_side=max_side,
            storage_dtype=storage_dtype, address=address, progress=progress)
        return None, summary
    encoder = load_encoder(model, resolve_pretrained(model, pretrained), device=device, precision=precision,
                           seed=seed, text_tower=text_tower)
    if sampler is None:
        from embeddings.video.sampling import FrameSampler

        sampler = FrameSampler("uniform", n_frames=frames)
    summary = run_embedding_job(inputs, encoder, out, sampler=sampler, shard_size=shard_size,
                                batch_size=batch_size, num_workers=num_workers, max_side=max_side,
                                executor=executor, storage_dtype=storage_dtype, progress=progress)
    return encoder, summary


def build_index(emb_dir: str | os.PathLike, out: str | os.PathLike, *, factory: str | None = "Flat",
                metric: str = "ip", max_memory: str | None = None, latency_ms: float | None = 10.0,
                min_recall: float = 0.95, frames_out: str | os.PathLike | None = None,
                engine: str = "local", address: str | None = None, on_disk: bool | None = None,
                n_workers: int | None = None, progress: bool = False):
    """Stage 3: a FAISS index over the video embeddings of ``emb_dir``, saved to ``out``.

    ``factory`` None/``"auto"`` runs :func:`embeddings.index.tune.build_tuned`: ranked choice
    under ``max_memory`` and ``latency_ms``, search knob set by measurement, the measured
    Recall@10 (target ``min_recall``) saved in the manifest (``VideoIndex.tuning``).
    ``frames_out``: also a frame-level index (one vector per sampled frame,
    :class:`embeddings.index.frames.FrameIndex`) from the same shards, saved there.

    ``engine="ray"`` builds an IVF index with
    :func:`embeddings.ray_engine.index_build.build_ivf_index_ray` (train once, add shards in Ray
    tasks, merge in memory or, ``on_disk``, into ``out/index.ivfdata``; None decides by size): the
    same folder format and, for the same factory string, the same index as the local build.
    Non-IVF strings (HNSW, Flat, auto) and ``frames_out`` are refused there.

    ``engine="local"`` with an explicit factory string and ``max_memory``, ``on_disk`` (True /
    False; None decides by the budget) or ``n_workers`` goes through
    :func:`embeddings.index.shards.build_from_embedding_folder`: the build plan bounds memory,
    IVF lists are streamed to disk when they do not fit (or when asked), shards are added by
    ``n_workers`` processes; ``frames_out`` is refused there (build it separately).

    Returns the :class:`embeddings.index.video_index.VideoIndex`. Raises ``EmbeddingFolderError`` if the
    folder is unfinished, ``ValueError`` if it holds no embedded video.
    """
    from embeddings.index.video_index import VideoIndex
    from embeddings.store import EmbeddingFolder

    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {ENGINES}")
    folder = EmbeddingFolder.open(emb_dir)
    if engine == "ray":
        if frames_out is not None:
            raise ValueError("frames_out: the frame-level index is built by engine='local' only; drop it or "
                             "use engine='local'")
        from embeddings.ray_engine.index_build import build_ivf_index_ray

        md = index_metadata(video_metadata(folder))
        index, info = build_ivf_index_ray(emb_dir, out, factory_string=factory, metric=metric, metadata=md,
                                          address=address, on_disk=on_disk)
        log.info("ray index build: %s", info)
        return _record_embeddings(index, out, emb_dir)
    explicit = factory not in (None, "auto")
    if explicit and (max_memory or on_disk is not None or n_workers is not None):
        if frames_out is not None:
            raise ValueError("frames_out: the frame-level index is built by the in-memory path; drop "
                             "max_memory/on_disk/n_workers or build the frame index separately")
        from embeddings.index.shards import build_from_embedding_folder

        md = index_metadata(video_metadata(folder))
        if len(md) == 0:
            raise ValueError(f"{emb_dir} holds no embedded video (see its errors.parquet); nothing to index")
        index = build_from_embedding_folder(emb_dir, out, metadata=md, factory_string=factory, metric=metric,
                                            max_memory_bytes=max_memory, on_disk=on_disk,
                                            n_workers=n_workers or 1, progress=progress)
        return _record_embeddings(index, out, emb_dir)
    meta, emb = folder.load_videos()
    if len(meta) == 0:
        raise ValueError(f"{emb_dir} holds no embedded video (see its errors.parquet); nothing to index")
    md = index_metadata(meta)
    if factory in (None, "auto"):
        from embeddings.index.tune import build_tuned

        index = build_tuned(emb, md["video_id"].tolist(), metadata=md, max_memory=max_memory,
                            latency_ms=latency_ms, min_recall=min_recall, metric=metric,
                            encoder=folder.encoder, n_queries=min(500, len(md)))
        log.info("automatic index choice: %s (%s), %s, measured recall@10 %.4f at %.3f ms/query",
                 index.factory_string, index.tuning["reason"], index.tuning["search_params"],
                 index.tuning["recall@10"], index.tuning["ms_per_query"])
    else:
        index = VideoIndex.build(emb, md["video_id"].tolist(), metadata=md, factory_string=factory,
                                 metric=metric, encoder=folder.encoder)
    index.embeddings_dir = str(Path(emb_dir).resolve())
    index.save(out)
    if frames_out is not None:
        from embeddings.index.frames import FrameIndex

        frames, frame_emb = folder.load_frames()
        FrameIndex.build(frame_emb, frames, factory_string=factory or "auto", metric=metric,
                         max_memory_bytes=max_memory, encoder=folder.encoder).save(frames_out)
    return index


def _record_embeddings(index, out, emb_dir):
    """Name ``emb_dir`` (absolute) in the saved manifest of ``out`` and on ``index``; returns ``index``."""
    from embeddings._io import write_json

    index.embeddings_dir = str(Path(emb_dir).resolve())
    path = Path(out) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["embeddings"] = index.embeddings_dir
    write_json(path, manifest)
    return index


def embeddings_of_index(index, index_dir, embeddings=None) -> Path:
    """The embedding folder of an index: ``embeddings`` when given, else the folder recorded at build time.

    Parameters
    ----------
    index : embeddings.index.VideoIndex
        Loaded index; ``index.embeddings_dir`` is the absolute folder its manifest records (None for
        indexes built before it was recorded, or from bare vectors).
    index_dir : path-like
        Where the index was loaded from.
    embeddings : path-like or None
        An explicit folder (``--embeddings``): wins over the record, for a folder that moved.

    Returns
    -------
    pathlib.Path
        The explicit folder; else the recorded one when it still exists; else
        ``index_dir/../embeddings`` (the layout ``recsys run`` writes) when that exists; else the
        recorded one. Existence is not checked further: the caller says what to pass.
    """
    if embeddings is not None:
        return Path(embeddings)
    recorded = getattr(index, "embeddings_dir", None)
    sibling = Path(index_dir).parent / "embeddings"
    if recorded and (Path(recorded).is_dir() or not sibling.is_dir()):
        return Path(recorded)
    return sibling


def video_metadata(folder) -> pd.DataFrame:
    """Shard metadata of every embedded video of an :class:`embeddings.store.EmbeddingFolder`.

    The rows and order of ``folder.load_videos()[0]`` (shard order, then ``row``), read from the
    Parquet files only, so the vectors are not loaded.
    """
    from embeddings.store import SHARD_DIR

    metas = []
    for stem in folder.shard_stems():
        meta = pd.read_parquet(folder.path / SHARD_DIR / f"{stem}.parquet")
        metas.append(meta[meta["row"] >= 0].sort_values("row"))
    return pd.concat(metas, ignore_index=True) if metas else pd.DataFrame()


def index_metadata(meta: pd.DataFrame) -> pd.DataFrame:
    """The index metadata table from shard metadata: kept columns and ``synthetic=False``."""
    cols = [c for c in INDEX_META_COLUMNS if c in meta.columns]
    extra = [c for c in meta.columns if c not in cols and c not in
             ("fps", "width", "height", "frame_offset", "frame_timestamps_s", "row", "error")]
    md = meta[cols + extra].reset_index(drop=True).copy()
    md["synthetic"] = False
    return md


SPLIT_PROTOCOLS = ("random_holdout", "leave_last_out", "stratified", "temporal", "kfold",
                   "predefined")


def default_test_ratio(protocol: str) -> float:
    """Test share a protocol uses when none is given: 0.25 for ``stratified`` (Microsoft
    Recommenders' MovieLens benchmark, ``ratio=0.75``), 0.2 for the others."""
    return 0.25 if protocol == "stratified" else 0.2


def split_interactions(df: pd.DataFrame, protocol: str, *, test_ratio: float | None = None, seed: int = 42,
                       test_df: pd.DataFrame | None = None, n_folds: int = 5):
    """Split an interaction log by a named protocol into ``(train_df, test_df)``.

    Protocols: ``random_holdout`` (per user, ``test_ratio`` held out), ``leave_last_out``
    (latest interaction per user), ``stratified`` (Microsoft Recommenders' benchmark split:
    ``python_stratified_split(df, ratio=1 - test_ratio, filter_by="item", seed=seed)``, by
    default ``ratio=0.75, seed=42``, the call of their MovieLens benchmark; the same meaning as
    :func:`recsys.data.splits.recommenders_split`), ``temporal`` (global
    cut at the ``1 - test_ratio`` time quantile), ``predefined`` (``df`` is the training file and
    ``test_df`` the test file, used as they are, e.g. MovieLens ``u1.base``/``u1.test``) and
    ``kfold`` (:func:`recsys.data.splits.k_fold`; returns the list of ``n_folds`` pairs instead).
    ``test_ratio=None`` takes :func:`default_test_ratio` of the protocol.

    Raises
    ------
    ValueError
        Unknown protocol (lists the valid ones), a time-based protocol on a log without
        timestamps, ``predefined`` without ``test_df`` or ``test_df`` with another protocol.
    """
    from recsys.data import splits

    if protocol not in SPLIT_PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}: expected one of {', '.join(SPLIT_PROTOCOLS)}")
    if (protocol == "predefined") != (test_df is not None):
        raise ValueError("protocol 'predefined' needs a test file (--test TEST) and a test file "
                         f"needs protocol 'predefined'; got protocol={protocol!r} with"
                         f"{'' if test_df is not None else 'out'} a test file")
    if protocol in ("leave_last_out", "temporal") and ("timestamp" not in df.columns or df["timestamp"].isna().all()):
        raise ValueError(f"protocol {protocol!r} needs a timestamp column; the interaction log has none. "
                         "Use --protocol random_holdout or stratified.")
    if test_ratio is None:
        test_ratio = default_test_ratio(protocol)
    if protocol == "predefined":
        return df, test_df
    if protocol == "kfold":
        return splits.k_fold(df, n_folds, seed=seed)
    if protocol == "random_holdout":
        return splits.random_holdout(df, test_ratio, seed=seed)
    if protocol == "leave_last_out":
        return splits.leave_last_out(df)
    if protocol == "stratified":
        return splits.recommenders_split(df, 1.0 - test_ratio, seed=seed)
    return splits.temporal_split(df, quantile=1.0 - test_ratio)


def train_model(df: pd.DataFrame, name: str, params: dict | None = None, *, dataset=None, source: str | None = None,
                **options):
    """Fit model ``name`` on the interactions ``df``; returns a :class:`recsys.ranking.artifacts.TrainedModel`.

    ``dataset`` (a :class:`recsys.data.interactions.Dataset`) fixes the id maps, so that a model trained on a
    split shares its indices with the test matrix; by default it is built from ``df``.
    ``options`` (``tune``, ``grid``, ``item_embeddings``, ``two_stage``, ``seed``) go to
    :func:`recsys.ranking.training.train_ranker` (validation-chosen hyperparameters, content models,
    two-stage settings).
    """
    from recsys.data.interactions import build_dataset
    from recsys.models import MODELS, make_model, side_inputs
    from recsys.ranking.artifacts import TrainedModel

    if name == "ltr":  # learned second stage over several stage-1 models (recsys.ranking.ltr_training)
        from recsys.ranking.ltr_training import train_ltr

        return train_ltr(df, params, dataset=dataset, source=source, **options)
    if options or name in ("trending", "content", "hybrid") or side_inputs(MODELS.get(str(name).lower(), object)):
        from recsys.ranking.training import train_ranker

        return train_ranker(df, name, params, dataset=dataset, source=source, **options)
    dataset = dataset or build_dataset(df)
    ui = dataset.to_user_items(df)
    model = make_model(name, **(params or {}))
    t0 = time.perf_counter()
    model.fit(ui)
    fit_s = time.perf_counter() - t0
    info = {"model": name, "params": model.get_params(), "trained_on": source, "n_users": ui.shape[0],
            "n_items": ui.shape[1], "n_interactions": int(ui.nnz), "fit_seconds": round(fit_s, 4)}
    return TrainedModel(model=model, user_items=ui, user_ids=np.asarray(dataset.user_ids, dtype=object),
                        item_ids=np.asarray(dataset.item_ids, dtype=object), info=info)


def _same_pairs(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """True when the two logs hold the same set of (user_id, item_id) pairs."""
    pa = set(zip(a["user_id"].astype(str), a["item_id"].astype(str), strict=True))
    pb = set(zip(b["user_id"].astype(str), b["item_id"].astype(str), strict=True))
    return pa == pb


def recommend_users(tm, user_ids=None, *, k: int = 10, batch_size: int = 4096, two_stage: bool | None = None
                    ) -> pd.DataFrame:
    """Top-``k`` unseen items for ``user_ids`` (all users when None) as a long table.

    ``two_stage`` True (or None with a model trained ``--two-stage``) serves through
    :func:`recsys.ranking.training.recommend_two_stage` instead: extra columns ``sources``,
    ``long_term_interest``, ``fallback``, and unknown users get the stated popularity fallback.

    A user id not in the training data (a cold-start user) gets the popularity fallback: the
    ``k`` items with the most training users, score = that number of users; the table then has
    a ``fallback`` column, the rule that applied for those rows
    (:data:`recsys.ranking.training.UNKNOWN_USER_FALLBACK`) and None for known users.

    Returns
    -------
    pandas.DataFrame
        ``user_id, rank (1-based), item_id, score`` (plus ``fallback`` when a user was unknown),
        users in the order given; users with fewer than ``k`` unseen items get fewer rows
        (padding dropped).
    """
    if two_stage or (two_stage is None and tm.info.get("two_stage")):
        from recsys.ranking.training import recommend_two_stage

        return recommend_two_stage(tm, user_ids, k=k)
    if user_ids is not None:
        lookup = {str(u): i for i, u in enumerate(tm.user_ids)}
        unknown = [u for u in user_ids if str(u) not in lookup]
        if unknown:
            return _with_popularity_fallback(tm, user_ids, lookup, k=k, batch_size=batch_size)
    idx = (np.arange(len(tm.user_ids)) if user_ids is None
           else np.array([tm.user_index(u) for u in user_ids], dtype=np.int64))
    frames = []
    for s in range(0, len(idx), batch_size):
        rows = idx[s:s + batch_size]
        ids, scores = tm.recommend(rows, k=k)
        ids, scores = np.atleast_2d(ids), np.atleast_2d(scores)
        r, c = np.nonzero(ids >= 0)
        frames.append(pd.DataFrame({"user_id": tm.user_ids[rows[r]], "rank": c + 1,
                                    "item_id": tm.item_ids[ids[r, c]], "score": scores[r, c].astype(float)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["user_id", "rank", "item_id", "score"])


def _with_popularity_fallback(tm, user_ids, lookup: dict, *, k: int, batch_size: int) -> pd.DataFrame:
    """:func:`recommend_users` when some users are unknown: popularity for them, marked in ``fallback``."""
    from recsys.ranking.training import UNKNOWN_USER_FALLBACK

    known = [u for u in user_ids if str(u) in lookup]
    recs = recommend_users(tm, known, k=k, batch_size=batch_size, two_stage=False) if known else None
    counts = np.asarray((tm.user_items > 0).sum(axis=0)).ravel()  # training users per item
    top = np.argsort(-counts, kind="stable")[:k]
    parts = []
    for u in user_ids:
        if str(u) in lookup:
            part = recs[recs["user_id"].astype(str) == str(u)].assign(fallback=None)
        else:
            part = pd.DataFrame({"user_id": str(u), "rank": np.arange(1, len(top) + 1),
                                 "item_id": tm.item_ids[top], "score": counts[top].astype(float),
                                 "fallback": UNKNOWN_USER_FALLBACK})
        parts.append(part)
    log.info("%d of %d user(s) unknown to the model: popularity fallback", len(user_ids) - len(known), len(user_ids))
    return pd.concat(parts, ignore_index=True).astype({"fallback": object})


def evaluate_models(df: pd.DataFrame, models: list[str], *, protocol: str = "random_holdout",
                    test_ratio: float | None = None, seed: int = 42, k: int = 10, metrics=None,
                    params: dict | None = None, test_df: pd.DataFrame | None = None,
                    n_folds: int = 5, n_negatives: int | None = None, item_embeddings=None,
                    ks=None, keep_lists: bool = False, evaluator=None, progress: bool = False,
                    users: str = "all", drop_test_only_items: bool = False,
                    validation_df: pd.DataFrame | None = None, item_features=None, item_text=None):
    """Split ``df`` by ``protocol``, fit each model on the train split, evaluate on the test split.

    Full ranking over all items, training items removed, unless ``n_negatives`` asks for
    sampled-negative ranking (labelled in the protocol, the summary and every per-user row);
    users without test items are excluded and counted. ``kfold`` evaluates every fold; per-user
    rows then carry their ``fold`` and means are over all (fold, user) rows.

    Parameters
    ----------
    metrics : iterable of str, optional
        Names or ``name@k`` (see :func:`recsys.evaluation.evaluator.evaluate`); default precision, recall,
        ndcg, map, mrr, hit_rate, coverage and novelty (plus diversity when
        ``item_embeddings`` is given), each at ``k``.
    ks : iterable of int, optional
        Extra cut-offs at which every per-user metric is also computed (metric-versus-K curves).
    item_embeddings : numpy.ndarray, optional
        (n_items, d) in the order of ``build_dataset(df)``'s item index: intra-list diversity,
        and the side input that ``content`` and ``hybrid`` fit on.
    keep_lists : bool
        Keep each model's ranked lists (``lists`` entry) for TREC run files.
    evaluator : callable, optional
        Called instead of :func:`recsys.evaluation.evaluator.evaluate` with the same arguments and returning
        the same result type, e.g. ``functools.partial(recsys.distributed.evaluate_ray,
        address=...)`` to evaluate user blocks on a Ray cluster (``recsys evaluate --engine ray``).
    progress : bool
        tqdm bar over the (fold, model) fits and evaluations (on a terminal only).
    users : {"all", "common"}
        Averaging convention (:func:`recsys.evaluation.evaluator.evaluate`): ``"all"`` (every user with
        test items, an empty list counts 0; implicit, ``trec_eval -c``) or ``"common"``
        (Microsoft Recommenders: nDCG over all, the rest over users in truth and predictions).
    drop_test_only_items : bool
        ``predefined`` only. By default items that appear only in the test file are added to
        the catalogue (no model can score them from interactions; they count as misses and are
        ranked like any unseen item). True drops their test rows instead, as a split made
        from one log never has them; the count is in the protocol record either way.
    validation_df : pandas.DataFrame, optional
        A predefined validation split: every model's hyperparameters are chosen on it
        (:func:`recsys.ranking.training.train_ranker` with ``tune=True``, maximising
        ``ndcg@k``; ``params`` stay fixed) before it is fitted on the train split. Validation
        rows of users or items unknown to the evaluation's dataset are dropped (logged). ``ltr``
        tunes its sources on it and its ranker learns from it (with ``label-popularity``,
        :func:`recsys.ranking.ltr_training.train_ltr`). Without it nothing is tuned.
    item_features : sequence of path-like or numpy.ndarray, optional
        Item feature matrices (:func:`recsys.app.side.item_side_matrices`; arrays in the
        dataset's item order, ``build_dataset`` of the train and test rows) for the models that
        take them (``ease-content``); every other model is evaluated without them and a
        warning names it (also in the protocol record, ``item_features_not_used_by``). The rows
        of an ``.npy`` file are items ``0..n-1``: those without an interaction join the
        catalogue and are ranked too (:func:`recsys.app.side.with_feature_catalog`).
    item_text : path-like, optional
        Item titles/captions, one more feature matrix (TF-IDF + SVD), same rule.

    Returns
    -------
    dict
        ``{"protocol": {...}, "summary": DataFrame (one row per model: metric means, fit and
        evaluation seconds, ranking label), "per_user": DataFrame (model, fold, user_id, metric
        columns, ranking), "trained": {name: TrainedModel}, "test_df": the test rows (all folds),
        "dataset": Dataset, "lists": {name: [(fold, user_index array, ids, scores)]}}``.

    Raises
    ------
    ValueError
        What :func:`split_interactions`, :func:`train_model` and
        :func:`recsys.evaluation.evaluator.evaluate` raise.
    """
    from recsys.data.interactions import build_dataset
    from recsys.evaluation.evaluator import evaluate

    if metrics is None:
        metrics = ["precision", "recall", "ndcg", "map", "mrr", "hit_rate", "coverage", "novelty"]
        if item_embeddings is not None:
            metrics.append("diversity")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    all_metrics = list(metrics)
    for kk in ks or ():
        all_metrics += [f"{m.split('@')[0].strip()}@{int(kk)}" for m in metrics]
    if test_ratio is None:
        test_ratio = default_test_ratio(protocol)
    split = split_interactions(df, protocol, test_ratio=test_ratio, seed=seed, test_df=test_df,
                               n_folds=n_folds)
    if users not in ("all", "common"):
        raise ValueError(f"users={users!r}: expected 'all' or 'common'")
    if (validation_df is not None and test_df is not None and any(m.lower() == "ltr" for m in models)
            and _same_pairs(validation_df, test_df)):
        raise ValueError("model 'ltr' learns its ranker from the validation file, and the test file "
                         "holds the same (user, item) pairs: it would be scored on its own labels; "
                         "fix: give a later test file, or evaluate 'ltr' on validation numbers with "
                         "benchmarks/bench_ltr.py (cross-fitted over users), or drop 'ltr'")
    test_only = {}
    if test_df is not None:
        only = ~test_df["item_id"].isin(set(df["item_id"]))
        test_only = {"n_test_only_items": int(test_df.loc[only, "item_id"].nunique()),
                     "n_test_rows_with_test_only_items": int(only.sum()),
                     "test_only_items": "dropped" if drop_test_only_items else
                     "kept in the catalogue (count as misses; --drop-test-only-items drops them)"}
        if drop_test_only_items:
            test_df = test_df.loc[~only]
            split = (split[0], test_df)
    folds = split if protocol == "kfold" else [split]
    full = df if test_df is None else pd.concat([df, test_df], ignore_index=True)
    dataset = build_dataset(full)
    from recsys.app.side import (
        item_side_matrices,
        models_without_item_features,
        with_feature_catalog,
    )

    n_logged_items = len(dataset.item_ids)
    feats = None
    if item_features or item_text:  # .npy rows are items too: ranked even when no log names them
        dataset = with_feature_catalog(dataset, item_features or ())
        feats = item_side_matrices(dataset, item_features or (), item_text)
    no_feats = models_without_item_features(models) if feats is not None else []
    for name in no_feats:
        log.warning("model %r cannot use item features (--item-features/--item-text, [interactions] "
                    "item_features/item_text): it is evaluated without them; ease-content takes them", name)
    from embeddings.progress import progress_bar

    rows, per_user, trained, lists, tests = [], [], {}, {}, []
    bar = progress_bar(len(folds) * len(models), "evaluate", "model", progress)
    for fold, (train_df, fold_test) in enumerate(folds):
        test_ui = dataset.to_user_items(fold_test)
        tests.append(fold_test.assign(fold=fold))
        for name in models:
            bar.set_postfix_str(name + (f" fold {fold + 1}/{len(folds)}" if len(folds) > 1 else ""))
            side = ({"item_embeddings": item_embeddings}  # content and hybrid fit on them
                    if item_embeddings is not None and name.lower() in ("content", "hybrid") else {})
            if feats is not None and name not in no_feats:
                side["item_features"] = feats
            if validation_df is not None:  # hyperparameters chosen on the predefined validation split
                # (ltr: its sources tuned there too, and its ranker learns from that file)
                side.update(tune=True, seed=seed, validation=validation_df, tune_metric=f"ndcg@{k}")
            tm = train_model(train_df, name, (params or {}).get(name), dataset=dataset, **side)
            t0 = time.perf_counter()
            res = (evaluator or evaluate)(tm.model, tm.user_items, test_ui, k=k, metrics=all_metrics,
                           n_negatives=n_negatives, seed=seed, item_embeddings=item_embeddings,
                           keep_lists=keep_lists, **({"users": users} if users != "all" else {}))
            eval_s = time.perf_counter() - t0
            trained[name] = tm
            tu = tm.info.get("tuning")
            rows.append({"model": name, "fold": fold, **res.summary,
                         "n_users": res.n_users_evaluated,
                         "n_users_without_test_items": res.n_users_skipped_no_test,
                         "fit_seconds": tm.info["fit_seconds"],
                         "evaluate_seconds": round(eval_s, 4), "ranking": res.ranking,
                         **({"params": json.dumps(tm.info.get("params"), default=str, sort_keys=True)}
                            if tu else {})})
            pu = res.per_user.copy()
            pu.insert(0, "model", name)
            pu.insert(1, "fold", fold)
            pu.insert(2, "user_id", tm.user_ids[pu["user_index"].to_numpy()])
            pu["ranking"] = res.ranking
            per_user.append(pu)
            if keep_lists:
                lists.setdefault(name, []).append((fold, res.per_user["user_index"].to_numpy(),
                                                   res.lists, res.list_scores))
            bar.update(1)
    bar.close()
    summary = pd.DataFrame(rows)
    per_user_df = pd.concat(per_user, ignore_index=True)
    if len(folds) > 1:  # one row per model: per-user means over all folds, counts summed
        metric_cols = [c for c in summary.columns if "@" in c]
        agg = []
        for name in models:
            sub, pus = summary[summary["model"] == name], per_user_df[per_user_df["model"] == name]
            row = {"model": name, "fold": "all"}
            for c in metric_cols:
                row[c] = (float(sub[c].mean()) if c.startswith("coverage@") or c not in pus
                          else float(pus[c].mean()))
            row.update(n_users=int(sub["n_users"].sum()),
                       n_users_without_test_items=int(sub["n_users_without_test_items"].sum()),
                       fit_seconds=float(sub["fit_seconds"].sum()),
                       evaluate_seconds=float(sub["evaluate_seconds"].sum()),
                       ranking=sub["ranking"].iloc[0])
            agg.append(row)
        summary = pd.DataFrame(agg)
    else:
        summary = summary.drop(columns="fold")
    all_test = pd.concat(tests, ignore_index=True)
    ranking = summary["ranking"].iloc[0] if len(summary) else ""
    protocol_info = {"protocol": protocol, "test_ratio": None if protocol in ("predefined", "kfold",
                                                                              "leave_last_out")
                     else test_ratio, "seed": seed, "k": k, "ranking": ranking,
                     "n_folds": n_folds if protocol == "kfold" else None,
                     "n_train": int(sum(len(t) for t, _ in folds)),
                     "n_test": int(sum(len(t) for _, t in folds)),
                     "n_users": len(dataset.user_ids), "n_items": len(dataset.item_ids),
                     "users_averaged": users, **test_only,
                     "tuned_on": "predefined validation split" if validation_df is not None else None,
                     "tuning_metric": f"ndcg@{k}" if validation_df is not None else None,
                     "n_validation": None if validation_df is None else int(len(validation_df)),
                     "item_features": None if feats is None else [list(f.shape) for f in feats],
                     "item_features_not_used_by": no_feats or None,
                     "catalog": ("items of the train and test rows" if len(dataset.item_ids) == n_logged_items
                                 else f"{n_logged_items} items of the train and test rows + "
                                      f"{len(dataset.item_ids) - n_logged_items} rows of the .npy item "
                                      "features without an interaction (ranked too)"),
                     "filters": "training items removed from every list; users without test items "
                                "excluded and counted; ties broken by item index (lower first)"}
    return {"protocol": protocol_info, "summary": summary, "per_user": per_user_df,
            "trained": trained, "test_df": all_test, "dataset": dataset, "lists": lists}


def open_encoder_for_index(index, *, device: str = "auto"):
    """Load the encoder an index was built with (model, pretrained tag/path, precision, seed).

    Raises
    ------
    ValueError
        If the index manifest records no encoder (it was built from vectors of unknown origin).
    """
    from embeddings.encoders.open_clip import load_encoder

    enc = getattr(index, "encoder", None)
    if not enc:
        raise ValueError("this index records no encoder, so text queries cannot be encoded; "
                         "rebuild it from an embedding folder made by `recsys embed`")
    return load_encoder(enc["model"], resolve_pretrained(enc["model"], enc["pretrained"]), device=device, precision=enc.get("precision", "fp32"),
                        seed=int(enc.get("seed") or 0), text_tower=enc.get("text_tower"))


@dataclass
class QueryOutcome:
    """Results of one text query: confidence, whether backfill ran, the ranked results."""

    query: str
    confidence: float
    threshold: float | None
    triggered: bool
    results: list = field(default_factory=list)
    generated: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"query": self.query, "confidence": self.confidence, "threshold": self.threshold,
                "backfill_triggered": self.triggered, "generated": self.generated, "results": self.results,
                "seconds": self.seconds}


def validate_query(text) -> str:
    """Return ``text`` stripped; raise ``ValueError`` for a non-string, empty or whitespace-only query."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"query text {text!r} is empty; pass a description such as --text \"a dog on a beach\"")
    return text.strip()


def rank_with_collab(results: list[dict], *, rrf_k: float = 60.0) -> list[dict]:
    """Rank one query's results, real and synthetic alike, by retrieval and collaborative evidence.

    The retrieval order (cosine to the query) and the collaborative order (``collab_score``,
    from a hybrid cold-start ranker; synthetic clips get theirs through the content-to-factor
    mapping) are fused by reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009,
    ``rrf_k`` = 60 as in the paper). A result without ``collab_score`` (an item the ranker has
    never seen) gets only its retrieval contribution.

    Parameters
    ----------
    results : list of dict
        Records with ``rank`` (1-based retrieval rank), ``score`` and optionally ``collab_score``.

    Returns
    -------
    list of dict
        The same records, re-ordered by ``fused_score`` (descending; ties by retrieval rank),
        each with ``retrieval_rank``, ``collab_rank`` (or None), ``fused_score`` and the new ``rank``.
    """
    if not results:
        return results
    collab = sorted((i for i, r in enumerate(results) if r.get("collab_score") is not None),
                    key=lambda i: (-float(results[i]["collab_score"]), i))
    collab_rank = {i: pos + 1 for pos, i in enumerate(collab)}
    for i, r in enumerate(results):
        r["retrieval_rank"] = int(r.get("rank", i + 1))
        r["collab_rank"] = collab_rank.get(i)
        fused = 1.0 / (rrf_k + r["retrieval_rank"])
        if r["collab_rank"] is not None:
            fused += 1.0 / (rrf_k + r["collab_rank"])
        r["fused_score"] = fused
    ranked = sorted(results, key=lambda r: (-r["fused_score"], r["retrieval_rank"]))
    for pos, r in enumerate(ranked):
        r["rank"] = pos + 1
    return ranked


def run_queries(texts, index, encoder, *, k=5, backfill="none", threshold=None, out_dir=None, emb_dir=None,
                n_generate=1, generate_kwargs=None, calibration=None, max_synthetic=None,
                exclude_synthetic=False, ranker=None, user_id=None, backend_options=None,
                budget=None) -> list[QueryOutcome]:
    """Answer text queries against ``index``; synthesise clips for low-confidence ones.

    Parameters
    ----------
    texts : list of str
        Queries; each must be non-empty.
    index : embeddings.index.video_index.VideoIndex
    encoder : embeddings.encoders.open_clip.ClipEncoder
        Must be the encoder the index was built with.
    k : int
        Results per query.
    backfill : str
        ``"none"`` (search only) or a registered backend name (``"montage"``, ``"diffusers"``).
    threshold : float or None
        Confidence gate: 1.0 always generates, 0.0 never; None uses the calibrated threshold
        when ``calibration`` is given, else the encoder's default.
    out_dir : path-like
        Where generated clips are written (``out_dir/synthetic``); required with a backend.
    emb_dir : path-like
        Embedding folder whose frame embeddings are the montage backend's shots.
    n_generate : int
        Clips per triggered query.
    generate_kwargs : dict
        ``num_frames``, ``height``, ``width``, ``fps``, ``seed``, ... for the backend.
    calibration : tuple or None
        ``(Calibrator, threshold, info)`` from :func:`generation.calibration.load_calibration`:
        confidence becomes the calibrated P(top-1 relevant).
    max_synthetic : int or None
        At most this many synthetic items per result list.
    exclude_synthetic : bool
        No synthetic items in result lists.
    ranker : recsys.ranking.artifacts.TrainedModel or None
        A fitted model with ``item_factors_from_embeddings`` (``HybridColdStart``): every result
        gets ``collab_score`` = user factor . item factor (synthetic items through the cold-start
        mapping), the user being ``user_id`` or, without one, the mean user factor, and the list
        is re-ranked by :func:`rank_with_collab` (retrieval and collaborative orders fused).
    user_id : str or None
        External user id for ``ranker``.
    backend_options : dict or None
        Constructor keywords of the backend (diffusers: ``pipeline``, ``model``, ``device``,
        ``precision``, ``cpu_offload``).
    budget : generation.cache.GenerationBudget or None
        Per-query / per-run caps and per-generation timeout.

    Returns
    -------
    list of QueryOutcome
    """
    from generation.backfill import backfill as run_backfill
    from generation.confidence import confidence_features, confidence_score
    from generation.results import limited_search, synthetic_ids

    texts = [validate_query(t) for t in texts]
    calibrator, cal_threshold = (calibration[0], calibration[1]) if calibration else (None, None)
    if threshold is None and cal_threshold is not None:
        threshold = cal_threshold
    max_syn = 0 if exclude_synthetic else max_synthetic
    scorer = None
    if ranker is not None:
        model = ranker.model
        if not hasattr(model, "item_factors_from_embeddings"):
            raise ValueError(f"ranker {type(model).__name__} cannot score new items from content; "
                             "train a hybrid cold-start model (recsys train --model hybrid)")
        if user_id is None:
            user_vec = np.asarray(model.user_factors_, dtype=np.float64).mean(axis=0)
        else:
            hits = np.flatnonzero(np.asarray(ranker.user_ids).astype(str) == str(user_id))
            if not len(hits):
                raise ValueError(f"user_id={user_id!r} is not in the ranker's training data")
            user_vec = np.asarray(model.user_factors_[hits[0]], dtype=np.float64)

        def scorer(embeddings):
            return np.asarray(model.item_factors_from_embeddings(embeddings), np.float64) @ user_vec

        item_pos = {str(v): i for i, v in enumerate(ranker.item_ids)}
        real_scores = np.asarray(model.item_factors_, dtype=np.float64) @ user_vec

    def add_collab(recs):
        if scorer is None:
            return recs
        for r in recs:
            prov = r.get("provenance") or {}
            if r.get("synthetic") and "collab_score" in prov:
                r["collab_score"] = prov["collab_score"]
            elif str(r["video_id"]) in item_pos:
                r["collab_score"] = float(real_scores[item_pos[str(r["video_id"])]])
        return rank_with_collab(recs)

    if backfill in (None, "none"):
        outcomes = []
        for text in texts:
            t0 = time.perf_counter()
            q = encoder.encode_text([text])
            t1 = time.perf_counter()
            res = index.search(q, k, exclude_ids=synthetic_ids(index))
            feats = confidence_features(res.scores)
            conf = float(calibrator.predict(feats)[0] if calibrator is not None else confidence_score(feats)[0])
            shown = limited_search(index, q, k, max_synthetic=max_syn)
            t2 = time.perf_counter()
            recs = add_collab(shown.to_records(index.metadata)[0])
            outcomes.append(QueryOutcome(text, conf, threshold, False, recs,
                                         seconds={"encode": t1 - t0, "search": t2 - t1}))
        return outcomes

    from generation.backends import get_backend

    if out_dir is None:
        raise ValueError("backfill needs an output folder for generated clips (out_dir)")
    kwargs = dict(backend_options or {})
    if backfill == "montage":
        from embeddings.store import EmbeddingFolder

        if emb_dir is None:
            raise ValueError("the montage backend needs the embedding folder (its frames are the shots)")
        shots, shot_emb = EmbeddingFolder.open(emb_dir).load_frames()
        kwargs.update(shots=shots, shot_embeddings=shot_emb, encode_text=encoder.encode_text)
    backend = get_backend(backfill, **kwargs)
    outcomes = []
    for text in texts:
        r = run_backfill(text, encoder=encoder, index=index, backend=backend, out_dir=Path(out_dir), k=k,
                         threshold=threshold, n_generate=n_generate, generate_kwargs=generate_kwargs or {},
                         calibrator=calibrator, max_synthetic=max_syn, score_synthetic=scorer,
                         budget=budget)
        outcomes.append(QueryOutcome(text, float(r.confidence), r.threshold, bool(r.triggered),
                                     add_collab(r.results), list(r.generated), dict(r.timings)))
    return outcomes
