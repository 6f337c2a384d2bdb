"""Beyond-accuracy metrics of top-K lists: catalog coverage, novelty, intra-list diversity.

Inputs: ``recommended`` int (n_users, m) item_index, best first, ``-1`` padding (first ``k``
columns read). Unlike the relevance metrics of :mod:`recsys.evaluation.metrics` these need no ground truth
but data about the catalogue: its size, the training popularity of each item, or item
embeddings.

==============  ===========================================================  ====================
name            formula                                                      source
==============  ===========================================================  ====================
coverage@k      |union of the items in all top-k lists| / n_catalog           Ge, Delgado-Battenfeld
                (one number for the whole run, not per user)                 & Jannach, RecSys 2010
novelty@k       mean over the list of -log2(p_i), p_i = (training users who  Zhou et al., PNAS 2010;
                interacted with i) / n_train_users                           MS Recommenders novelty
diversity@k     intra-list diversity: mean over the list's item pairs of     Ziegler et al., WWW
                (1 - cosine(e_i, e_j)) of the item embeddings                2005
==============  ===========================================================  ====================

An item with no training interaction has p_i = 0 and unbounded self-information; novelty counts
it as seen by one user (p_i = 1 / n_train_users), the largest finite value; the number of such
recommended items is what :func:`novelty_at_k` documents, not hides. A list with fewer than two
items has no pairs: its diversity is NaN.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.evaluation.metrics import cut_lists, lists_to_csr

__all__ = ["catalog_coverage", "novelty_at_k", "intra_list_diversity_at_k"]


def _lists(recommended, k, n_items=None, name="recommended"):
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer, e.g. 10")
    rec = np.asarray(recommended)
    if rec.ndim != 2 or not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array (n_users, k) of item_index with -1 "
                         f"padding; got dtype {rec.dtype} shape {rec.shape}")
    rec = rec[:, : int(k)].astype(np.int64)
    if rec.size and rec.min() < -1:
        raise ValueError(f"{name} holds {rec.min()}; use -1 only as padding")
    if n_items is not None and rec.size and rec.max() >= n_items:
        raise ValueError(f"{name} holds item index {rec.max()} but the catalogue has "
                         f"{n_items} items; indices must be < {n_items}")
    return rec


def _binary_lists(recommended, k, n_items, dtype=np.float64) -> sp.csr_matrix:
    """CSR (n_users, n_items) with 1 at each listed item of rank <= k (validated, no repeats).

    ``recommended`` is an int array or the matrix of :func:`recsys.evaluation.metrics.lists_to_csr`."""
    if sp.issparse(recommended):
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"k={k!r} must be a positive integer, e.g. 10")
        lists = cut_lists(sp.csr_matrix(recommended), int(k))
        if lists.shape[1] != n_items:
            raise ValueError(f"the lists matrix has {lists.shape[1]} columns but the catalogue "
                             f"has {n_items} items")
    else:
        lists = lists_to_csr(recommended, n_items, k)
    return sp.csr_matrix((np.ones(lists.nnz, dtype=dtype), lists.indices, lists.indptr),
                         shape=lists.shape)


def catalog_coverage(recommended, n_catalog: int, k: int) -> float:
    """Share of the catalogue that appears in at least one top-k list.

    Parameters
    ----------
    recommended : numpy.ndarray or scipy.sparse.csr_matrix
        int (n_users, m) item_index, -1 padding; or :func:`recsys.evaluation.metrics.lists_to_csr`'s
        matrix (validated once, shared between metrics).
    n_catalog : int
        Number of items that could be recommended (e.g. ``n_items``), >= 1.
    k : int
        Cut-off, >= 1.

    Returns
    -------
    float
        In [0, 1]; 0.0 for an empty run.

    Raises
    ------
    ValueError
        ``n_catalog`` < 1, ``k`` < 1, or item indices outside [-1, n_catalog).
    """
    if isinstance(n_catalog, bool) or int(n_catalog) != n_catalog or n_catalog < 1:
        raise ValueError(f"n_catalog={n_catalog!r} must be a positive integer (catalogue size)")
    if sp.issparse(recommended):
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"k={k!r} must be a positive integer, e.g. 10")
        lists = cut_lists(sp.csr_matrix(recommended), int(k))
        if lists.shape[1] != n_catalog:
            raise ValueError(f"the lists matrix has {lists.shape[1]} columns but n_catalog is "
                             f"{n_catalog}")
        seen = np.zeros(int(n_catalog), dtype=bool)
        seen[lists.indices] = True
        return float(seen.sum() / n_catalog)
    rec = _lists(recommended, k, int(n_catalog))
    seen = np.zeros(int(n_catalog) + 1, dtype=bool)
    seen[rec] = True  # padding -1 lands in the extra last slot
    return float(seen[:-1].sum() / n_catalog)


def novelty_at_k(recommended, item_counts, n_train_users: int, k: int) -> np.ndarray:
    """Mean self-information -log2(p_i) of each user's top-k items.

    Parameters
    ----------
    recommended : numpy.ndarray or scipy.sparse.csr_matrix
        int (n_users, m) item_index, -1 padding; or :func:`recsys.evaluation.metrics.lists_to_csr`'s
        matrix (validated once, shared between metrics).
    item_counts : array-like
        (n_items,) number of training users who interacted with each item, >= 0.
    n_train_users : int
        Number of training users (the denominator of p_i), >= 1.
    k : int
        Cut-off, >= 1.

    Returns
    -------
    numpy.ndarray
        float64 (n_users,) bits; NaN for a user whose list is empty. Items with a count of 0
        count as 1 (see the module docstring).

    Raises
    ------
    ValueError
        Negative counts, ``n_train_users`` < 1 or below a count, bad ``k`` or indices, an item
        repeated within a list.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    if counts.ndim != 1 or (counts.size and counts.min() < 0):
        raise ValueError("item_counts must be a 1-D array of non-negative counts (n_items,)")
    if int(n_train_users) < 1 or (counts.size and counts.max() > n_train_users):
        raise ValueError(f"n_train_users={n_train_users!r} must be >= 1 and >= every item "
                         f"count (max {counts.max() if counts.size else 0:g})")
    lists = _binary_lists(recommended, k, counts.size)
    info = -np.log2(np.maximum(counts, 1.0) / float(n_train_users))
    m = np.diff(lists.indptr)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m > 0, (lists @ info) / m, np.nan)


