"""Text-to-video backends behind one interface (see :mod:`generation.backends.base`).

Registered names: ``"montage"`` (:class:`~generation.backends.montage.MontageBackend`, CPU)
and ``"diffusers"`` (:class:`~generation.backends.diffusers_backend.DiffusersBackend`: Wan 2.1,
LTX-Video, CogVideoX; needs the ``generation`` extra and, for real weights, a GPU). The cache,
budget, timeout and GPU lock are in :mod:`generation.cache` (re-exported here).
"""

from ..cache import (
    BudgetExceeded,
    CacheOutcome,
    GenerationBudget,
    GenerationCache,
    GenerationTimeout,
    cache_key,
    check_deadline,
    device_lock,
    run_generation,
)
from .base import BACKENDS, Backend, Clip, get_backend, register_backend, resolve_settings
from .diffusers_backend import DiffusersBackend, DiffusersUnavailable
from .montage import MontageBackend, MontageError, split_phrases

__all__ = [
    "BACKENDS",
    "Backend",
    "BudgetExceeded",
    "CacheOutcome",
    "Clip",
    "GenerationBudget",
    "GenerationCache",
    "GenerationTimeout",
    "DiffusersBackend",
    "DiffusersUnavailable",
    "MontageBackend",
    "MontageError",
    "cache_key",
    "check_deadline",
    "device_lock",
    "run_generation",
    "get_backend",
    "register_backend",
    "resolve_settings",
    "split_phrases",
]
