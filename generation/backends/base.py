"""Text-to-video backends: one call signature, inputs checked up front, a registry, a cache.

Every backend is called the same way (argument names follow diffusers' video pipelines:
``prompt``, ``negative_prompt``, ``num_frames``, ``height``, ``width``, ``num_inference_steps``,
``guidance_scale``, plus ``fps`` and an integer ``seed``). :meth:`Backend.generate` validates
every argument before any work is done, like diffusers' ``check_inputs``, then calls the
subclass's ``_generate`` and checks what came back.

:class:`GenerationCache` stores each generated clip once (H.264 mp4 + JSON provenance) under a
key that is the SHA-256 of the request, so the same request is never generated twice;
:class:`GenerationBudget` caps how many clips one query and one run may generate.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import numbers
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embeddings._io import atomic_path, write_json

__all__ = [
    "Clip",
    "Backend",
    "BACKENDS",
    "register_backend",
    "get_backend",
    "cache_key",
    "resolve_settings",
    "BudgetExceeded",
    "GenerationBudget",
    "GenerationCache",
    "CacheOutcome",
]

logger = logging.getLogger(__name__)


@dataclass
class Clip:
    """A generated clip.

    Attributes
    ----------
    frames : np.ndarray
        uint8 array (F, H, W, 3), RGB.
    fps : float
        Frames per second (> 0).
    provenance : dict
        JSON-serialisable description of how the clip was made: ``backend``, ``prompt``,
        ``seed``, ``settings`` and backend-specific fields (e.g. montage ``source_shots``).
    """

    frames: np.ndarray
    fps: float
    provenance: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_frames / float(self.fps)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Backend(ABC):
    """Base class of text-to-video backends.

    Subclasses set ``name``, implement :meth:`_generate` (arguments already validated), and may
    override :meth:`check_inputs` (call ``super().check_inputs(...)`` first) for stricter rules
    and :meth:`fingerprint` so that the cache tells apart two differently configured instances.
    """

    name: str = "base"

    def generate(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        num_frames: int = 16,
        height: int = 256,
        width: int = 256,
        fps: float = 8,
        num_inference_steps: int = 25,
        guidance_scale: float = 5.0,
        seed: int = 0,
    ) -> Clip:
        """Generate one clip for ``prompt``.

        Parameters
        ----------
        prompt : str
            Non-empty text.
        negative_prompt : str or None
            What to steer away from (backends that cannot use it record it and ignore it).
        num_frames : int
            Number of frames returned, >= 1.
        height, width : int
            Frame size in pixels; positive and even (H.264 with yuv420p chroma needs even sizes).
        fps : float
            Frames per second, > 0.
        num_inference_steps : int
            Denoising steps for diffusion backends, >= 1.
        guidance_scale : float
            Classifier-free guidance scale, finite and >= 0.
        seed : int
            Random seed, >= 0. The same arguments and seed give the same clip.

        Returns
        -------
        Clip
            ``frames`` uint8 (num_frames, height, width, 3), ``fps`` and ``provenance``.

        Raises
        ------
        ValueError
            If any argument is invalid (the message names it, the value and the fix).
        RuntimeError
            If the backend returned a clip of the wrong dtype or shape (a backend bug).
        """
        settings = dict(
            negative_prompt=negative_prompt, num_frames=num_frames, height=height, width=width,
            fps=fps, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            seed=seed,
        )
        self.check_inputs(prompt, **settings)
        clip = self._generate(prompt, **settings)
        self._check_output(clip, num_frames=num_frames, height=height, width=width)
        return clip

    def check_inputs(self, prompt, *, negative_prompt, num_frames, height, width, fps,
                     num_inference_steps, guidance_scale, seed) -> None:
        """Validate the arguments of :meth:`generate`; raise ``ValueError`` naming the first bad one."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(
                f"prompt={prompt!r}: expected a non-empty string with visible text; "
                "pass a description such as 'a red circle moving right'")
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise ValueError(
                f"negative_prompt={negative_prompt!r}: expected a string or None; "
                "pass text or leave it out")
        if not _is_int(num_frames) or num_frames < 1:
            raise ValueError(
                f"num_frames={num_frames!r}: expected an integer >= 1; pass e.g. num_frames=16")
        for arg, value in (("height", height), ("width", width)):
            if not _is_int(value) or value < 2 or value % 2:
                fix = (f"pass {arg}={value + 1}" if _is_int(value) and value > 0
                       else f"pass e.g. {arg}=256")
                raise ValueError(
                    f"{arg}={value!r}: expected a positive even integer (H.264 mp4 with yuv420p "
                    f"chroma needs even frame sizes); {fix}")
        if not _is_real(fps) or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps={fps!r}: expected a finite number > 0; pass e.g. fps=8")
        if not _is_int(num_inference_steps) or num_inference_steps < 1:
            raise ValueError(
                f"num_inference_steps={num_inference_steps!r}: expected an integer >= 1; "
                "pass e.g. num_inference_steps=25")
        if not _is_real(guidance_scale) or not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(
                f"guidance_scale={guidance_scale!r}: expected a finite number >= 0; "
                "pass e.g. guidance_scale=5.0 (1.0 or less disables classifier-free guidance)")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed={seed!r}: expected an integer >= 0; pass e.g. seed=0")

    @abstractmethod
    def _generate(self, prompt: str, *, negative_prompt, num_frames, height, width, fps,
                  num_inference_steps, guidance_scale, seed) -> Clip:
        """Produce the clip; arguments are already validated."""

    def fingerprint(self) -> dict:
        """JSON-serialisable identity of this backend's configuration, part of the cache key.

        The default is ``{"name": self.name}``; backends whose output depends on data or weights
        add a digest of them.
        """
        return {"name": self.name}

    def _check_output(self, clip: Any, *, num_frames: int, height: int, width: int) -> None:
        if not isinstance(clip, Clip):
            raise RuntimeError(
                f"backend {self.name!r} returned {type(clip).__name__}, expected a Clip (backend bug)")
        frames = clip.frames
        expected = (num_frames, height, width, 3)
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise RuntimeError(
                f"backend {self.name!r} returned frames of dtype "
                f"{getattr(frames, 'dtype', type(frames).__name__)}, expected uint8 (backend bug)")
        if frames.shape != expected:
            raise RuntimeError(
                f"backend {self.name!r} returned frames of shape {frames.shape}, expected "
                f"{expected} = (num_frames, height, width, 3) (backend bug)")
        if not _is_real(clip.fps) or not math.isfinite(clip.fps) or clip.fps <= 0:
            raise RuntimeError(f"backend {self.name!r} returned fps={clip.fps!r} (backend bug)")