def intra_list_diversity_at_k(recommended, item_embeddings, k: int, *,
                              batch_size: int = 65536) -> np.ndarray:
    """Mean pairwise cosine distance (1 - cosine) between the items of each top-k list.

    Computed without forming the pairs: with unit vectors e_i and their sum s over a list of m
    items, sum_{i<j} cos(e_i, e_j) = (|s|^2 - m) / 2, so ILD = 1 - (|s|^2 - m) / (m (m - 1)).

    Parameters
    ----------
    recommended : numpy.ndarray or scipy.sparse.csr_matrix
        int (n_users, m) item_index, -1 padding; or :func:`recsys.evaluation.metrics.lists_to_csr`'s
        matrix (validated once, shared between metrics).
    item_embeddings : numpy.ndarray
        float (n_items, d); rows are L2-normalised here (a zero row raises).
    k : int
        Cut-off, >= 1.
    batch_size : int
        Users per sparse-times-dense product (memory: batch_size x d floats).

    Returns
    -------
    numpy.ndarray
        float64 (n_users,) in [0, 2]; NaN for lists with fewer than two items.

    Raises
    ------
    ValueError
        Embeddings not 2-D, holding NaN/inf or a zero row; bad ``k`` or indices; an item
        repeated within a list.
    """
    emb = np.asarray(item_embeddings, dtype=np.float32)
    if emb.ndim != 2 or not np.isfinite(emb).all():
        raise ValueError(f"item_embeddings must be a finite float array (n_items, d); got shape "
                         f"{emb.shape}")
    norms = np.linalg.norm(emb, axis=1)
    if (norms == 0).any():
        raise ValueError(f"item_embeddings has {int((norms == 0).sum())} zero row(s) (first: item "
                         f"{int(np.flatnonzero(norms == 0)[0])}); cosine is undefined for them")
    emb = emb / norms[:, None]  # float32; sums of <= k unit vectors lose < 1e-6 relative
    lists = _binary_lists(recommended, k, emb.shape[0], dtype=np.float32)
    m = np.diff(lists.indptr).astype(np.float64)
    out = np.empty(lists.shape[0], dtype=np.float64)
    for s in range(0, lists.shape[0], int(batch_size)):
        tot = (lists[s:s + int(batch_size)] @ emb).astype(np.float64)  # (batch, d) list sums
        mm = m[s:s + int(batch_size)]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + tot.shape[0]] = np.where(
                mm >= 2, 1.0 - (np.einsum("ij,ij->i", tot, tot) - mm) / (mm * (mm - 1)), np.nan)
    return out
