"""Generative backfill: when a text query's retrieval is weak, synthesise clips and index them.

Flow of :func:`backfill`: encode the query -> search the index -> confidence of the top-k
(:mod:`generation.confidence`) -> if under the threshold, generate ``n_generate`` clips
(seeds 0..n-1, or counting up from ``generate_kwargs["seed"]``) with the backend, write
each as ``out_dir/synthetic/<synthetic_id>.mp4`` (+ ``.json`` provenance), embed it with the
SAME encoder as the index (sampled frames -> ``encode_images`` -> ``pool_frames``), add it to
the index as a ``synthetic`` item (every synthetic clip is a cold-start item), and search
again. The merged results say which items are synthetic and carry their provenance.

Confidence is computed on REAL items only (synthetic ids excluded from the first search), the
population a :class:`~generation.confidence.Calibrator` is fitted on. ``max_synthetic`` /
``exclude_synthetic`` limit synthetic items in the returned list (:func:`generation.results.limited_search`).
``score_synthetic`` is the hook through which a recommender (e.g. recsys' hybrid cold-start
model mapping content embeddings to collaborative item factors) gives each new synthetic item
a collaborative score; ``generation`` never imports ``recsys``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embeddings._io import write_json

from .backends.base import Backend, resolve_settings
from .cache import GenerationBudget, GenerationCache, GenerationTimeout, cache_key, run_generation
from .confidence import (
    _check_threshold,
    confidence_features,
    confidence_score,
    default_threshold,
    needs_backfill,
)
from .results import limited_search, synthetic_ids

__all__ = ["BackfillResult", "backfill", "synthetic_id_for"]

logger = logging.getLogger(__name__)

SYNTHETIC_PREFIX = "synthetic-"


@dataclass
class BackfillResult:
    """Outcome of :func:`backfill`.

    Attributes
    ----------
    query : str
    confidence : float
        Confidence in [0, 1] of the retrieval BEFORE backfill.
    threshold : float
    triggered : bool
        Whether ``confidence`` was under ``threshold`` (generation attempted).
    results : list of dict
        Final top-k, one dict per hit: ``rank`` (1-based), ``video_id``, ``score`` (cosine),
        ``synthetic`` (bool), ``provenance`` (dict for synthetic items: prompt, backend, seed,
        source_shots, path; None for real items), plus the index metadata of real items.
    generated : list of str
        Synthetic ids added to the index by this call.
    reused : list of str
        Synthetic ids already in the index (same request as an earlier call; not re-added).
    skipped : list of str
        Reasons for generations skipped by the budget.
    features : dict
        The confidence features of the first search (:func:`confidence_features` row).
    timings : dict
        Seconds per stage: ``encode_query``, ``search``, ``generate``, ``encode_synthetic``,
        ``index_add``, ``search_after``, ``total``.
    """

    query: str
    confidence: float
    threshold: float
    triggered: bool
    results: list[dict]
    generated: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    features: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


def synthetic_id_for(key: str) -> str:
    """``"synthetic-"`` + the first 12 hex characters of a :func:`cache_key`."""
    return SYNTHETIC_PREFIX + key[:12]


def backfill(
    query: str,
    *,
    encoder: Any,
    index: Any,
    backend: Backend,
    out_dir: str | os.PathLike,
    k: int = 10,
    threshold: float | None = None,
    n_generate: int = 1,
    generate_kwargs: dict | None = None,
    cache: GenerationCache | None = None,
    budget: GenerationBudget | None = None,
    n_sample_frames: int = 8,
    calibrator: Any = None,
    max_synthetic: int | None = None,
    exclude_synthetic: bool = False,
    score_synthetic: Any = None,
) -> BackfillResult:
    """Search ``index`` for ``query``; generate and index synthetic clips if confidence is low.

    Parameters
    ----------
    query : str
        Text query; also the generation prompt.
    encoder : ClipEncoder
        The encoder the index was built with (``encode_text``, ``encode_images``, ``describe``).
    index : VideoIndex
        Searched, and mutated: synthetic clips are added with metadata columns ``synthetic``
        (True), ``prompt``, ``backend``, ``seed``, ``source_shots`` (JSON string) and ``path``.
    backend : Backend
    out_dir : path-like
        Synthetic clips go to ``out_dir/synthetic/<synthetic_id>.mp4`` (+ ``.json``).
    k : int
        Results per search, >= 1.
    threshold : float or None
        Confidence threshold in [0, 1]; 1.0 always generates, 0.0 never. None:
        :func:`~generation.confidence.default_threshold` of ``encoder.describe()``.
    n_generate : int
        Clips to generate when triggered, >= 1, with seeds ``seed .. seed + n_generate - 1``.
    generate_kwargs : dict or None
        :meth:`Backend.generate` keywords; ``seed`` (default 0) is the first seed.
    cache : GenerationCache or None
        When given, a request generated before is copied from the cache instead.
    budget : GenerationBudget or None
        Caps generations (charged to ``query``); with ``on_exceeded="skip"`` the reasons land
        in ``BackfillResult.skipped``.
    n_sample_frames : int
        Frames sampled from each synthetic mp4 to embed it.
    calibrator : Calibrator or None
        When given, the confidence is ``calibrator.predict(features)`` (P(top-1 relevant)),
        else the raw top-1 cosine (:func:`~generation.confidence.confidence_score`).
    max_synthetic : int or None
        At most this many synthetic items in ``results`` (None: no limit).
    exclude_synthetic : bool
        No synthetic item in ``results`` (same as ``max_synthetic=0``; generation still runs
        and the clips are still added to the index).
    score_synthetic : callable or None
        ``f(embeddings: float32 (n, d)) -> (n,) float`` collaborative scores of new synthetic
        items (e.g. a hybrid cold-start mapping to item factors); stored as the metadata column
        ``collab_score`` and returned in their provenance.

    Returns
    -------
    BackfillResult

    Raises
    ------
    ValueError
        Invalid ``query``, ``k``, ``n_generate``, ``threshold`` or ``generate_kwargs``, or
        backend argument errors (raised before anything is written).
    BudgetExceeded
        When the budget is spent and its ``on_exceeded == "raise"``.
    GenerationTimeout
        When a generation runs over ``budget.timeout_s`` and ``on_exceeded == "raise"``.
    """
    t_total = time.perf_counter()
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query={query!r}: expected a non-empty string")
    if max_synthetic is not None and (isinstance(max_synthetic, bool) or not isinstance(
            max_synthetic, (int, np.integer)) or max_synthetic < 0):
        raise ValueError(f"max_synthetic={max_synthetic!r}: expected None or an integer >= 0")
    if score_synthetic is not None and not callable(score_synthetic):
        raise ValueError(f"score_synthetic={score_synthetic!r}: expected a callable (n, d) -> (n,)")
    max_synthetic = 0 if exclude_synthetic else max_synthetic
    for arg, value in (("k", k), ("n_generate", n_generate), ("n_sample_frames", n_sample_frames)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg}={value!r}: expected an integer >= 1")
    generate_kwargs = dict(generate_kwargs or {})
    base_seed = generate_kwargs.pop("seed", 0)
    # unknown keys and bad values (seed included) fail here, before any search or write
    backend.check_inputs(query, **resolve_settings({**generate_kwargs, "seed": base_seed}))
    threshold = default_threshold(encoder.describe()) if threshold is None else _check_threshold(threshold)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    q = np.asarray(encoder.encode_text([query]), dtype=np.float32)
    timings["encode_query"] = time.perf_counter() - t
    t = time.perf_counter()
    syn_before = synthetic_ids(index)
    before = index.search(q, k=k, exclude_ids=syn_before)
    timings["search"] = time.perf_counter() - t
    features = confidence_features(before.scores, _result_embeddings(index, before))
    if calibrator is not None:
        confidence = float(np.asarray(calibrator.predict(features), dtype=np.float64)[0])
    else:
        confidence = float(confidence_score(features.iloc[0]))
    triggered = bool(needs_backfill(confidence, threshold))
    logger.info("backfill %r: confidence %.4f, threshold %.4f -> %s", query, confidence,
                threshold, "generate" if triggered else "no generation")

    generated, reused, skipped = [], [], []
    timings.update(generate=0.0, encode_synthetic=0.0, index_add=0.0)
    if triggered:
        # absolute: the path is stored in the index and must resolve from any working folder
        syn_dir = Path(out_dir).resolve() / "synthetic"
        syn_dir.mkdir(parents=True, exist_ok=True)
        present = set(index.metadata["video_id"].astype(str))
        for seed in range(base_seed, base_seed + n_generate):
            kwargs = {**generate_kwargs, "seed": seed}
            key = cache_key(query, backend, kwargs, seed)
            sid = synthetic_id_for(key)
            if sid in present:
                reused.append(sid)
                continue
            mp4 = syn_dir / f"{sid}.mp4"
            t = time.perf_counter()
            clip = _make_clip(backend, query, kwargs, key, mp4, cache, budget, skipped)
            timings["generate"] += time.perf_counter() - t
            if clip is None:
                continue
            provenance = {**clip.provenance, "synthetic_id": sid, "cache_key": key, "path": str(mp4)}
            write_json(mp4.with_suffix(".json"), provenance)
            t = time.perf_counter()
            emb = _embed_clip(encoder, mp4, n_sample_frames)
            timings["encode_synthetic"] += time.perf_counter() - t
            t = time.perf_counter()
            row = {"video_id": sid, "synthetic": True, "prompt": query,
                   "backend": str(provenance.get("backend", backend.name)), "seed": int(seed),
                   "source_shots": json.dumps(provenance.get("source_shots", [])), "path": str(mp4)}
            if score_synthetic is not None:
                collab = np.asarray(score_synthetic(emb[None, :]), dtype=np.float64).ravel()
                if collab.shape != (1,) or not np.isfinite(collab).all():
                    raise ValueError(f"score_synthetic returned {collab!r} for one item; expected "
                                     "one finite score per row")
                row["collab_score"] = float(collab[0])
            meta = pd.DataFrame([row])
            index.add(emb[None, :], [sid], metadata=meta)
            timings["index_add"] += time.perf_counter() - t
            present.add(sid)
            generated.append(sid)

    t = time.perf_counter()
    if not (generated or reused) and (not syn_before or max_synthetic == 0):
        after = before  # nothing synthetic to show: the first search is the answer
    else:
        after = limited_search(index, q, k, max_synthetic=max_synthetic)
    timings["search_after"] = time.perf_counter() - t
    results = _records(index, after)
    timings["total"] = time.perf_counter() - t_total
    feats = {c: (v.item() if hasattr(v, "item") else v) for c, v in features.iloc[0].items()}
    return BackfillResult(query=query, confidence=confidence, threshold=threshold,
                          triggered=triggered, results=results, generated=generated, reused=reused,
                          skipped=skipped, features=feats, timings=timings)


def _make_clip(backend, query, kwargs, key, mp4, cache, budget, skipped):
    """Generate (or fetch from the cache) and write ``mp4``; None when the budget skips it."""
    if cache is not None:
        outcome = cache.get_or_generate(backend, query, query=query, budget=budget, **kwargs)
        if outcome.clip is None:
            skipped.append(outcome.skipped_reason)
            return None
        cache.copy_to(outcome.key, mp4)
        return outcome.clip
    timeout_s = None
    if budget is not None:
        reason = budget.check(query)
        if reason is not None:
            skipped.append(reason)
            return None
        timeout_s = budget.timeout_s
    from embeddings.video.write import write_video

    try:
        clip = run_generation(backend, query, timeout_s=timeout_s, **kwargs)
    except GenerationTimeout as exc:
        budget.charge(query)  # only reachable with a budget (timeout_s comes from it)
        if budget.on_exceeded == "raise":
            raise
        skipped.append(str(exc))
        return None
    if budget is not None:
        budget.charge(query)
    write_video(mp4, clip.frames, clip.fps)
    return clip


def _embed_clip(encoder, mp4: Path, n_sample_frames: int) -> np.ndarray:
    """Video embedding (d,) float32 of the written mp4, as the embedding job would compute it."""
    from embeddings.encoders.open_clip import pool_frames
    from embeddings.video.decode import sample_frames

    sampled = sample_frames(mp4, n_frames=n_sample_frames)
    return np.asarray(pool_frames(encoder.encode_images(sampled.frames)), dtype=np.float32)


def _result_embeddings(index, result) -> np.ndarray | None:
    """(1, k, d) embeddings of the hits for the coherence feature; None if unavailable."""
    ids = result.ids[0]
    valid = [str(i) for i in ids if i is not None]
    if not valid:
        return None
    try:
        vecs = np.asarray(index.reconstruct(valid), dtype=np.float32)
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        logger.info("coherence feature unavailable: index cannot reconstruct vectors (%s)", exc)
        return None
    out = np.zeros((1, len(ids), vecs.shape[1]), dtype=np.float32)
    out[0, [j for j, i in enumerate(ids) if i is not None]] = vecs
    return out


def _records(index, result) -> list[dict]:
    """Flatten the first query's hits into dicts with synthetic flags and provenance."""
    meta = index.metadata.set_index(index.metadata["video_id"].astype(str), drop=False)
    records = []
    for rank, (vid, score) in enumerate(zip(result.ids[0], result.scores[0], strict=True), start=1):
        if vid is None or not np.isfinite(score):
            continue
        row = meta.loc[str(vid)].to_dict() if str(vid) in meta.index else {"video_id": str(vid)}
        flag = row.get("synthetic")
        synthetic = flag is not None and not _isnan(flag) and bool(flag)
        rec = {"rank": rank, "video_id": str(vid), "score": float(score), "synthetic": bool(synthetic)}
        if synthetic:
            rec["provenance"] = {"prompt": row.get("prompt"), "backend": row.get("backend"),
                                 "seed": _int_or_none(row.get("seed")),
                                 "source_shots": json.loads(row.get("source_shots") or "[]"),
                                 "path": row.get("path")}
            if row.get("collab_score") is not None and not _isnan(row.get("collab_score")):
                rec["provenance"]["collab_score"] = float(row["collab_score"])
        else:
            rec["provenance"] = None
            for col, value in row.items():
                if col in rec or col in ("synthetic", "prompt", "backend", "seed", "source_shots",
                                         "collab_score"):
                    continue
                if not _isnan(value):
                    rec[col] = value.item() if isinstance(value, np.generic) else value
        records.append(rec)
    return records


def _isnan(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _int_or_none(value):
    return None if value is None or _isnan(value) else int(value)
