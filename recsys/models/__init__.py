"""Recommender models sharing one interface (:class:`Recommender`) and a name registry."""

from __future__ import annotations

from typing import Any

from .base import NotFittedError, Recommender
from .ease import EASE
from .factorization import ALS, BPR
from .itemknn import ItemKNN
from .popularity import Popularity

__all__ = [
    "MODELS",
    "make_model",
    "Recommender",
    "NotFittedError",
    "Popularity",
    "EASE",
    "ItemKNN",
    "ALS",
    "BPR",
]

MODELS: dict[str, type[Recommender]] = {
    "popularity": Popularity,
    "ease": EASE,
    "itemknn": ItemKNN,
    "als": ALS,
    "bpr": BPR,
}


def make_model(name: str, **params: Any) -> Recommender:
    """Build an unfitted model by registry name.

    Parameters
    ----------
    name : str
        One of ``MODELS`` (case-insensitive): "popularity", "ease", "itemknn", "als", "bpr".
    **params
        Constructor arguments of that model.

    Returns
    -------
    Recommender
        Unfitted; parameter values are validated by ``fit``.

    Raises
    ------
    ValueError
        Unknown name (lists the valid names) or unknown parameter (lists the model's
        valid parameters).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {sorted(MODELS)}")
    cls = MODELS[key]
    valid = cls._get_param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for model {key!r}; valid parameters: {valid}"
        )
    return cls(**params)