# ----------------------------------------------------------------------------- registry

BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str, factory: Callable[..., Backend], *, overwrite: bool = False) -> None:
    """Register ``factory`` (a Backend subclass or a callable returning one) under ``name``.

    Raises
    ------
    ValueError
        If ``name`` is empty, ``factory`` is not callable, or ``name`` is taken and
        ``overwrite`` is False.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name={name!r}: expected a non-empty string such as 'montage'")
    if not callable(factory):
        raise ValueError(f"factory={factory!r}: expected a callable returning a Backend")
    if name in BACKENDS and not overwrite and BACKENDS[name] is not factory:
        raise ValueError(
            f"name={name!r} is already registered to {BACKENDS[name]!r}; "
            "pass overwrite=True to replace it or choose another name")
    BACKENDS[name] = factory


def get_backend(name: str, **kwargs: Any) -> Backend:
    """Build the backend registered as ``name`` with ``kwargs``.

    Raises
    ------
    ValueError
        If ``name`` is not registered (the message lists the registered names).
    """
    if name not in BACKENDS:
        raise ValueError(
            f"backend name={name!r} is not registered; expected one of {sorted(BACKENDS)}; "
            "register it with generation.register_backend(name, factory)")
    backend = BACKENDS[name](**kwargs)
    if not isinstance(backend, Backend):
        raise RuntimeError(f"factory for {name!r} returned {type(backend).__name__}, not a Backend")
    return backend


# ----------------------------------------------------------------------------- cache + budget

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
        sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def resolve_settings(settings: dict) -> dict:
    """Return ``settings`` with every omitted :meth:`Backend.generate` keyword at its default.

    So that ``{}`` and ``{"num_frames": 16}`` (the default) give the same cache key.

    Raises
    ------
    ValueError
        If ``settings`` has a key that ``generate`` does not take.
    """
    params = inspect.signature(Backend.generate).parameters
    defaults = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(f"generate_kwargs has unknown keys {unknown}; expected some of {sorted(defaults)}")
    return {**defaults, **settings}


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


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
    on_exceeded : {"raise", "skip"}
        "raise": :meth:`check` raises :class:`BudgetExceeded`; "skip": it returns the reason.

    Cache hits are free: only real generations are charged.
    """

    max_per_query: int | None = None
    max_per_run: int | None = None
    on_exceeded: str = "raise"
    per_query: dict = field(default_factory=dict, init=False)
    n_run: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        for arg in ("max_per_query", "max_per_run"):
            value = getattr(self, arg)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"{arg}={value!r}: expected None or an integer >= 0")
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
        from embeddings.video import write_video

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
        clip = backend.generate(prompt, **generate_kwargs)
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
