"""Frame-level (element-level) retrieval: one vector per sampled frame, results per video.

A :class:`FrameIndex` holds a :class:`embeddings.index.video_index.VideoIndex` whose entries are frames
(external id ``"{video_id}#{frame_rank}"``, metadata ``video_id``, ``timestamp_s``,
``frame_rank``). A search ranks videos by their best frame (max over frames) and returns
the timestamp of that frame. Video-level retrieval over pooled vectors is the ordinary
``VideoIndex``; :func:`build_video_and_frame_indexes` makes both from the same embedding
folder (``EmbeddingFolder.load_videos`` / ``load_frames`` read the same shards).

Exactness of the aggregation: with ``F`` the largest number of frames of any video, the
best frame of each of the true top-``k`` videos is among the top ``k*F`` frames (a frame
ranked above it belongs to one of at most ``k-1`` better videos, each with at most ``F``
frames), so fetching ``k*F`` frames gives the exact max-over-frames top-``k`` for an exact
index (and the index's own recall otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings.index.video_index import VideoIndex

__all__ = ["FrameIndex", "FrameSearchResult", "build_video_and_frame_indexes", "frame_id"]


def frame_id(video_id: str, frame_rank: int) -> str:
    """External id of a frame: ``"{video_id}#{frame_rank}"``."""
    return f"{video_id}#{int(frame_rank)}"


@dataclass
class FrameSearchResult:
    """Top-``k`` videos per query, ranked by their best-matching frame.

    Attributes
    ----------
    ids : np.ndarray
        object ``(n_queries, k)`` ``video_id``; padding None.
    scores : np.ndarray
        float32 ``(n_queries, k)`` best frame score per video, descending; padding ``-inf``.
    timestamps_s : np.ndarray
        float64 ``(n_queries, k)`` time (seconds) of the best frame in its video; padding NaN.
    frame_ranks : np.ndarray
        int64 ``(n_queries, k)`` rank of that frame within its video; padding -1.
    """

    ids: np.ndarray
    scores: np.ndarray
    timestamps_s: np.ndarray
    frame_ranks: np.ndarray


class FrameIndex:
    """Frame vectors searched with results aggregated to videos (max over frames).

    Create with :meth:`build` or :meth:`load`. Attributes: ``frames`` (the underlying
    :class:`VideoIndex` over frames), ``max_frames_per_video``.
    """

    def __init__(self, frames: VideoIndex):
        self.frames = frames
        meta = frames.metadata
        self._video_of = dict(zip(meta["video_id"], meta["source_video_id"], strict=True))
        self._frames_of: dict[str, list[str]] = {}
        for fid, vid in self._video_of.items():
            self._frames_of.setdefault(vid, []).append(fid)
        self._ts = dict(zip(meta["video_id"], meta["timestamp_s"].astype(float), strict=True))
        self._rank = dict(zip(meta["video_id"], meta["frame_rank"].astype(int), strict=True))
        self.max_frames_per_video = max((len(v) for v in self._frames_of.values()), default=0)

    @classmethod
    def build(cls, frame_embeddings: np.ndarray, frames: pd.DataFrame, **build_kwargs) -> FrameIndex:
        """Index one vector per frame.

        Parameters
        ----------
        frame_embeddings : np.ndarray
            float32 ``(n_frames, d)``, L2-normalised for ``metric="ip"``.
        frames : pd.DataFrame
            ``n_frames`` rows with ``video_id``, ``timestamp_s`` (float seconds) and
            ``frame_rank`` (int, unique within a video), as ``EmbeddingFolder.load_frames``.
        **build_kwargs
            :meth:`VideoIndex.build` arguments (``factory_string``, ``metric``, ``encoder``...).

        Raises
        ------
        ValueError
            Missing columns, duplicate ``(video_id, frame_rank)``, or what
            :meth:`VideoIndex.build` raises.
        """
        missing = {"video_id", "timestamp_s", "frame_rank"} - set(frames.columns)
        if missing:
            raise ValueError(f"frames: missing columns {sorted(missing)}; expected the DataFrame "
                             "of EmbeddingFolder.load_frames() (video_id, timestamp_s, frame_rank)")
        ids = [frame_id(v, r) for v, r in zip(frames["video_id"], frames["frame_rank"], strict=True)]
        meta = pd.DataFrame({"source_video_id": frames["video_id"].astype(str).to_numpy(),
                             "timestamp_s": frames["timestamp_s"].astype(float).to_numpy(),
                             "frame_rank": frames["frame_rank"].astype(int).to_numpy()})
        return cls(VideoIndex.build(frame_embeddings, ids, metadata=meta, **build_kwargs))

    def search(self, queries: np.ndarray, k: int = 10, *, exclude_ids=None,
               search_params: str | None = None) -> FrameSearchResult:
        """Top-``k`` videos by their best frame, with that frame's timestamp.

        Parameters
        ----------
        queries : np.ndarray
            float ``(n_queries, d)`` or ``(d,)``.
        k : int
            Videos per query (>= 1).
        exclude_ids : iterable of str, optional
            ``video_id`` values to exclude: all their frames are excluded inside faiss.
        search_params : str, optional
            As :meth:`VideoIndex.search`.

        Returns
        -------
        FrameSearchResult
            ``(n_queries, k)`` arrays, padded (None, -inf, NaN, -1) when fewer videos qualify.

        Raises
        ------
        ValueError
            As :meth:`VideoIndex.search` (dimension mismatch names both dimensions).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: got {k!r}; expected an int >= 1")
        excluded = [] if exclude_ids is None else (
            [exclude_ids] if isinstance(exclude_ids, str) else list(exclude_ids))
        frame_excl = [f for v in excluded for f in self._frames_of.get(v, [])]
        k_frames = max(1, int(k) * max(1, self.max_frames_per_video))
        res = self.frames.search(queries, k_frames, exclude_ids=frame_excl or None,
                                 search_params=search_params)
        nq = len(res.ids)
        out_ids = np.full((nq, k), None, dtype=object)
        out_s = np.full((nq, k), -np.inf, dtype=np.float32)
        out_t = np.full((nq, k), np.nan)
        out_r = np.full((nq, k), -1, dtype=np.int64)
        for i in range(nq):
            seen: set[str] = set()
            j = 0
            for fid, score in zip(res.ids[i], res.scores[i], strict=True):
                if fid is None or j >= k:
                    break
                vid = self._video_of[fid]
                if vid in seen:  # scores descend, so the first frame seen is the max
                    continue
                seen.add(vid)
                out_ids[i, j], out_s[i, j] = vid, score
                out_t[i, j], out_r[i, j] = self._ts[fid], self._rank[fid]
                j += 1
        return FrameSearchResult(out_ids, out_s, out_t, out_r)

    def save(self, folder) -> Path:
        """Save the frame index folder (a :meth:`VideoIndex.save` folder)."""
        return self.frames.save(folder)

    @classmethod
    def load(cls, folder, **load_kwargs) -> FrameIndex:
        """Load a folder written by :meth:`save` (:meth:`VideoIndex.load` arguments).

        Raises ValueError if the folder is a video-level index (no frame metadata).
        """
        vi = VideoIndex.load(folder, **load_kwargs)
        if "source_video_id" not in vi.metadata.columns:
            raise ValueError(f"{folder} is a video-level index (no source_video_id/timestamp_s "
                             "metadata); build it with FrameIndex.build or "
                             "build_video_and_frame_indexes")
        return cls(vi)


