"""Generative backfill: text-to-video backends, retrieval confidence, and the backfill loop.

- :mod:`generation.backends`: one ``Backend.generate(prompt, ...)`` interface and a registry
  (``get_backend``); ``"montage"`` cuts real shots matching each phrase of the prompt (CPU),
  ``"diffusers"`` runs Wan 2.1 / LTX-Video / CogVideoX (GPU; toy pipelines in code for tests).
- :mod:`generation.cache`: content-addressed ``GenerationCache``, ``GenerationBudget`` (per query,
  per run, timeout per generation), ``device_lock`` (one generation at a time per GPU).
- :mod:`generation.confidence`: features of a top-k list, confidence in [0, 1], thresholds,
  an optional ``Calibrator``.
- :mod:`generation.calibration`: fit the gate on labelled queries (calibrated probability,
  split-conformal threshold), AUROC, risk-coverage curve, ``calibration.json`` with the index.
- :mod:`generation.results`: synthetic items excluded from or capped in result lists.
- :mod:`generation.backfill`: ``backfill(query, encoder=, index=, backend=, out_dir=)``.

Imports ``embeddings`` only, never ``recsys``.
"""

from .backends import (
    BACKENDS,
    Backend,
    BudgetExceeded,
    Clip,
    DiffusersBackend,
    GenerationBudget,
    GenerationCache,
    GenerationTimeout,
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
    "DiffusersBackend",
    "GenerationTimeout",
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
