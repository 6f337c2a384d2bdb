"""Fusing ranked candidate lists from several sources into one list per user.

* :func:`reciprocal_rank_fusion`: ``score(d) = sum_s w_s / (rrf_k + rank_s(d))`` with 1-based
  ranks, ``rrf_k = 60`` (Cormack, Clarke & Buettcher, "Reciprocal Rank Fusion outperforms
  Condorcet and individual Rank Learning Methods", SIGIR 2009).
* :func:`weighted_score_fusion`: ``score(d) = sum_s w_s * minmax_s(score_s(d))``, each source's
  scores min-max scaled to [0, 1] per user (CombSUM of normalised scores, Fox & Shaw 1994);
  a source that did not propose ``d`` contributes 0.

* :func:`collaborative_first`: the primary (collaborative) source's order unchanged, the other
  sources' items (RRF among themselves) after it: fusion that can never reorder the best source,
  the safe default when no validation data chose fusion weights.

Inputs are per-source ``(ids, scores)`` arrays of shape ``(n_users, n_s)`` (``-1`` / ``-inf``
padding), as every recommender returns them. Outputs keep, for every fused item, which
sources proposed it with their rank and score.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FusedList", "reciprocal_rank_fusion", "weighted_score_fusion", "collaborative_first",
           "FUSIONS"]

FusedList = list  # list of (item_index, fused_score, {source: {"rank", "score"}}), best first


def _check(sources: dict, weights: dict | None) -> tuple[int, dict]:
    if not sources:
        raise ValueError("sources is empty; pass at least one {name: (ids, scores)}")
    n = None
    for name, (ids, scores) in sources.items():
        ids, scores = np.atleast_2d(ids), np.atleast_2d(scores)
        if ids.shape != scores.shape:
            raise ValueError(f"source {name!r}: ids shape {ids.shape} != scores shape {scores.shape}")
        if n is not None and ids.shape[0] != n:
            raise ValueError(f"source {name!r} has {ids.shape[0]} users, others {n}; expected the same")
        n = ids.shape[0]
    weights = {name: 1.0 for name in sources} if weights is None else dict(weights)
    unknown = sorted(set(weights) - set(sources))
    if unknown:
        raise ValueError(f"weights name unknown sources {unknown}; sources: {sorted(sources)}")
    for name in sources:
        w = weights.setdefault(name, 1.0)
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weights[{name!r}] must be a finite number >= 0, got {w!r}")
    return n, weights


def _fuse(sources, weights, contribution) -> list[FusedList]:
    n, weights = _check(sources, weights)
    out = []
    for u in range(n):
        acc: dict[int, float] = {}
        prov: dict[int, dict] = {}
        for name, (ids, scores) in sources.items():
            ids_u, sc_u = np.atleast_2d(ids)[u], np.atleast_2d(scores)[u]
            ok = ids_u >= 0
            contrib = contribution(sc_u[ok], weights[name])
            for r, (item, s, c) in enumerate(zip(ids_u[ok].tolist(), sc_u[ok].tolist(),
                                                 contrib.tolist(), strict=True)):
                acc[item] = acc.get(item, 0.0) + c
                prov.setdefault(item, {})[name] = {"rank": r + 1, "score": float(s)}
        order = sorted(acc, key=lambda i: (-acc[i], i))
        out.append([(i, acc[i], prov[i]) for i in order])
    return out


def reciprocal_rank_fusion(sources: dict, *, rrf_k: float = 60.0,
                           weights: dict | None = None) -> list[FusedList]:
    """Reciprocal rank fusion (Cormack et al. 2009) of per-source ranked lists.

    Parameters
    ----------
    sources : dict[str, tuple[np.ndarray, np.ndarray]]
        ``{name: (ids int (n_users, n_s), scores float (n_users, n_s))}``, best first,
        ``-1`` padding ignored.
    rrf_k : float
        The constant ``k`` of the paper (60).
    weights : dict[str, float], optional
        Per-source multipliers (default 1 each).

    Returns
    -------
    list (one per user) of lists of ``(item_index, fused_score, provenance)``
        Fused score descending, ties to the lower item index; ``provenance`` maps each source
        that proposed the item to ``{"rank": 1-based, "score": the source's score}``.

    Raises
    ------
    ValueError
        Empty ``sources``, mismatched shapes or user counts, bad ``rrf_k`` or weights.
    """
    if not np.isfinite(rrf_k) or rrf_k < 0:
        raise ValueError(f"rrf_k must be a finite number >= 0 (the paper uses 60), got {rrf_k!r}")

    def contribution(scores, w):
        return w / (rrf_k + np.arange(1, scores.size + 1, dtype=np.float64))

    return _fuse(sources, weights, contribution)


def weighted_score_fusion(sources: dict, *, weights: dict | None = None) -> list[FusedList]:
    """Weighted sum of per-user min-max normalised source scores (CombSUM).

    Parameters and returns as :func:`reciprocal_rank_fusion`. A source whose proposed scores
    are all equal for a user gives each of them 1.0 (times its weight).
    """

    def contribution(scores, w):
        if scores.size == 0:
            return scores
        lo, hi = float(scores.min()), float(scores.max())
        scaled = np.ones_like(scores) if hi == lo else (scores - lo) / (hi - lo)
        return w * scaled

    return _fuse(sources, weights, contribution)


def collaborative_first(sources: dict, *, primary: str = "collaborative", rrf_k: float = 60.0,
                        weights: dict | None = None) -> list[FusedList]:
    """The primary source's list unchanged, then the other sources' items fused by RRF.

    Scores: ``1 + 1 / (rrf_k + rank)`` for the primary's items (so its order is kept), the
    RRF score of the other sources (< 1 for fewer than ``rrf_k`` sources) for the rest.
    Provenance lists every source that proposed an item. ``weights`` apply to the others' RRF.

    Parameters and returns as :func:`reciprocal_rank_fusion`.

    Raises
    ------
    ValueError
        ``primary`` not in ``sources``, or what :func:`reciprocal_rank_fusion` raises.
    """
    if primary not in sources:
        raise ValueError(f"primary source {primary!r} is not among the sources {sorted(sources)}")
    first = reciprocal_rank_fusion({primary: sources[primary]}, rrf_k=rrf_k)
    rest_src = {k: v for k, v in sources.items() if k != primary}
    rest_w = None if weights is None else {k: v for k, v in weights.items() if k != primary}
    rest = (reciprocal_rank_fusion(rest_src, rrf_k=rrf_k, weights=rest_w) if rest_src
            else [[] for _ in first])
    out = []
    for prim, others in zip(first, rest, strict=True):
        prov = {i: p for i, _, p in others}
        head = [(i, 1.0 + s, {**p, **prov.get(i, {})}) for i, s, p in prim]
        seen = {i for i, _, _ in prim}
        out.append(head + [(i, s, p) for i, s, p in others if i not in seen])
    return out


FUSIONS = {"collaborative": collaborative_first, "rrf": reciprocal_rank_fusion,
           "weighted": weighted_score_fusion}
