"""Generation cache, budget, per-generation timeout and the one-generation-per-GPU lock.

- :func:`cache_key`: SHA-256 of (prompt, backend fingerprint, resolved settings, seed).
- :class:`GenerationCache`: each generated clip stored once (H.264 mp4 + JSON provenance)
  under its key, so the same request is never generated twice.
- :class:`GenerationBudget`: at most ``max_per_query`` / ``max_per_run`` generations, and
  ``timeout_s`` seconds per generation (enforced by :func:`run_generation`).
- :func:`device_lock`: one lock per CUDA device, held by GPU backends around a pipeline call so
  only one generation at a time runs on a GPU (within this process).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embeddings._io import atomic_path, json_default, write_json

from .backends.base import Backend, Clip, _is_int, resolve_settings

__all__ = [
    "cache_key",
    "BudgetExceeded",
    "GenerationTimeout",
    "GenerationBudget",
    "GenerationCache",
    "CacheOutcome",
    "run_generation",
    "check_deadline",
    "device_lock",
]

logger = logging.getLogger(__name__)

def cache_key(prompt: str, backend: Backend | str, settings: dict, seed: int) -> str:
    """SHA-256 hex digest identifying one generation request.

    Parameters
    ----------
    prompt : str
        The prompt, exactly as passed to ``generate``.
    backend : Backend or str
        A backend (its :meth:`Backend.fingerprint` is hashed) or a backend name.
    settings : dict
        The other ``generate`` arguments (``seed`` is taken from the ``seed`` argument).
    seed : int

    Returns
    -------
    str
        64 hex characters; the SHA-256 of canonical JSON (sorted keys) of the four parts.
    """
    ident = backend.fingerprint() if isinstance(backend, Backend) else {"name": str(backend)}
    settings = {k: v for k, v in resolve_settings(settings).items() if k != "seed"}
    payload = json.dumps(
        {"prompt": prompt, "backend": ident, "settings": settings, "seed": int(seed)},
        sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class BudgetExceeded(RuntimeError):
    """Raised when a generation would go over :class:`GenerationBudget` limits.

    Attributes ``query``, ``limit`` ("max_per_query" or "max_per_run") and ``reason``.
    """

    def __init__(self, query: str | None, limit: str, reason: str):
        super().__init__(reason)
        self.query = query
        self.limit = limit
        self.reason = reason


@dataclass
class GenerationBudget:
    """Counters capping generations per query and per run.

    Parameters
    ----------
    max_per_query : int or None
        Most clips generated for one query (None: no cap).
    max_per_run : int or None
        Most clips generated in total by this budget object (None: no cap).
    timeout_s : float or None
        Seconds allowed per generation (None: no limit), see :func:`run_generation`. A
        generation that times out is charged (it used the device) and not cached; with
        ``on_exceeded="skip"`` the reason is reported like a spent budget.
    on_exceeded : {"raise", "skip"}
        "raise": :meth:`check` raises :class:`BudgetExceeded`; "skip": it returns the reason.

    Cache hits are free: only real generations are charged.
    """

    max_per_query: int | None = None
    max_per_run: int | None = None
    on_exceeded: str = "raise"
    timeout_s: float | None = None
    per_query: dict = field(default_factory=dict, init=False)
    n_run: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        for arg in ("max_per_query", "max_per_run"):
            value = getattr(self, arg)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"{arg}={value!r}: expected None or an integer >= 0")
        _check_timeout(self.timeout_s)
        if self.on_exceeded not in ("raise", "skip"):
            raise ValueError(
                f"on_exceeded={self.on_exceeded!r}: expected 'raise' or 'skip'")

    def check(self, query: str | None = None) -> str | None:
        """Return None if one more generation for ``query`` is allowed, else the reason.

        Raises
        ------
        BudgetExceeded
            If the budget is spent and ``on_exceeded == "raise"``.
        """
        reason = limit = None
        if self.max_per_run is not None and self.n_run >= self.max_per_run:
            limit = "max_per_run"
            reason = f"run budget spent: {self.n_run} of max_per_run={self.max_per_run} clips generated"
        elif self.max_per_query is not None and self.per_query.get(query, 0) >= self.max_per_query:
            limit = "max_per_query"
            reason = (f"query budget spent for {query!r}: {self.per_query.get(query, 0)} of "
                      f"max_per_query={self.max_per_query} clips generated")
        if reason is not None and self.on_exceeded == "raise":
            raise BudgetExceeded(query, limit, reason)
        return reason

    def charge(self, query: str | None = None) -> None:
        """Count one generation for ``query``."""
        self.n_run += 1
        self.per_query[query] = self.per_query.get(query, 0) + 1


@dataclass
class CacheOutcome:
    """What :meth:`GenerationCache.get_or_generate` did.

    ``clip`` is None only when skipped by the budget (``skipped_reason`` says why);
    ``path`` is the cached mp4 and ``hit`` tells whether it was already there.
    """

    key: str
    clip: Clip | None
    path: Path | None
    hit: bool
    skipped_reason: str | None = None


class GenerationCache:
    """Generated clips on disk: ``folder/<key>.mp4`` + ``folder/<key>.json`` (provenance).

    Parameters
    ----------
    folder : path-like
        Created if missing. Files are written atomically (temporary name + rename), the mp4
        first, so a JSON file always has its mp4.
    crf : int
        H.264 constant rate factor used when storing clips (lower = better quality).
    """

    def __init__(self, folder: str | os.PathLike, *, crf: int = 18):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.crf = crf

    def paths(self, key: str) -> tuple[Path, Path]:
        """Return (mp4 path, JSON path) for ``key``."""
        return self.folder / f"{key}.mp4", self.folder / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        mp4, meta = self.paths(key)
        return mp4.is_file() and meta.is_file()

    def store(self, key: str, clip: Clip) -> Path:
        """Write ``clip`` under ``key``; return the mp4 path."""
        from embeddings.video.write import write_video

        mp4, meta = self.paths(key)
        write_video(mp4, clip.frames, clip.fps, crf=self.crf)
        write_json(meta, {"key": key, "fps": float(clip.fps), "n_frames": clip.n_frames,
                          "height": int(clip.frames.shape[1]), "width": int(clip.frames.shape[2]),
                          "provenance": clip.provenance})
        return mp4

    def load(self, key: str) -> Clip | None:
        """Return the cached clip for ``key`` (frames decoded from the mp4), or None if absent."""
        if key not in self:
            return None
        mp4, meta_path = self.paths(key)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        frames = _decode_all(mp4, meta["n_frames"], meta["height"], meta["width"])
        return Clip(frames=frames, fps=float(meta["fps"]), provenance=meta["provenance"])

    def get_or_generate(self, backend: Backend, prompt: str, *, query: str | None = None,
                        budget: GenerationBudget | None = None, **generate_kwargs: Any) -> CacheOutcome:
        """Return the cached clip for this request, generating and storing it on a miss.

        Parameters
        ----------
        backend : Backend
        prompt : str
        query : str or None
            The query the budget is charged to (defaults to ``prompt``).
        budget : GenerationBudget or None
            Checked and charged only on a cache miss.
        **generate_kwargs
            Passed to :meth:`Backend.generate` (``seed`` included).

        Raises
        ------
        BudgetExceeded
            On a miss with a spent budget whose ``on_exceeded == "raise"``.
        GenerationTimeout
            Over ``budget.timeout_s`` with ``on_exceeded == "raise"`` (with "skip": the outcome
            has ``clip=None`` and the reason).
        ValueError
            From :meth:`Backend.generate` argument checks.
        """
        key = cache_key(prompt, backend, generate_kwargs, generate_kwargs.get("seed", 0))
        mp4, _ = self.paths(key)
        clip = self.load(key)
        if clip is not None:
            logger.info("generation cache hit %s for prompt %r", key[:12], prompt)
            return CacheOutcome(key=key, clip=clip, path=mp4, hit=True)
        query = prompt if query is None else query
        if budget is not None:
            reason = budget.check(query)
            if reason is not None:
                logger.warning("skipping generation for %r: %s", prompt, reason)
                return CacheOutcome(key=key, clip=None, path=None, hit=False, skipped_reason=reason)
        timeout_s = budget.timeout_s if budget is not None else None
        try:
            clip = run_generation(backend, prompt, timeout_s=timeout_s, **generate_kwargs)
        except GenerationTimeout as exc:
            if budget is None:
                raise
            budget.charge(query)
            if budget.on_exceeded == "raise":
                raise
            logger.warning("skipping generation for %r: %s", prompt, exc)
            return CacheOutcome(key=key, clip=None, path=None, hit=False, skipped_reason=str(exc))
        if budget is not None:
            budget.charge(query)
        self.store(key, clip)
        return CacheOutcome(key=key, clip=clip, path=mp4, hit=False)

    def copy_to(self, key: str, dest: str | os.PathLike) -> Path:
        """Copy the cached mp4 of ``key`` to ``dest`` atomically; return ``dest``."""
        mp4, _ = self.paths(key)
        dest = Path(dest)
        with atomic_path(dest) as tmp:
            shutil.copyfile(mp4, tmp)
        return dest


def _decode_all(path: Path, n_frames: int, height: int, width: int) -> np.ndarray:
    """Decode every frame of a clip this cache wrote; crop the even-size padding if any."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24")[:height, :width])
            if len(frames) == n_frames:
                break
    if len(frames) != n_frames:
        raise RuntimeError(f"cached clip {path} has {len(frames)} frames, its JSON says {n_frames}; "
                           "delete both files to regenerate")
    return np.stack(frames).astype(np.uint8, copy=False)


