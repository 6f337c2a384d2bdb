"""A retrieval montage backend: cut real shots that match each phrase of the prompt.

No model is trained or run besides the text encoder: the prompt is split into phrases, each
phrase picks its best-matching shot by cosine similarity, and a short segment around each shot
is cut from its source video. It is the cheap, always-available backend (CPU, no weights beyond
the retrieval encoder) and the honest baseline a diffusion backend has to beat.

Phrase rule (:func:`split_phrases`): the prompt is split on ``,`` ``;`` ``.`` ``!`` ``?`` and
on the whole words ``and``, ``then``, ``followed by`` (case-insensitive); pieces are stripped
and empty pieces dropped; if nothing is left the whole stripped prompt is the one phrase.
``with`` is deliberately NOT a separator: "a dog with a red ball" describes one shot.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..cache import check_deadline
from .base import Backend, Clip, register_backend

__all__ = ["MontageBackend", "MontageError", "split_phrases"]

logger = logging.getLogger(__name__)

_SPLIT_RE = re.compile(r"[,;.!?]|\b(?:and|then|followed\s+by)\b", flags=re.IGNORECASE)


def split_phrases(prompt: str) -> list[str]:
    """Split a prompt into shot phrases (rule in the module docstring).

    Returns
    -------
    list of str
        At least one phrase, in prompt order.

    Raises
    ------
    ValueError
        If ``prompt`` is not a string with visible text.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt={prompt!r}: expected a non-empty string")
    phrases = [p.strip() for p in _SPLIT_RE.split(prompt)]
    phrases = [p for p in phrases if p]
    return phrases or [prompt.strip()]


class MontageError(RuntimeError):
    """No usable shot could be decoded for a phrase (every candidate failed)."""


