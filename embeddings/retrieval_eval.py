"""Text-video retrieval metrics as the MSR-VTT literature reports them: R@K, median and mean rank.

Pure functions on similarity matrices; no files, no models.

Conventions
-----------
* Similarity matrices are ``sim[i, j]`` = score of caption ``i`` against video ``j``, shape
  ``(n_captions, n_videos)``, higher = more similar (cosine for L2-normalised embeddings).
* ``caption_video[i]`` is the column (video row) that caption ``i`` describes. Several captions
  may describe one video; every caption is then its own text-to-video query.
* Ranks are 1-based. The rank of a query is the rank of its best-ranked correct item: for
  text-to-video the single ground-truth video; for video-to-text the best of the video's
  captions (as in the multi-caption protocol of MSR-VTT / CLIP4Clip ``compute_metrics``,
  Luo et al. 2021, which takes the first correct hit).
* Ties are broken **pessimistically** by default: every wrong candidate whose score equals the
  correct item's score is counted as ranked above it, so ``rank = 1 + #{wrong j: s_j >= s_pos}``.
  An encoder that outputs constant scores therefore gets the worst rank, never R@1 = 1 (the
  optimistic convention, ``1 + #{wrong j: s_j > s_pos}``, which CLIP4Clip's ``np.where(sx - d
  == 0)`` effectively uses, would reward it). ``ties="optimistic"`` is available for comparison.
  The result does not depend on the order of candidates, so it is deterministic.
* R@K is the fraction of queries with ``rank <= K`` (the literature prints it in percent),
  median rank is ``numpy.median`` of the ranks (mean of the two middle ranks for an even count),
  mean rank is their arithmetic mean.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "TIE_POLICIES",
    "ranks_from_scores",
    "text_to_video_ranks",
    "video_to_text_ranks",
    "retrieval_metrics",
    "max_over_frames",
    "chance_level",
]

TIE_POLICIES = ("pessimistic", "optimistic")
_BLOCK_ROWS = 1024


def _check_ties(ties: str) -> None:
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties={ties!r}: expected one of {TIE_POLICIES}; pessimistic counts equal-score "
                         "wrong items above the correct one (the default)")


def _check_scores(scores, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 2 or not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"{name} must be a numeric 2-D array (n_queries, n_candidates); got shape "
                         f"{s.shape} dtype {s.dtype}")
    if not np.isfinite(s).all():
        bad = np.flatnonzero(~np.isfinite(s).all(axis=1))
        raise ValueError(f"{name} has non-finite values in rows {bad[:10].tolist()}; re-encode those "
                         "items (fp16 overflow? use precision fp32)")
    return s


def ranks_from_scores(scores: np.ndarray, positives: np.ndarray, *, ties: str = "pessimistic") -> np.ndarray:
    """1-based rank of the best-ranked correct candidate of every query.

    Parameters
    ----------
    scores : numpy.ndarray
        Real ``(n_queries, n_candidates)``, higher is better, all finite.
    positives : numpy.ndarray
        bool ``(n_queries, n_candidates)``: True where the candidate is correct for the query;
        every query needs at least one.
    ties : {"pessimistic", "optimistic"}
        Pessimistic: ``rank = 1 + #{wrong j: scores[j] >= best correct score}``; optimistic uses
        ``>``. See the module notes.

    Returns
    -------
    numpy.ndarray
        int64 ``(n_queries,)``, values in ``1 .. n_candidates - n_correct + 1``.

    Raises
    ------
    ValueError
        On shapes that differ, non-finite scores, a query with no correct candidate, or an
        unknown ``ties``.
    """
    _check_ties(ties)
    s = _check_scores(scores)
    pos = np.asarray(positives)
    if pos.shape != s.shape or pos.dtype != bool:
        raise ValueError(f"positives must be a bool array of the scores' shape {s.shape}; got shape "
                         f"{pos.shape} dtype {pos.dtype}")
    empty = np.flatnonzero(~pos.any(axis=1))
    if empty.size:
        raise ValueError(f"queries {empty[:10].tolist()} have no correct candidate; every query needs one "
                         "(drop captions whose video is not among the candidates)")
    best = np.where(pos, s, -np.inf).max(axis=1)[:, None]
    above = (s >= best) if ties == "pessimistic" else (s > best)
    return 1 + (above & ~pos).sum(axis=1).astype(np.int64)


def _check_caption_video(caption_video, n_captions: int, n_videos: int) -> np.ndarray:
    cv = np.asarray(caption_video)
    if cv.shape != (n_captions,) or not np.issubdtype(cv.dtype, np.integer):
        raise ValueError(f"caption_video must be an integer array of shape ({n_captions},), one video row per "
                         f"caption; got shape {cv.shape} dtype {cv.dtype}")
    if n_captions and (cv.min() < 0 or cv.max() >= n_videos):
        raise ValueError(f"caption_video holds rows outside 0..{n_videos - 1} (min {cv.min()}, max {cv.max()}); "
                         "map every caption to a video that is a candidate")
    return cv.astype(np.int64)


def text_to_video_ranks(sim: np.ndarray, caption_video: np.ndarray, *, ties: str = "pessimistic") -> np.ndarray:
    """Rank of the ground-truth video for every caption query (text to video).

    Parameters
    ----------
    sim : numpy.ndarray
        ``(n_captions, n_videos)`` caption-video scores.
    caption_video : numpy.ndarray
        int ``(n_captions,)``: the video row each caption describes.
    ties : {"pessimistic", "optimistic"}

    Returns
    -------
    numpy.ndarray
        int64 ``(n_captions,)`` 1-based ranks among the ``n_videos`` candidates.

    Raises
    ------
    ValueError
        See :func:`ranks_from_scores`; also a ``caption_video`` of the wrong shape or range.
    """
    s = _check_scores(sim, "sim")
    cv = _check_caption_video(caption_video, s.shape[0], s.shape[1])
    out = np.empty(len(cv), dtype=np.int64)
    cols = np.arange(s.shape[1])
    for a in range(0, len(cv), _BLOCK_ROWS):
        b = min(a + _BLOCK_ROWS, len(cv))
        out[a:b] = ranks_from_scores(s[a:b], cv[a:b, None] == cols[None, :], ties=ties)
    return out


def video_to_text_ranks(sim: np.ndarray, caption_video: np.ndarray, *, ties: str = "pessimistic"):
    """Rank of the best-ranked own caption for every video query (video to text).

    Parameters
    ----------
    sim : numpy.ndarray
        ``(n_captions, n_videos)`` caption-video scores (the same matrix as text to video;
        it is read column-wise).
    caption_video : numpy.ndarray
        int ``(n_captions,)``.
    ties : {"pessimistic", "optimistic"}

    Returns
    -------
    video_rows : numpy.ndarray
        int64 ``(n_queries,)``: the videos that have at least one caption (the queries), ascending.
    ranks : numpy.ndarray
        int64 ``(n_queries,)`` 1-based ranks among the ``n_captions`` candidates.

    Raises
    ------
    ValueError
        As :func:`text_to_video_ranks`.
    """
    s = _check_scores(sim, "sim")
    cv = _check_caption_video(caption_video, s.shape[0], s.shape[1])
    videos = np.unique(cv)
    out = np.empty(len(videos), dtype=np.int64)
    st = s.T
    for a in range(0, len(videos), _BLOCK_ROWS):
        v = videos[a:a + _BLOCK_ROWS]
        out[a:a + len(v)] = ranks_from_scores(st[v], v[:, None] == cv[None, :], ties=ties)
    return videos, out


def retrieval_metrics(ranks: np.ndarray, ks=(1, 5, 10)) -> dict:
    """R@K, median rank and mean rank of 1-based ranks.

    Parameters
    ----------
    ranks : numpy.ndarray
        int ``(n_queries,)``, every value >= 1, n_queries >= 1.
    ks : sequence of int
        Cut-offs, each >= 1.

    Returns
    -------
    dict
        ``{"recall@K": fraction in [0, 1] of ranks <= K for each K, "median_rank": float,
        "mean_rank": float, "n_queries": int}``. The literature prints R@K in percent
        (multiply by 100); ``median_rank`` is ``numpy.median``.

    Raises
    ------
    ValueError
        On an empty array, non-integer ranks, a rank < 1, or a K < 1.
    """
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0 or not np.issubdtype(r.dtype, np.integer) or (r < 1).any():
        raise ValueError(f"ranks must be a non-empty 1-D integer array of 1-based ranks; got shape {r.shape} "
                         f"dtype {r.dtype}" + (f" with min {r.min()}" if r.size else ""))
    out = {}
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"ks holds {k!r}; every cut-off must be an integer >= 1")
        out[f"recall@{int(k)}"] = float(np.mean(r <= int(k)))
    out["median_rank"] = float(np.median(r))
    out["mean_rank"] = float(np.mean(r))
    out["n_queries"] = int(r.size)
    return out


def max_over_frames(text_embeddings: np.ndarray, frame_embeddings: np.ndarray, frame_video: np.ndarray,
                    n_videos: int) -> np.ndarray:
    """Frame-level scoring: each caption-video score is the maximum over the video's frames.

    ``score(t, v) = max_{f in frames(v)} <t, f>``, the "max over frames" pooling of frame-level
    CLIP retrieval (e.g. CLIP4Clip's parameter-free baselines compare it with mean pooling).

    Parameters
    ----------
    text_embeddings : numpy.ndarray
        float ``(n_captions, d)``.
    frame_embeddings : numpy.ndarray
        float ``(n_frames, d)``.
    frame_video : numpy.ndarray
        int ``(n_frames,)``: the video row of each frame, in ``0 .. n_videos - 1``.
    n_videos : int
        Number of videos; each needs at least one frame.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_captions, n_videos)``.

    Raises
    ------
    ValueError
        On mismatched dimensions or lengths, a frame row out of range, or a video without frames.
    """
    t = np.asarray(text_embeddings, dtype=np.float32)
    f = np.asarray(frame_embeddings, dtype=np.float32)
    fv = np.asarray(frame_video)
    if t.ndim != 2 or f.ndim != 2 or t.shape[1] != f.shape[1]:
        raise ValueError(f"text_embeddings {t.shape} and frame_embeddings {f.shape} must be 2-D with the same "
                         "embed_dim; embed both with the same encoder")
    if fv.shape != (f.shape[0],) or not np.issubdtype(fv.dtype, np.integer):
        raise ValueError(f"frame_video must be an integer array of shape ({f.shape[0]},); got {fv.shape} {fv.dtype}")
    if fv.size and (fv.min() < 0 or fv.max() >= n_videos):
        raise ValueError(f"frame_video holds rows outside 0..{n_videos - 1}")
    counts = np.bincount(fv, minlength=n_videos)
    if (counts == 0).any():
        raise ValueError(f"videos {np.flatnonzero(counts == 0)[:10].tolist()} have no frames; every video needs "
                         "at least one frame embedding")
    order = np.argsort(fv, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.empty((t.shape[0], n_videos), dtype=np.float32)
    fs = f[order]
    for a in range(0, t.shape[0], _BLOCK_ROWS):
        s = t[a:a + _BLOCK_ROWS] @ fs.T
        out[a:a + _BLOCK_ROWS] = np.maximum.reduceat(s, starts, axis=1)
    return out


def chance_level(n_candidates: int, n_positives=1, ks=(1, 5, 10)) -> dict:
    """Expected metrics of a scorer that ranks candidates uniformly at random.

    With ``m`` correct among ``N`` candidates in random order, the best correct rank ``R``
    satisfies ``P(R > r) = C(N - m, r) / C(N, r)``, so ``E[R@K] = 1 - C(N-m, K) / C(N, K)``
    and ``E[R] = (N + 1) / (m + 1)`` (order statistics of a random m-subset). For ``m = 1``:
    ``E[R@K] = K / N`` and ``E[R] = (N + 1) / 2``.

    Parameters
    ----------
    n_candidates : int
        ``N`` >= 1.
    n_positives : int or array of int
        ``m`` per query (each in ``1 .. N``); metrics are averaged over queries.
    ks : sequence of int

    Returns
    -------
    dict
        ``recall@K`` (expected fraction), ``mean_rank`` (expected), ``median_rank``: the median of
        the distribution of ``R`` pooled over queries, taken as ``r + 0.5`` when the CDF equals
        exactly 0.5 at ``r`` (so a uniform rank over 1..16 gives 8.5, what ``numpy.median`` of a
        large sample approaches).

    Raises
    ------
    ValueError
        On ``N`` < 1 or an ``m`` outside ``1 .. N``.
    """
    n = int(n_candidates)
    m = np.atleast_1d(np.asarray(n_positives, dtype=np.int64))
    if n < 1 or m.size == 0 or m.min() < 1 or m.max() > n:
        raise ValueError(f"n_candidates={n_candidates!r}, n_positives in [{m.min() if m.size else None}, "
                         f"{m.max() if m.size else None}]: expected N >= 1 and 1 <= m <= N")
    r = np.arange(0, n + 1)
    cdf = np.zeros(n + 1)
    for mi, cnt in zip(*np.unique(m, return_counts=True), strict=True):
        # P(R > r) = C(N-m, r) / C(N, r) = prod_{i<r} (N-m-i) / (N-i), as a running product
        factors = np.clip((n - int(mi) - r[:-1]) / (n - r[:-1]), 0.0, None)
        surv = np.concatenate([[1.0], np.cumprod(factors)])
        cdf += cnt * (1.0 - surv)
    cdf /= m.size
    out = {f"recall@{int(k)}": float(cdf[min(int(k), n)]) for k in ks}
    first = int(np.argmax(cdf >= 0.5 - 1e-12))
    out["median_rank"] = first + 0.5 if abs(cdf[first] - 0.5) < 1e-12 else float(first)
    out["mean_rank"] = float(np.mean((n + 1) / (m + 1)))
    return out
