"""One library function per pipeline stage; the CLI subcommands and ``recsys run`` both call these.

Each function takes plain values (paths, names, numbers), does one stage, writes its outputs
atomically and returns what it made. None reads ``sys.argv`` or the environment.
"""

from __future__ import annotations

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


def resolve_pretrained(model: str, pretrained: str | None) -> str | None:
    """The ``pretrained`` argument for :func:`embeddings.encoders.load_encoder`.

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
                  storage_dtype="float32"):
    """Stage 1+2: sample frames of every clip in ``videos`` and encode them into ``out``.

    ``sampler`` (an :class:`embeddings.sampling.FrameSampler`) replaces uniform ``frames``;
    ``batch_size=None`` picks one that fits memory. Returns ``(encoder, JobSummary)``. Raises what
    :func:`embeddings.job.discover_inputs`, :func:`embeddings.encoders.load_encoder` and
    :func:`embeddings.job.run_embedding_job` raise.
    """
    from embeddings.encoders import load_encoder
    from embeddings.job import discover_inputs, run_embedding_job

    inputs = discover_inputs(videos, captions)
    encoder = load_encoder(model, resolve_pretrained(model, pretrained), device=device, precision=precision,
                           seed=seed)
    if sampler is None:
        from embeddings.sampling import FrameSampler

        sampler = FrameSampler("uniform", n_frames=frames)
    summary = run_embedding_job(inputs, encoder, out, sampler=sampler, shard_size=shard_size,
                                batch_size=batch_size, num_workers=num_workers, max_side=max_side,
                                executor=executor, storage_dtype=storage_dtype, progress=progress)
    return encoder, summary


def build_index(emb_dir: str | os.PathLike, out: str | os.PathLike, *, factory: str | None = "Flat",
                metric: str = "ip", max_memory: str | None = None):
    """Stage 3: a FAISS index over the video embeddings of ``emb_dir``, saved to ``out``.

    Returns the :class:`embeddings.index.VideoIndex`. Raises ``EmbeddingFolderError`` if the
    folder is unfinished, ``ValueError`` if it holds no embedded video.
    """
    from embeddings.index import VideoIndex, choose_factory, parse_size
    from embeddings.store import EmbeddingFolder

    folder = EmbeddingFolder.open(emb_dir)
    meta, emb = folder.load_videos()
    if len(meta) == 0:
        raise ValueError(f"{emb_dir} holds no embedded video (see its errors.parquet); nothing to index")
    if factory in (None, "auto"):
        budget = parse_size(max_memory) if max_memory else None
        ranked = choose_factory(len(meta), emb.shape[1], max_memory_bytes=budget, metric=metric)
        factory, reason = ranked[0]
        log.info("automatic index choice: %s (%s)", factory, reason)
    cols = [c for c in INDEX_META_COLUMNS if c in meta.columns]
    extra = [c for c in meta.columns if c not in cols and c not in
             ("fps", "width", "height", "frame_offset", "frame_timestamps_s", "row", "error")]
    md = meta[cols + extra].reset_index(drop=True).copy()
    md["synthetic"] = False
    index = VideoIndex.build(emb, md["video_id"].tolist(), metadata=md, factory_string=factory,
                             metric=metric, encoder=folder.encoder)
    index.save(out)
    return index


def split_interactions(df: pd.DataFrame, protocol: str, *, test_ratio: float = 0.2, seed: int = 42):
    """Split an interaction log by a named protocol into ``(train_df, test_df)``.

    Protocols: ``random_holdout`` (per user, ``test_ratio`` held out), ``leave_last_out``
    (latest interaction per user), ``stratified`` (Microsoft Recommenders'
    ``python_stratified_split`` per user with ratio ``1 - test_ratio``), ``temporal`` (global
    cut at the ``1 - test_ratio`` time quantile).

    Raises
    ------
    ValueError
        Unknown protocol (lists the valid ones), or a time-based protocol on a log without timestamps.
    """
    from recsys import splits

    if protocol in ("leave_last_out", "temporal") and ("timestamp" not in df.columns or df["timestamp"].isna().all()):
        raise ValueError(f"protocol {protocol!r} needs a timestamp column; the interaction log has none. "
                         "Use --protocol random_holdout or stratified.")
    if protocol == "random_holdout":
        return splits.random_holdout(df, test_ratio, seed=seed)
    if protocol == "leave_last_out":
        return splits.leave_last_out(df)
    if protocol == "stratified":
        return splits.stratified_split(df, 1.0 - test_ratio, filter_by="user", seed=seed)
    if protocol == "temporal":
        return splits.temporal_split(df, quantile=1.0 - test_ratio)
    raise ValueError(f"protocol={protocol!r}: expected one of random_holdout, leave_last_out, stratified, temporal")


def train_model(df: pd.DataFrame, name: str, params: dict | None = None, *, dataset=None, source: str | None = None,
                **options):
    """Fit model ``name`` on the interactions ``df``; returns a :class:`recsys.artifacts.TrainedModel`.

    ``dataset`` (a :class:`recsys.data.Dataset`) fixes the id maps, so that a model trained on a
    split shares its indices with the test matrix; by default it is built from ``df``.
    ``options`` (``tune``, ``grid``, ``item_embeddings``, ``two_stage``, ``seed``) go to
    :func:`recsys.training.train_ranker` (validation-chosen hyperparameters, content models,
    two-stage settings).
    """
    from recsys.artifacts import TrainedModel
    from recsys.data import build_dataset
    from recsys.models import make_model

    if options or name in ("trending", "content", "hybrid"):
        from recsys.training import train_ranker

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


def recommend_users(tm, user_ids=None, *, k: int = 10, batch_size: int = 4096, two_stage: bool | None = None
                    ) -> pd.DataFrame:
    """Top-``k`` unseen items for ``user_ids`` (all users when None) as a long table.

    ``two_stage`` True (or None with a model trained ``--two-stage``) serves through
    :func:`recsys.training.recommend_two_stage` instead: extra columns ``sources``,
    ``long_term_interest``, ``fallback``, and unknown users get the stated popularity fallback.

    Returns
    -------
    pandas.DataFrame
        ``user_id, rank (1-based), item_id, score``; users with fewer than ``k`` unseen items
        get fewer rows (padding dropped).

    Raises
    ------
    KeyError
        For a user id not in the training data.
    """
    if two_stage or (two_stage is None and tm.info.get("two_stage")):
        from recsys.training import recommend_two_stage

        return recommend_two_stage(tm, user_ids, k=k)
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


def evaluate_models(df: pd.DataFrame, models: list[str], *, protocol: str = "random_holdout",
                    test_ratio: float = 0.2, seed: int = 42, k: int = 10, metrics=None,
                    params: dict | None = None):
    """Split ``df`` by ``protocol``, fit each model on the train split, evaluate on the test split.

    Full ranking over all items, training items removed; users without test items are
    excluded and counted.

    Returns
    -------
    dict
        ``{"protocol": {...}, "summary": DataFrame (one row per model: metric means, fit and
        evaluation seconds), "per_user": DataFrame (model, user_id, metric columns),
        "trained": {name: TrainedModel}}``.
    """
    from recsys.data import build_dataset
    from recsys.evaluation import evaluate

    metrics = tuple(metrics or ("precision", "recall", "ndcg", "map", "mrr", "hit_rate"))
    train_df, test_df = split_interactions(df, protocol, test_ratio=test_ratio, seed=seed)
    dataset = build_dataset(df)
    test_ui = dataset.to_user_items(test_df)
    rows, per_user, trained = [], [], {}
    for name in models:
        tm = train_model(train_df, name, (params or {}).get(name), dataset=dataset)
        t0 = time.perf_counter()
        res = evaluate(tm.model, tm.user_items, test_ui, k=k, metrics=metrics)
        eval_s = time.perf_counter() - t0
        trained[name] = tm
        rows.append({"model": name, **res.summary, "n_users": res.n_users_evaluated,
                     "n_users_without_test_items": res.n_users_skipped_no_test,
                     "fit_seconds": tm.info["fit_seconds"], "evaluate_seconds": round(eval_s, 4)})
        pu = res.per_user.copy()
        pu.insert(0, "model", name)
        pu.insert(1, "user_id", tm.user_ids[pu["user_index"].to_numpy()])
        per_user.append(pu)
    protocol_info = {"protocol": protocol, "test_ratio": test_ratio, "seed": seed, "k": k,
                     "ranking": "full ranking over all items, training items removed",
                     "n_train": len(train_df), "n_test": len(test_df), "n_users": len(dataset.user_ids),
                     "n_items": len(dataset.item_ids)}
    return {"protocol": protocol_info, "summary": pd.DataFrame(rows),
            "per_user": pd.concat(per_user, ignore_index=True), "trained": trained}


def open_encoder_for_index(index, *, device: str = "auto"):
    """Load the encoder an index was built with (model, pretrained tag/path, precision, seed).

    Raises
    ------
    ValueError
        If the index manifest records no encoder (it was built from vectors of unknown origin).
    """
    from embeddings.encoders import load_encoder

    enc = getattr(index, "encoder", None)
    if not enc:
        raise ValueError("this index records no encoder, so text queries cannot be encoded; "
                         "rebuild it from an embedding folder made by `recsys embed`")
    return load_encoder(enc["model"], resolve_pretrained(enc["model"], enc["pretrained"]), device=device, precision=enc.get("precision", "fp32"),
                        seed=int(enc.get("seed") or 0))


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


def run_queries(texts, index, encoder, *, k=5, backfill="none", threshold=None, out_dir=None, emb_dir=None,
                n_generate=1, generate_kwargs=None) -> list[QueryOutcome]:
    """Answer text queries against ``index``; synthesise clips for low-confidence ones.

    Parameters
    ----------
    texts : list of str
        Queries; each must be non-empty.
    index : embeddings.index.VideoIndex
    encoder : embeddings.encoders.ClipEncoder
        Must be the encoder the index was built with.
    k : int
        Results per query.
    backfill : str
        ``"none"`` (search only) or a registered backend name (``"montage"``).
    threshold : float or None
        Confidence gate: 1.0 always generates, 0.0 never; None uses the encoder's default.
    out_dir : path-like
        Where generated clips are written (``out_dir/synthetic``); required with a backend.
    emb_dir : path-like
        Embedding folder whose frame embeddings are the montage backend's shots.
    n_generate : int
        Clips per triggered query.
    generate_kwargs : dict
        ``num_frames``, ``height``, ``width``, ``fps``, ``seed`` for the backend.

    Returns
    -------
    list of QueryOutcome
    """
    from generation.confidence import confidence_features, confidence_score

    texts = [validate_query(t) for t in texts]
    if backfill in (None, "none"):
        outcomes = []
        for text in texts:
            t0 = time.perf_counter()
            q = encoder.encode_text([text])
            t1 = time.perf_counter()
            res = index.search(q, k)
            t2 = time.perf_counter()
            conf = float(confidence_score(confidence_features(res.scores))[0])
            recs = res.to_records(index.metadata)[0]
            outcomes.append(QueryOutcome(text, conf, threshold, False, recs,
                                         seconds={"encode": t1 - t0, "search": t2 - t1}))
        return outcomes

    from generation.backends import get_backend
    from generation.backfill import backfill as run_backfill

    if out_dir is None:
        raise ValueError("backfill needs an output folder for generated clips (out_dir)")
    kwargs = {}
    if backfill == "montage":
        from embeddings.store import EmbeddingFolder

        if emb_dir is None:
            raise ValueError("the montage backend needs the embedding folder (its frames are the shots)")
        shots, shot_emb = EmbeddingFolder.open(emb_dir).load_frames()
        kwargs = {"shots": shots, "shot_embeddings": shot_emb, "encode_text": encoder.encode_text}
    backend = get_backend(backfill, **kwargs)
    outcomes = []
    for text in texts:
        r = run_backfill(text, encoder=encoder, index=index, backend=backend, out_dir=Path(out_dir), k=k,
                         threshold=threshold, n_generate=n_generate, generate_kwargs=generate_kwargs or {})
        outcomes.append(QueryOutcome(text, float(r.confidence), r.threshold, bool(r.triggered), r.results,
                                     list(r.generated), dict(r.timings)))
    return outcomes
