"""Text-to-video backends behind one interface (see :mod:`generation.backends.base`).

Registered names: ``"montage"`` (:class:`~generation.backends.montage.MontageBackend`).
"""

from .base import (
    BACKENDS,
    Backend,
    BudgetExceeded,
    CacheOutcome,
    Clip,
    GenerationBudget,
    GenerationCache,
    cache_key,
    get_backend,
    register_backend,
    resolve_settings,
)
from .montage import MontageBackend, MontageError, split_phrases

__all__ = [
    "BACKENDS",
    "Backend",
    "BudgetExceeded",
    "CacheOutcome",
    "Clip",
    "GenerationBudget",
    "GenerationCache",
    "MontageBackend",
    "MontageError",
    "cache_key",
    "get_backend",
    "register_backend",
    "resolve_settings",
    "split_phrases",
]
