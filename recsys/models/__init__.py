"""Recommender models sharing one interface (:class:`Recommender`) and a name registry."""

from __future__ import annotations

from typing import Any

from .base import NotFittedError, Recommender
from .content import ContentModel, HybridColdStart, align_item_embeddings
from .content_ease import ContentEASE
from .ease import EASE
from .factorization import ALS, BPR
from .graph_filter import GraphFilter
from .itemknn import ItemKNN
from .ltr import LTRRecommender
from .popularity import Popularity
from .sequential import GRU4Rec, LastItemKNN, SASRec, SequentialRecommender, WindowKNN
from .trending import TrendingPopularity, interaction_times_matrix

__all__ = [
    "MODELS",
    "is_next_item",
    "make_model",
    "Recommender",
    "NotFittedError",
    "Popularity",
    "EASE",
    "ItemKNN",
    "LTRRecommender",
    "ALS",
    "BPR",
    "TrendingPopularity",
    "ContentModel",
    "ContentEASE",
    "GraphFilter",
    "HybridColdStart",
    "align_item_embeddings",
    "interaction_times_matrix",
    "SASRec",
    "GRU4Rec",
    "LastItemKNN",
    "WindowKNN",
    "side_inputs",
    "fit_model",
]

MODELS: dict[str, type[Recommender]] = {
    "popularity": Popularity,
    "ease": EASE,
    "itemknn": ItemKNN,
    "als": ALS,
    "bpr": BPR,
    "trending": TrendingPopularity,
    "content": ContentModel,
    "hybrid": HybridColdStart,
    "ease-content": ContentEASE,
    "graph-filter": GraphFilter,
    "ltr": LTRRecommender,
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
    "lastitem": LastItemKNN,
    "windowknn": WindowKNN,
}


def side_inputs(model: Recommender | type[Recommender]) -> tuple[str, ...]:
    """Names of the extra ``fit`` inputs a model needs besides ``user_items``.

    ``()`` for the pure collaborative models, ``("item_embeddings",)`` for ContentModel and
    HybridColdStart, ``("interaction_times",)`` for TrendingPopularity and the sequential models
    (SASRec, GRU4Rec, LastItemKNN, WindowKNN: times or positions order the histories), ``("item_features",)``
    for ContentEASE and GraphFilter (optional there: without features they use the interactions
    alone).
    """
    return tuple(getattr(model, "side_inputs", ()))


def is_next_item(name: str) -> bool:
    """Whether registry model ``name`` (case-insensitive) is a next-item model: a
    :class:`recsys.models.sequential.SequentialRecommender` (SASRec, GRU4Rec, LastItemKNN,
    WindowKNN), which ranks from the order of a user's history and is validated on each user's
    latest item (leave-last-out) rather than on a random holdout. False for unknown names."""
    cls = MODELS.get(str(name).lower())
    return cls is not None and issubclass(cls, SequentialRecommender)


# side inputs a model can also fit without
_OPTIONAL_SIDE_INPUTS = frozenset({"item_features"})


def fit_model(model: Recommender, user_items: Any, **available: Any) -> Recommender:
    """Fit ``model`` passing the side inputs it declares (:func:`side_inputs`) from ``available``.

    Parameters
    ----------
    model : Recommender
    user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
    **available
        ``item_embeddings`` (n_items, d) and/or ``interaction_times`` (CSR like
        ``user_items``); inputs the model does not use are ignored.

    Returns
    -------
    Recommender
        ``model``, fitted.

    Raises
    ------
    ValueError
        A needed side input is missing or None (names it and which model needs it).
    """
    kwargs = {}
    for name in side_inputs(model):
        if name in _OPTIONAL_SIDE_INPUTS:
            kwargs[name] = available.get(name)
            continue
        if available.get(name) is None:
            raise ValueError(
                f"{type(model).__name__} needs {name} to fit; none was given; fix: pass "
                + ("--embeddings EMB_DIR (an embedding folder of the items)" if name ==
                   "item_embeddings" else "an interaction log with a timestamp column")
            )
        kwargs[name] = available[name]
    return model.fit(user_items, **kwargs)


def make_model(name: str, **params: Any) -> Recommender:
    """Build an unfitted model by registry name.

    Parameters
    ----------
    name : str
        One of ``MODELS`` (case-insensitive): "popularity", "trending", "ease", "itemknn",
        "als", "bpr", "content", "hybrid".
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
