"""Generative backfill: text-to-video backends, retrieval confidence, and the backfill loop.

- :mod:`generation.backends`: one ``Backend.generate(prompt, ...)`` interface, a registry
  (``get_backend``), a content-addressed ``GenerationCache`` and a ``GenerationBudget``;
  the ``"montage"`` backend cuts real shots matching each phrase of the prompt.
- :mod:`generation.confidence`: features of a top-k list, confidence in [0, 1], thresholds,
  an optional ``Calibrator``.
- :mod:`generation.backfill`: ``backfill(query, encoder=, index=, backend=, out_dir=)``.

Imports ``embeddings`` only, never ``recsys``.
"""

from .backends import (
    BACKENDS,
    Backend,
    BudgetExceeded,
    Clip,
    GenerationBudget,
    GenerationCache,
    MontageBackend,
    get_backend,
    register_backend,
)
from .backfill import BackfillResult, backfill
from .confidence import (
    DEFAULT_THRESHOLDS,
    Calibrator,
    confidence_features,
    confidence_score,
    default_threshold,
    needs_backfill,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackfillResult",
    "BudgetExceeded",
    "Calibrator",
    "Clip",
    "DEFAULT_THRESHOLDS",
    "GenerationBudget",
    "GenerationCache",
    "MontageBackend",
    "backfill",
    "confidence_features",
    "confidence_score",
    "default_threshold",
    "get_backend",
    "needs_backfill",
    "register_backend",
]
