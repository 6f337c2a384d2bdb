"""Candidate retrieval (recall-oriented first stage): one small class per source.

Every source has a ``name`` and ``retrieve(user_index, rows, n) -> (ids, scores)``: for each
user, up to ``n`` item indices **not in the user's row** (seen items never become
candidates), best first, shapes ``(n_users, n)``, padded with ``-1`` / ``-inf``.

* :class:`CollaborativeSource`: top-``n`` of a fitted recommender (EASE, ALS, ...).
* :class:`ContentSource`: nearest neighbours, in a FAISS index of item embeddings
  (:class:`embeddings.index.video_index.VideoIndex`), of the user's history profile (mean of the watched
  items' unit embeddings, see :class:`recsys.models.ContentModel`).
* :class:`PopularitySource`: the most popular unseen items (also the cold-start fallback).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.models.base import check_user_items, topk

__all__ = ["CollaborativeSource", "ContentSource", "PopularitySource"]


def _pad(n_users: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n_users, n), -1, np.int64), np.full((n_users, n), -np.inf, np.float32)


class CollaborativeSource:
    """Top-``n`` unseen items of a fitted :class:`recsys.models.Recommender`.

    Parameters
    ----------
    model : Recommender
        Fitted on the training matrix whose rows are passed to ``retrieve``.
    name : str
        Source name reported with every candidate (default ``"collaborative"``).
    """

    def __init__(self, model, name: str = "collaborative") -> None:
        self.model = model
        self.name = name

    def retrieve(self, user_index, rows: sp.csr_matrix, n: int):
        """Model scores; see module docstring for shapes and padding."""
        ids, scores = self.model.recommend(np.asarray(user_index, dtype=np.int64), rows, k=n,
                                           filter_already_liked_items=True)
        return np.atleast_2d(ids), np.atleast_2d(scores)


class PopularitySource:
    """Most popular unseen items (distinct users per item in ``user_items``).

    Parameters
    ----------
    user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
        Training matrix the counts are taken from.
    name : str
    """

    def __init__(self, user_items: sp.csr_matrix, name: str = "popularity") -> None:
        ui = check_user_items(user_items)
        self.counts = np.bincount(ui.indices[ui.data != 0], minlength=ui.shape[1]).astype(np.float32)
        self.name = name

    def retrieve(self, user_index, rows: sp.csr_matrix, n: int):
        """Counts as scores; seen items removed."""
        rows = check_user_items(rows, "rows")
        s = np.tile(self.counts, (rows.shape[0], 1))
        r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        s[r, rows.indices] = -np.inf
        return topk(s, n)


class ContentSource:
    """Nearest neighbours of the user's history profile in an embedding index.

    Parameters
    ----------
    item_embeddings : np.ndarray, float32, shape (n_items, d)
        Unit rows aligned with the item columns.
    index : embeddings.index.video_index.VideoIndex, optional
        A FAISS index holding these items under ``video_id = str(item_index)``; built here as
        an exact ``"Flat"`` inner-product index when not given.
    name : str

    Notes
    -----
    Users with an empty row get no content candidates (all padding).
    """

    def __init__(self, item_embeddings: np.ndarray, index=None, name: str = "content") -> None:
        from recsys.models.content import check_item_embeddings

        self.item_embeddings = check_item_embeddings(item_embeddings, np.shape(item_embeddings)[0])
        if index is None:
            from embeddings.index.video_index import VideoIndex

            ids = [str(i) for i in range(self.item_embeddings.shape[0])]
            index = VideoIndex.build(self.item_embeddings, ids, factory_string="Flat", metric="ip",
                                     device="cpu")
        self.index = index
        self.name = name

    def profiles(self, rows: sp.csr_matrix) -> np.ndarray:
        """Unit mean embedding of each row's items, float32 (n, d); zero for empty rows."""
        b = sp.csr_matrix(rows, dtype=np.float32, copy=True)
        b.data = (b.data != 0).astype(np.float32)
        prof = np.asarray(b @ self.item_embeddings, dtype=np.float32)
        norm = np.linalg.norm(prof, axis=1, keepdims=True)
        return np.divide(prof, norm, out=np.zeros_like(prof), where=norm > 0)

    def retrieve(self, user_index, rows: sp.csr_matrix, n: int):
        """Inner product with the profile (cosine); seen items removed."""
        rows = check_user_items(rows, "rows")
        ids, scores = _pad(rows.shape[0], n)
        prof = self.profiles(rows)
        has = np.flatnonzero(np.diff(rows.indptr) > 0)
        if has.size == 0:
            return ids, scores
        depth = min(n + int(np.diff(rows.indptr).max()), self.index.ntotal)
        res = self.index.search(prof[has], depth)
        for j, u in enumerate(has):
            seen = set(rows.indices[rows.indptr[u]:rows.indptr[u + 1]].tolist())
            got = [(int(v), float(s)) for v, s in zip(res.ids[j], res.scores[j], strict=True)
                   if v is not None and int(v) not in seen][:n]
            if got:
                ids[u, :len(got)] = [g[0] for g in got]
                scores[u, :len(got)] = [g[1] for g in got]
        return ids, scores