# ----------------------------------------------------------------------------- timeout + lock

class GenerationTimeout(RuntimeError):
    """A generation ran past its ``timeout_s`` (attributes ``prompt``, ``timeout_s``, ``elapsed_s``)."""

    def __init__(self, prompt: str, timeout_s: float, elapsed_s: float):
        super().__init__(
            f"generation for prompt {prompt!r} ran {elapsed_s:.2f} s, over timeout_s={timeout_s:g} s; "
            "raise GenerationBudget(timeout_s=...), lower num_inference_steps/num_frames, or use a GPU")
        self.prompt, self.timeout_s, self.elapsed_s = prompt, timeout_s, elapsed_s


_DEADLINE = threading.local()


def check_deadline() -> None:
    """Raise :class:`GenerationTimeout` if the generation running in this thread is over time.

    Backends call it between units of work (a denoising step, a montage shot): a timeout is
    cooperative, so a running step is never killed half-way (Python cannot stop a thread, and a
    CUDA kernel cannot be interrupted safely); the step in progress finishes first.
    No-op outside :func:`run_generation` or without a timeout.
    """
    state = getattr(_DEADLINE, "state", None)
    if state is None:
        return
    prompt, timeout_s, start = state
    elapsed = time.perf_counter() - start
    if elapsed > timeout_s:
        raise GenerationTimeout(prompt, timeout_s, elapsed)


