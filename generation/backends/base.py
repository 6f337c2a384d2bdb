"""Text-to-video backends: one call signature, inputs checked up front, a registry, a cache.

Every backend is called the same way (argument names follow diffusers' video pipelines:
``prompt``, ``negative_prompt``, ``num_frames``, ``height``, ``width``, ``num_inference_steps``,
``guidance_scale``, plus ``fps`` and an integer ``seed``). :meth:`Backend.generate` validates
every argument before any work is done, like diffusers' ``check_inputs``, then calls the
subclass's ``_generate`` and checks what came back.

The cache, budget, timeout and GPU lock live in :mod:`generation.cache`.
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Clip",
    "Backend",
    "BACKENDS",
    "register_backend",
    "get_backend",
    "resolve_settings",
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


# ----------------------------------------------------------------------------- settings

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