def build_video_and_frame_indexes(folder, *, factory_string: str | None = "Flat",
                                  frame_factory_string: str | None = None, metric: str = "ip",
                                  **build_kwargs) -> tuple[VideoIndex, FrameIndex]:
    """Video-level (pooled vectors) and frame-level indexes from one embedding folder.

    Parameters
    ----------
    folder : EmbeddingFolder
        An opened embedding folder (``EmbeddingFolder.open``).
    factory_string, frame_factory_string : str or None
        Factory strings of the video and frame indexes (frame defaults to the video one).
    metric : {"ip", "l2"}
    **build_kwargs
        Further :meth:`VideoIndex.build` arguments.

    Returns
    -------
    (VideoIndex, FrameIndex)

    Raises
    ------
    ValueError
        The folder holds no embedded video, or what :meth:`VideoIndex.build` raises.
    """
    meta, videos = folder.load_videos()
    if len(meta) == 0:
        raise ValueError(f"{folder.path} holds no embedded video; nothing to index")
    frames, frame_emb = folder.load_frames()
    video_index = VideoIndex.build(videos, meta["video_id"].astype(str).tolist(),
                                   factory_string=factory_string, metric=metric,
                                   encoder=folder.encoder, **build_kwargs)
    frame_index = FrameIndex.build(frame_emb, frames, metric=metric, encoder=folder.encoder,
                                   factory_string=frame_factory_string or factory_string,
                                   **build_kwargs)
    return video_index, frame_index