def run_generation(backend: Backend, prompt: str, *, timeout_s: float | None = None,
                   **generate_kwargs: Any) -> Clip:
    """``backend.generate(prompt, **generate_kwargs)`` under a per-generation timeout.

    Parameters
    ----------
    backend : Backend
    prompt : str
    timeout_s : float or None
        Seconds allowed (> 0); None: no limit. Checked cooperatively through
        :func:`check_deadline` (diffusers: after every denoising step; montage: after every
        shot) and once more when ``generate`` returns, so a clip that took too long is never
        returned or cached.
    **generate_kwargs
        :meth:`Backend.generate` keywords.

    Returns
    -------
    Clip

    Raises
    ------
    ValueError
        Bad ``timeout_s`` or generate arguments.
    GenerationTimeout
        When the generation ran past ``timeout_s``.
    """
    if timeout_s is None:
        return backend.generate(prompt, **generate_kwargs)
    _check_timeout(timeout_s)
    previous = getattr(_DEADLINE, "state", None)
    start = time.perf_counter()
    _DEADLINE.state = (prompt, float(timeout_s), start)
    try:
        clip = backend.generate(prompt, **generate_kwargs)
        check_deadline()
    finally:
        _DEADLINE.state = previous
    return clip


def _check_timeout(timeout_s) -> None:
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not math.isfinite(timeout_s) or timeout_s <= 0):
        raise ValueError(f"timeout_s={timeout_s!r}: expected None or a finite number of seconds > 0; "
                         "pass e.g. timeout_s=600")


_DEVICE_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def device_lock(device: str) -> Iterator[None]:
    """Hold the process-wide lock of ``device`` (``"cuda"`` is ``"cuda:0"``) while generating.

    One generation at a time per GPU: two diffusion pipelines on one device would share its
    memory and each run at half speed at best, or run out of memory. ``"cpu"`` devices share a
    lock as well (a tiny CPU pipeline run is never concurrent either). The lock is per process:
    separate processes must be given separate devices.
    """
    key = "cuda:0" if device == "cuda" else str(device)
    with _LOCKS_GUARD:
        lock = _DEVICE_LOCKS.setdefault(key, threading.Lock())
    if not lock.acquire(blocking=False):
        logger.info("waiting for %s: another generation is running on it", key)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
