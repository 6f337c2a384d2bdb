"""The serving core: an index, its encoder and an optional ranker, loaded once, answered many times.

:class:`Service` knows nothing of HTTP; :mod:`recsys.serve.app` wraps it in FastAPI routes. Keeping
the two apart lets ``benchmarks/bench_serve.py`` time the same call in process and over HTTP.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Columns of the feedback log: what :func:`recsys.data.interactions.load_interactions` reads by header name.
FEEDBACK_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
COLD_START_FALLBACK = "popularity: user_id unknown (no history)"


@dataclass
class Limits:
    """Request size limits; a request over one gets a 4xx answer that names the limit.

    Attributes
    ----------
    max_k : int
        Results per page (``k``).
    max_result_ids : int
        ``num_result_ids``: ids fetched from the index before paging.
    max_text_chars : int
        Characters of a text query.
    max_upload_bytes : int
        Bytes of an uploaded image or clip.
    max_ids : int
        Ids per ``/metadata`` or ``exclude_ids`` request.
    max_feedback_events : int
        Interactions per ``/feedback`` request.
    """

    max_k: int = 1000
    max_result_ids: int = 10_000
    max_text_chars: int = 1000
    max_upload_bytes: int = 20 * 1024 * 1024
    max_ids: int = 1000
    max_feedback_events: int = 1000


class LimitError(ValueError):
    """A request over a size limit (HTTP 413 for bodies, 400 otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def json_safe(obj):
    """``obj`` with numpy scalars/arrays turned into Python values and NaN/inf floats into None.

    Serving answers strict JSON (RFC 8259 has no NaN), so a missing metadata value reads ``null``.
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is pd.NaT or obj is pd.NA:
        return None
    return obj


class Service:
    """An index + encoder (+ frame index, ranker, embedding folder) loaded once for serving.

    Parameters
    ----------
    index_dir : path-like
        A folder written by ``recsys index build`` / ``VideoIndex.save``.
    ranker_dir : path-like, optional
        A model folder written by ``recsys train`` (for ``recommend``).
    embeddings_dir : path-like, optional
        The embedding folder of the catalog (montage backfill cuts shots from it).
    frames_dir : path-like, optional
        A frame index (``FrameIndex.save``) for frame-level search with timestamps.
    feedback_log : path-like, optional
        CSV that ``feedback`` appends to; default ``index_dir/../feedback.csv``.
    device : str
        ``"cpu"``, ``"cuda"``, ``"auto"`` for the encoder and index.
    limits : Limits, optional
    encoder : object, optional
        An already built encoder (tests, benchmarks); default: the one the index records.

    Raises
    ------
    FileNotFoundError, ValueError
        As :meth:`embeddings.index.VideoIndex.load`, :func:`recsys.ranking.artifacts.load_trained` and
        :func:`recsys.app.stages.open_encoder_for_index` raise for missing or incompatible folders.
    """

    def __init__(self, index_dir, *, ranker_dir=None, embeddings_dir=None, frames_dir=None,
                 feedback_log=None, device: str = "auto", limits: Limits | None = None,
                 encoder=None):
        from embeddings.index import VideoIndex
        from recsys.app import stages

        self.index_dir = Path(index_dir)
        self.index = VideoIndex.load(self.index_dir, device=device)
        self.encoder = encoder if encoder is not None else stages.open_encoder_for_index(
            self.index, device=device)
        self.frames = None
        if frames_dir is not None:
            from embeddings.index.frames import FrameIndex

            self.frames = FrameIndex.load(frames_dir, expected_encoder=self.index.encoder)
        self.ranker = None
        if ranker_dir is not None:
            from recsys.ranking.artifacts import load_trained

            self.ranker = load_trained(ranker_dir)
            self._popular = np.argsort(-np.asarray(self.ranker.user_items.sum(axis=0)).ravel(),
                                       kind="stable")
        from generation.calibration import load_calibration

        self.calibration = load_calibration(self.index_dir)  # (calibrator, threshold, info) or None
        self.embeddings_dir = Path(embeddings_dir) if embeddings_dir is not None else None
        self.feedback_log = Path(feedback_log) if feedback_log is not None else (
            self.index_dir.parent / "feedback.csv")
        self.limits = limits or Limits()
        self.device = device
        self._feedback_lock = threading.Lock()
        self._meta_lock = threading.Lock()
        self._meta_key = None
        self._lookup: dict[str, dict] = {}
        self._synthetic: list[str] = []
        self._thumbs: OrderedDict[str, bytes] = OrderedDict()
        self.step_observer = None  # callable(step, seconds), set by the app for /metrics
        self._refresh_metadata()

    # ----------------------------------------------------------------- metadata
    def _refresh_metadata(self) -> None:
        """Rebuild the id -> metadata lookup when the index changed (a backfill added clips)."""
        key = (self.index.ntotal, self.index._next_id)
        if key == self._meta_key:
            return
        with self._meta_lock:
            if key == self._meta_key:
                return
            meta = self.index.metadata
            lookup = {}
            for row in meta.to_dict(orient="records"):
                lookup[str(row["video_id"])] = row
            syn = meta["synthetic"].where(pd.notna(meta["synthetic"]), False).astype(bool) \
                if "synthetic" in meta.columns else pd.Series(False, index=meta.index)
            self._lookup = lookup
            self._synthetic = meta.loc[syn.to_numpy(), "video_id"].astype(str).tolist()
            self._meta_key = key

    def record(self, video_id: str) -> dict | None:
        """Metadata of one id for an answer (``provenance`` parsed for synthetic items), or None."""
        self._refresh_metadata()
        row = self._lookup.get(str(video_id))
        if row is None:
            return None
        out = {k: v for k, v in row.items() if k != "source_shots"}
        syn = row.get("synthetic")
        out["synthetic"] = bool(syn) if isinstance(syn, (bool, np.bool_)) else False  # NaN is not True
        if out["synthetic"]:
            shots = row.get("source_shots")
            try:
                shots = json.loads(shots) if isinstance(shots, str) else (shots or [])
            except json.JSONDecodeError:
                shots = []
            out["provenance"] = {"prompt": row.get("prompt"), "backend": row.get("backend"),
                                 "seed": row.get("seed"), "source_shots": shots}
        out.pop("path", None)  # file paths stay on the server; /media/{id} serves the clip
        return json_safe(out)

    def media_path(self, video_id: str) -> Path | None:
        """The file registered for ``video_id`` in the index metadata, or None (unknown id / no file).

        Only paths the index records are ever returned, so a request cannot name a file. A
        relative path is read against the index folder's parent (where a run keeps its clips).
        """
        self._refresh_metadata()
        row = self._lookup.get(str(video_id))
        path = row.get("path") if row else None
        if not isinstance(path, str) or not path:
            return None
        p = Path(path)
        if not p.is_absolute():
            p = self.index_dir.parent / p
        return p if p.is_file() else None

    def thumbnail(self, video_id: str, *, max_side: int = 256) -> bytes | None:
        """JPEG bytes of the middle frame of ``video_id`` (cached, up to 512 entries), or None."""
        with self._meta_lock:
            if video_id in self._thumbs:
                self._thumbs.move_to_end(video_id)
                return self._thumbs[video_id]
        path = self.media_path(video_id)
        if path is None:
            return None
        from PIL import Image

        from embeddings.video import sample_frames

        frame = sample_frames(path, n_frames=1, max_side=max_side).frames[0]
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=85)
        data = buf.getvalue()
        with self._meta_lock:  # the cache is shared by the server's worker threads
            self._thumbs[video_id] = data
            if len(self._thumbs) > 512:
                self._thumbs.popitem(last=False)
        return data

    # ------------------------------------------------------------------ timing
    @contextmanager
    def step(self, name: str, seconds: dict):
        """Time a step into ``seconds[name]`` and the metrics observer."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            seconds[name] = seconds.get(name, 0.0) + dt
            if self.step_observer is not None:
                self.step_observer(name, dt)

    # ------------------------------------------------------------------ encode
    def check_text(self, text) -> str:
        """Stripped query text; ValueError when empty, LimitError when over ``max_text_chars``."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text: the query is empty; give a description such as 'a dog on a beach'")
        if len(text) > self.limits.max_text_chars:
            raise LimitError(f"text: {len(text)} characters is over the limit of "
                             f"{self.limits.max_text_chars}; shorten the query")
        return text.strip()

    def encode_text(self, text: str, seconds: dict) -> np.ndarray:
        """float32 ``(d,)`` L2-normalised embedding of a text query."""
        text = self.check_text(text)
        with self.step("encode", seconds):
            return np.ascontiguousarray(self.encoder.encode_text([text])[0], dtype=np.float32)

    def encode_upload(self, data: bytes, filename: str, seconds: dict) -> np.ndarray:
        """float32 ``(d,)`` embedding of an uploaded image or short clip (mean of 8 frames).

        Raises
        ------
        LimitError
            Over ``max_upload_bytes`` (status 413).
        ValueError
            A file that decodes neither as an image nor as a video.
        """
        if len(data) > self.limits.max_upload_bytes:
            raise LimitError(f"file: {len(data)} bytes is over the upload limit of "
                             f"{self.limits.max_upload_bytes} bytes", status=413)
        from PIL import Image, UnidentifiedImageError

        from embeddings.encoders import pool_frames

        with self.step("encode", seconds):
            try:
                img = Image.open(io.BytesIO(data)).convert("RGB")
                frames = np.asarray(img)[None]
            except (UnidentifiedImageError, OSError):
                import tempfile

                from embeddings.video import sample_frames

                suffix = Path(filename or "clip.mp4").suffix or ".mp4"
                fd, tmp = tempfile.mkstemp(suffix=suffix)
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    frames = sample_frames(tmp, n_frames=8, max_side=256).frames
                except Exception as e:  # noqa: BLE001 - any decoder failure is a bad upload
                    raise ValueError(f"file {filename!r}: not a readable image or video ({e}); "
                                     "upload a JPEG/PNG image or an MP4/WebM clip") from None
                finally:
                    os.unlink(tmp)
            emb = self.encoder.encode_images(frames)
            return np.ascontiguousarray(pool_frames(emb), dtype=np.float32)

    def check_vector(self, embedding) -> np.ndarray:
        """float32 ``(d,)`` from a list; ValueError naming the dimension when it does not fit."""
        try:
            v = np.asarray(embedding, dtype=np.float32).ravel()
        except (TypeError, ValueError):
            raise ValueError("embedding: expected a list of numbers") from None
        if v.shape[0] != self.index.dim:
            raise ValueError(f"embedding: got {v.shape[0]} numbers, the index has dimension "
                             f"{self.index.dim}; encode with the index's encoder ({self.index.encoder})")
        if not np.isfinite(v).all():
            raise ValueError("embedding: contains NaN or infinity")
        n = float(np.linalg.norm(v))
        if n == 0:
            raise ValueError("embedding: the zero vector has no direction")
        return v / n

    # ------------------------------------------------------------------ search
    def _check_k(self, k: int, num_result_ids: int | None, page: int) -> tuple[int, int]:
        lim = self.limits
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: got {k!r}; expected an integer >= 1")
        if k > lim.max_k:
            raise LimitError(f"k: {k} is over the limit of {lim.max_k}; ask for fewer results per page")
        if page < 0:
            raise ValueError(f"page: got {page}; expected an integer >= 0")
        n = num_result_ids if num_result_ids is not None else k * (page + 1)
        if n < 1:
            raise ValueError(f"num_result_ids: got {n}; expected an integer >= 1")
        if n > lim.max_result_ids:
            raise LimitError(f"num_result_ids: {n} is over the limit of {lim.max_result_ids}")
        return k, n

    def _excluded(self, exclude_synthetic: bool, exclude_ids, filters: dict | None) -> list[str] | None:
        self._refresh_metadata()
        excl = list(exclude_ids or [])
        if len(excl) > self.limits.max_ids:
            raise LimitError(f"exclude_ids: {len(excl)} ids is over the limit of {self.limits.max_ids}")
        if exclude_synthetic:
            excl += self._synthetic
        for col, want in (filters or {}).items():
            # exact: every id whose metadata differs is excluded inside faiss, so k results come
            # back whenever k matching items exist
            excl += [v for v, row in self._lookup.items() if str(row.get(col)) != str(want)]
        return excl or None

    def search(self, vector: np.ndarray, *, k: int = 10, page: int = 0, num_result_ids: int | None = None,
               level: str = "video", exclude_synthetic: bool = False, exclude_ids=None,
               filters: dict | None = None, seconds: dict | None = None) -> dict:
        """One page of nearest neighbours of ``vector``.

        ``num_result_ids`` ids are fetched from the index (default ``k * (page + 1)``), and only
        the ``k`` of page ``page`` (0-based) get metadata, as clip-retrieval's back end does.

        Parameters
        ----------
        vector : np.ndarray
            float32 ``(d,)``, L2-normalised.
        k : int
            Page size, 1 to ``limits.max_k``.
        page : int
            0-based page.
        num_result_ids : int, optional
            Ids fetched before paging, at most ``limits.max_result_ids``.
        level : {"video", "frame"}
            ``"frame"`` searches the frame index (best frame per video, with ``timestamp_s``).
        exclude_synthetic : bool
        exclude_ids : list of str, optional
        filters : dict, optional
            Metadata equality filters ``{column: value}`` (compared as strings), applied exactly
            inside faiss by excluding every other id (a pass over the metadata: O(n_items) per call).
        seconds : dict, optional
            Filled with ``encode``/``search``/``metadata`` timings.

        Returns
        -------
        dict
            ``{"level", "k", "page", "num_result_ids", "n_found", "results": [{"rank", "video_id",
            "score", "timestamp_s"?, **metadata}]}``; ``rank`` counts from 1 over all pages.

        Raises
        ------
        LimitError, ValueError
            Limits exceeded; bad ``level``; no frame index for ``level="frame"``.
        """
        seconds = {} if seconds is None else seconds
        k, n = self._check_k(k, num_result_ids, page)
        if level not in ("video", "frame"):
            raise ValueError(f"level: got {level!r}; expected 'video' or 'frame'")
        if level == "frame" and self.frames is None:
            raise ValueError("level='frame': this server has no frame index; start it with --frames "
                             "FRAME_INDEX_DIR")
        excl = self._excluded(exclude_synthetic, exclude_ids, filters)
        with self.step("search", seconds):
            if level == "frame":
                res = self.frames.search(vector, k=n, exclude_ids=excl)
                ts = res.timestamps_s[0]
            else:
                res = self.index.search(vector, k=n, exclude_ids=excl)
                ts = None
            ids, scores = res.ids[0], res.scores[0]
            found = [i for i, v in enumerate(ids) if v is not None]
        with self.step("metadata", seconds):
            rows = []
            for i in found[page * k:(page + 1) * k]:
                r = {"rank": i + 1, "video_id": str(ids[i]), "score": float(scores[i])}
                if ts is not None:
                    r["timestamp_s"] = float(ts[i])
                r.update(self.record(ids[i]) or {})
                rows.append(r)
        return json_safe({"level": level, "k": k, "page": page, "num_result_ids": n,
                          "n_found": len(found), "results": rows})

    def confidence(self, vector: np.ndarray, seconds: dict | None = None) -> dict:
        """Retrieval confidence of a query vector, as ``recsys query`` computes it for the gate.

        Real items only (synthetic ones left out); the calibrated P(top-1 relevant) when the index
        folder holds a ``calibration.json`` (``recsys calibrate``), else the top-1 cosine clipped
        to [0, 1] (:func:`generation.confidence.confidence_score`).

        Returns
        -------
        dict
            ``{"confidence", "threshold" (None without calibration), "calibrated"}``.
        """
        from generation.confidence import confidence_features, confidence_score

        seconds = {} if seconds is None else seconds
        self._refresh_metadata()
        cal = self.calibration
        k = int((cal[2].get("collect") or {}).get("k", 10)) if cal else 10
        with self.step("confidence", seconds):
            res = self.index.search(vector, k=k, exclude_ids=self._synthetic or None)
            feats = confidence_features(res.scores)
            conf = float(cal[0].predict(feats)[0]) if cal else float(confidence_score(feats)[0])
        return {"confidence": conf, "threshold": cal[1] if cal else None, "calibrated": cal is not None}

    def similar(self, video_id: str, *, k: int = 10, exclude_synthetic: bool = False,
                seconds: dict | None = None) -> dict:
        """Items nearest to ``video_id``'s stored vector, the item itself left out.

        Raises
        ------
        KeyError
            Unknown ``video_id``.
        """
        if video_id not in self.index:
            raise KeyError(f"video_id {video_id!r} is not in the index")
        vec = np.ascontiguousarray(self.index.reconstruct([video_id])[0], dtype=np.float32)
        return self.search(vec, k=k, exclude_synthetic=exclude_synthetic, exclude_ids=[video_id],
                           seconds=seconds)

    def metadata(self, ids) -> dict:
        """``{"items": [record or None per id], "missing": [ids not in the index]}``."""
        ids = [str(v) for v in ids]
        if len(ids) > self.limits.max_ids:
            raise LimitError(f"ids: {len(ids)} ids is over the limit of {self.limits.max_ids}")
        items = {v: self.record(v) for v in ids}
        return {"items": [r for r in items.values()],
                "missing": [v for v, r in items.items() if r is None]}

    # --------------------------------------------------------------- recommend
    def users(self, limit: int = 100) -> list[str]:
        """First ``limit`` user ids the ranker knows (for the page's user picker)."""
        if self.ranker is None:
            return []
        return [str(u) for u in self.ranker.user_ids[:limit]]

    def recommend(self, user_id: str, *, k: int = 10, seconds: dict | None = None) -> dict:
        """Top-``k`` items for ``user_id`` with the sources that proposed each.

        A user the ranker has never seen gets the most popular items, marked with ``fallback``
        (a cold-start user). A model trained ``--two-stage`` answers through its candidate
        sources; others name the model as the single source.

        Returns
        -------
        dict
            ``{"user_id", "model", "cold_start_user", "fallback", "results": [{"rank", "item_id",
            "score", "sources", "fallback", **metadata}]}``.

        Raises
        ------
        ValueError
            No ranker loaded, or bad ``k``.
        """
        seconds = {} if seconds is None else seconds
        if self.ranker is None:
            raise ValueError("no ranker loaded: start the server with --ranker MODEL_DIR "
                             "(a folder written by `recsys train`)")
        self._check_k(k, None, 0)
        tm = self.ranker
        name = str(tm.info.get("model") or tm.info.get("name") or type(tm.model).__name__)
        known = _knows(tm, user_id)
        with self.step("rank", seconds):
            if tm.info.get("two_stage"):
                from recsys.ranking.training import recommend_two_stage

                df = recommend_two_stage(tm, [str(user_id)], k=k)
                rows = []
                for r in df.to_dict(orient="records"):
                    src = json.loads(r["sources"]) if isinstance(r.get("sources"), str) else {}
                    rows.append({"rank": int(r["rank"]), "item_id": str(r["item_id"]),
                                 "score": float(r["score"]), "sources": src,
                                 "fallback": r.get("fallback")})
            elif known:
                ids, scores = tm.recommend(np.array([tm.user_index(str(user_id))]), k=k)
                ids, scores = np.atleast_2d(ids)[0], np.atleast_2d(scores)[0]
                rows = [{"rank": r + 1, "item_id": str(tm.item_ids[i]), "score": float(s),
                         "sources": {name: {"rank": r + 1, "score": float(s)}}, "fallback": None}
                        for r, (i, s) in enumerate(zip(ids, scores, strict=True)) if i >= 0]
            else:
                top = self._popular[:k]
                counts = np.asarray(tm.user_items.sum(axis=0)).ravel()
                rows = [{"rank": r + 1, "item_id": str(tm.item_ids[i]), "score": float(counts[i]),
                         "sources": {"popularity": {"rank": r + 1, "score": float(counts[i])}},
                         "fallback": COLD_START_FALLBACK} for r, i in enumerate(top)]
        with self.step("metadata", seconds):
            for r in rows:
                r.update({kk: vv for kk, vv in (self.record(r["item_id"]) or {}).items()
                          if kk not in r})
                r["video_id"] = r["item_id"]
        return json_safe({"user_id": str(user_id), "model": name, "cold_start_user": not known,
                          "fallback": None if known else COLD_START_FALLBACK, "results": rows})

    # ---------------------------------------------------------------- feedback
    def add_feedback(self, events: list[dict]) -> dict:
        """Append interactions to :attr:`feedback_log` atomically; ``recsys train`` reads the file.

        The file is copied to a temporary name, the rows appended, and the copy renamed over
        the log, under a thread lock and a file lock (``<log>.lock``, so that several server
        processes, e.g. Ray Serve replicas, lose no rows): a reader sees the old or the new file,
        never half a row.

        Parameters
        ----------
        events : list of dict
            ``user_id``, ``item_id`` (required, non-empty), ``rating`` (default 1.0),
            ``timestamp`` (seconds; default now).

        Returns
        -------
        dict
            ``{"appended", "log"}``.

        Raises
        ------
        LimitError, ValueError
            Too many events; a missing id; a non-numeric rating or timestamp.
        """
        if len(events) > self.limits.max_feedback_events:
            raise LimitError(f"events: {len(events)} is over the limit of "
                             f"{self.limits.max_feedback_events} per request", status=413)
        rows = []
        now = int(time.time())
        for j, e in enumerate(events):
            u, i = str(e.get("user_id") or "").strip(), str(e.get("item_id") or "").strip()
            if not u or not i:
                raise ValueError(f"events[{j}]: user_id and item_id are required, got {e!r}")
            if any(c in u + i for c in ",\n\r\""):
                raise ValueError(f"events[{j}]: ids may not contain commas, quotes or newlines")
            rating = e.get("rating", 1.0)
            ts = e.get("timestamp", now)
            try:
                rating, ts = float(rating), int(ts)
            except (TypeError, ValueError):
                raise ValueError(f"events[{j}]: rating and timestamp must be numbers, got "
                                 f"{rating!r}, {ts!r}") from None
            if not math.isfinite(rating):
                raise ValueError(f"events[{j}]: rating {rating} is not finite")
            rows.append(f"{u},{i},{rating:g},{ts}\n")
        import shutil

        from embeddings._io import atomic_path

        with self._feedback_lock, _file_lock(self.feedback_log):
            with atomic_path(self.feedback_log) as tmp:
                if self.feedback_log.is_file():
                    shutil.copyfile(self.feedback_log, tmp)
                else:
                    tmp.write_text(",".join(FEEDBACK_COLUMNS) + "\n", encoding="utf-8")
                with open(tmp, "a", encoding="utf-8") as f:
                    f.writelines(rows)
        return {"appended": len(rows), "log": str(self.feedback_log)}

    # ------------------------------------------------------------------- info
    def indices(self) -> dict:
        """What is loaded: index size, dimension, factory, encoder, frame index, ranker."""
        self._refresh_metadata()
        info = {"video": {"ntotal": self.index.ntotal, "dim": self.index.dim,
                          "factory_string": self.index.factory_string, "metric": self.index.metric,
                          "n_synthetic": len(self._synthetic), "encoder": self.index.encoder}}
        if self.frames is not None:
            info["frame"] = {"ntotal": self.frames.frames.ntotal}
        out = {"indices": info}
        if self.ranker is not None:
            out["ranker"] = {"model": self.ranker.info.get("model"),
                             "n_users": len(self.ranker.user_ids), "n_items": len(self.ranker.item_ids),
                             "two_stage": bool(self.ranker.info.get("two_stage"))}
        return json_safe(out)


@contextmanager
def _file_lock(path: Path):
    """Exclusive ``flock`` on ``path`` + ``.lock`` (POSIX; a no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: the thread lock alone
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _knows(tm, user_id) -> bool:
    try:
        tm.user_index(str(user_id))
        return True
    except KeyError:
        return False