class MontageBackend(Backend):
    """Montage of real shots, one per prompt phrase.

    Parameters
    ----------
    shots : pd.DataFrame
        One row per shot with columns ``video_id`` (str), ``path`` (video file) and
        ``timestamp_s`` (float seconds, the shot's centre), e.g. the per-frame rows of the
        embedding job.
    shot_embeddings : np.ndarray
        float (n_shots, d), L2-normalised rows aligned with ``shots``.
    encode_text : callable
        ``list[str] -> np.ndarray (n, d)`` in the same space (e.g. ``ClipEncoder.encode_text``).
    shot_seconds : float
        Length in seconds of the segment cut around each shot (centred on ``timestamp_s``,
        clamped at the start of the video).

    Raises
    ------
    ValueError
        On missing columns, misaligned or non-finite / non-normalised embeddings,
        non-callable ``encode_text`` or ``shot_seconds <= 0``.

    Notes
    -----
    Selection, for each phrase in order: shots sorted by cosine similarity (descending; exact
    ties broken by a permutation drawn from ``seed``, so the seed changes nothing else);
    shots already used are excluded (when every shot is used, reuse is allowed); a shot from
    the same video as the previous phrase's shot is taken only when no other video is left.
    A candidate whose file fails to decode is skipped with a warning (with every other shot of
    that file) and the next one is tried. Frames are shared among phrases as evenly as
    possible (earlier phrases get the remainder); each segment is trimmed or looped to its
    share, so every phrase is on screen and the clip has exactly ``num_frames`` frames.
    ``negative_prompt``, ``num_inference_steps`` and ``guidance_scale`` have no effect (they
    are recorded in the provenance).
    """

    name = "montage"

    def __init__(self, shots: pd.DataFrame, shot_embeddings: np.ndarray,
                 encode_text: Callable[[list[str]], np.ndarray], *, shot_seconds: float = 1.0):
        if not isinstance(shots, pd.DataFrame):
            raise ValueError(f"shots: expected a pandas DataFrame, got {type(shots).__name__}")
        missing = [c for c in ("video_id", "path", "timestamp_s") if c not in shots.columns]
        if missing:
            raise ValueError(
                f"shots is missing columns {missing} (has {list(shots.columns)}); expected "
                "video_id, path, timestamp_s")
        emb = np.asarray(shot_embeddings)
        if emb.ndim != 2 or emb.shape[0] != len(shots) or emb.shape[0] == 0:
            raise ValueError(
                f"shot_embeddings has shape {emb.shape}; expected (n_shots, d) with "
                f"n_shots = len(shots) = {len(shots)} >= 1")
        emb = emb.astype(np.float32, copy=False)
        if not np.isfinite(emb).all():
            raise ValueError("shot_embeddings contains NaN or inf; re-run the embedding job")
        norms = np.linalg.norm(emb, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            bad = int(np.argmax(np.abs(norms - 1.0)))
            raise ValueError(
                f"shot_embeddings row {bad} has norm {norms[bad]:.4f}; expected L2-normalised rows; "
                "divide by np.linalg.norm(x, axis=1, keepdims=True)")
        timestamps = pd.to_numeric(shots["timestamp_s"], errors="coerce").to_numpy(np.float64)
        if not np.isfinite(timestamps).all() or (timestamps < 0).any():
            raise ValueError("shots.timestamp_s must be finite numbers >= 0 (seconds)")
        if not callable(encode_text):
            raise ValueError(f"encode_text={encode_text!r}: expected a callable list[str] -> (n, d) array")
        if not isinstance(shot_seconds, (int, float)) or not shot_seconds > 0:
            raise ValueError(f"shot_seconds={shot_seconds!r}: expected a number > 0 (seconds)")
        self.shots = shots.reset_index(drop=True)
        self.shot_embeddings = emb
        self.encode_text = encode_text
        self.shot_seconds = float(shot_seconds)
        self._video_ids = self.shots["video_id"].astype(str).to_numpy()
        self._paths = self.shots["path"].astype(str).to_numpy()
        self._timestamps = timestamps
        self._fingerprint: str | None = None

    def fingerprint(self) -> dict:
        """Name, ``shot_seconds`` and a SHA-256 over shot ids, paths, timestamps and embeddings."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for col in (self._video_ids, self._paths):
                h.update("\x00".join(col).encode("utf-8"))
            h.update(self._timestamps.tobytes())
            h.update(np.ascontiguousarray(self.shot_embeddings).tobytes())
            self._fingerprint = h.hexdigest()
        return {"name": self.name, "shot_seconds": self.shot_seconds, "shots_sha256": self._fingerprint}

    def check_inputs(self, prompt, **kwargs) -> None:
        """Base checks, plus ``num_frames`` >= the number of phrases (each phrase needs a frame)."""
        super().check_inputs(prompt, **kwargs)
        n_phrases = len(split_phrases(prompt))
        if kwargs["num_frames"] < n_phrases:
            raise ValueError(
                f"num_frames={kwargs['num_frames']} is fewer than the {n_phrases} phrases of "
                f"prompt={prompt!r}; pass num_frames >= {n_phrases} or use fewer phrases")

    def _phrase_embeddings(self, phrases: list[str]) -> np.ndarray:
        emb = np.asarray(self.encode_text(phrases), dtype=np.float32)
        d = self.shot_embeddings.shape[1]
        if emb.shape != (len(phrases), d):
            raise ValueError(
                f"encode_text returned shape {emb.shape} for {len(phrases)} phrases; expected "
                f"({len(phrases)}, {d}) to match shot_embeddings; use the encoder that embedded the shots")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if not np.isfinite(emb).all() or (norms == 0).any():
            raise ValueError("encode_text returned NaN/inf or all-zero embeddings")
        return emb / norms

    def _generate(self, prompt, *, negative_prompt, num_frames, height, width, fps,
                  num_inference_steps, guidance_scale, seed) -> Clip:
        from embeddings.video.decode import VideoDecodeError
        from embeddings.video.segment import read_segment

        phrases = split_phrases(prompt)
        sims = self._phrase_embeddings(phrases) @ self.shot_embeddings.T  # (n_phrases, n_shots)
        tiebreak = np.random.default_rng(seed).permutation(sims.shape[1])
        shares = [num_frames // len(phrases) + (i < num_frames % len(phrases))
                  for i in range(len(phrases))]
        used: set[int] = set()
        bad_paths: set[str] = set()
        prev_video: str | None = None
        pieces, sources = [], []
        for phrase, row, share in zip(phrases, sims, shares, strict=True):
            # lexsort: last key is primary -> similarity descending, then seeded tie-break
            order = np.lexsort((tiebreak, -row))
            for cand in self._candidates(order, used, prev_video):
                path = self._paths[cand]
                if path in bad_paths:
                    continue
                start = max(0.0, self._timestamps[cand] - self.shot_seconds / 2)
                try:
                    frames, _ = read_segment(path, start, self.shot_seconds, fps=fps,
                                             size=(height, width))
                except VideoDecodeError as exc:
                    logger.warning("montage: skipping shots of %s (%s); trying the next best shot",
                                   path, getattr(exc, "reason", exc))
                    bad_paths.add(path)
                    continue
                except ValueError as exc:  # e.g. a timestamp past the end of its file
                    logger.warning("montage: skipping shot %d of %s (%s); trying the next best "
                                   "shot", cand, path, exc)
                    continue
                if frames.shape[0] == 0:
                    logger.warning("montage: no frames in %s at %.3f s + %.3f s; trying the next "
                                   "best shot", path, start, self.shot_seconds)
                    continue
                break
            else:
                raise MontageError(
                    f"no shot could be decoded for phrase {phrase!r} (unreadable files: "
                    f"{sorted(bad_paths)}); check the shot paths")
            check_deadline()  # per-generation timeout, checked after every shot
            used.add(int(cand))
            prev_video = self._video_ids[cand]
            idx = np.arange(share) % frames.shape[0]  # trim, or loop when the segment is short
            pieces.append(frames[idx])
            sources.append({
                "video_id": str(self._video_ids[cand]), "timestamp_s": float(self._timestamps[cand]),
                "phrase": phrase, "similarity": float(row[cand]), "shot_index": int(cand),
                "path": str(path), "start_s": float(start), "duration_s": self.shot_seconds,
                "n_frames": int(share),
            })
        out = np.ascontiguousarray(np.concatenate(pieces, axis=0), dtype=np.uint8)
        if negative_prompt:
            logger.info("montage: negative_prompt is recorded but has no effect")
        provenance = {
            "backend": self.name, "prompt": prompt, "phrases": phrases, "seed": int(seed),
            "settings": {"negative_prompt": negative_prompt, "num_frames": int(num_frames),
                         "height": int(height), "width": int(width), "fps": float(fps),
                         "num_inference_steps": int(num_inference_steps),
                         "guidance_scale": float(guidance_scale),
                         "shot_seconds": self.shot_seconds},
            "source_shots": sources,
        }
        return Clip(frames=out, fps=float(fps), provenance=provenance)

    def _candidates(self, order: np.ndarray, used: set[int], prev_video: str | None):
        """Yield shot indices in preference order (rules in the class Notes)."""
        unused = [int(i) for i in order if int(i) not in used]
        if not unused:  # more phrases than shots: allow reuse
            unused = [int(i) for i in order]
        other = [i for i in unused if self._video_ids[i] != prev_video]
        same = [i for i in unused if self._video_ids[i] == prev_video]
        yield from other
        yield from same


register_backend("montage", MontageBackend)
