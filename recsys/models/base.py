"""Shared recommender base class: validation, top-k selection, filtering, save/load.

Conventions (the same in every model, learned from ``implicit`` >= 0.5 and scikit-learn):

* ``user_items`` is a ``scipy.sparse`` CSR matrix ``(n_users, n_items)``, rows = users.
  ``fit`` takes the whole training matrix; ``recommend``/``score`` take **only the rows of
  the users asked for** (``user_items[user_index]``), as implicit does since 0.5.
* ``__init__`` only stores keyword arguments; validation happens in ``fit``; learned state
  ends in ``_``; ``fit`` returns ``self``; use before ``fit`` raises
  :class:`sklearn.exceptions.NotFittedError`.
* results are ``(ids, scores)``: ``int64`` item indices and ``float32`` scores, descending,
  ties broken by lower item index, padded with ``-1`` / ``-inf``.
* subclasses implement ``_fit(user_items)`` and ``_score(rows, user_index)``; ``recommend``,
  ``similar_items`` and persistence are shared.
* implicit's own keywords are accepted too (``N`` for ``k``, ``userid``, ``items``,
  ``recalculate_user``, ``filter_items`` in ``similar_items``, ``similar_users``,
  ``fit(show_progress=, callback=)``; other sparse formats converted in ``fit`` with
  :class:`ParameterWarning`), so ``implicit.evaluation`` drives every model; a model that cannot
  honour one raises ``NotImplementedError`` (``tests/recsys/models/test_implicit_compat.py``).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from implicit.utils import ParameterWarning
from sklearn.exceptions import NotFittedError

from embeddings._io import atomic_path

__all__ = [
    "Recommender",
    "NotFittedError",
    "ParameterWarning",
    "topk",
    "check_user_items",
    "to_csr_for_fit",
    "FORMAT_VERSION",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_META_KEY = "__meta__"
# score at most this many (rows x items) cells at once inside recommend (64 MiB of float32)
_MAX_SCORE_CELLS = 1 << 24


def check_user_items(user_items: Any, name: str = "user_items") -> sp.csr_matrix:
    """Validate an interaction matrix and return it as a ``scipy.sparse.csr_matrix``.

    Parameters
    ----------
    user_items : scipy.sparse CSR matrix or array, shape (n_rows, n_items)
        Interactions (implicit feedback weights), rows = users.
    name : str
        Argument name used in error messages.

    Returns
    -------
    scipy.sparse.csr_matrix
        The same data (no copy when already a ``csr_matrix``).

    Raises
    ------
    ValueError
        If it is not a 2-D sparse CSR matrix, or holds NaN, infinite or negative values.
    """
    if not sp.issparse(user_items):
        raise ValueError(
            f"{name} must be a scipy.sparse CSR matrix (rows = users, columns = items), got "
            f"{type(user_items).__name__}; fix: scipy.sparse.csr_matrix(x)"
        )
    if user_items.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_users, n_items), got shape {user_items.shape}; "
            "fix: x.reshape(1, -1) for a single user"
        )
    if user_items.format != "csr":
        raise ValueError(
            f"{name} must be in CSR format, got {user_items.format!r}; fix: pass x.tocsr()"
        )
    if not isinstance(user_items, sp.csr_matrix):
        user_items = sp.csr_matrix(user_items)
    data = user_items.data
    if data.size and not np.all(np.isfinite(data)):
        raise ValueError(f"{name} holds NaN or infinite values; fix: drop or fill them first")
    if data.size and data.min() < 0:
        raise ValueError(
            f"{name} holds negative values (min {data.min()!r}); implicit-feedback weights "
            "must be >= 0; fix: clip or drop negative interactions before fitting"
        )
    return user_items


def to_csr_for_fit(user_items: Any, name: str = "user_items") -> sp.csr_matrix:
    """Like :func:`check_user_items`, but convert other sparse formats (COO, LIL, CSC, ...)
    to CSR with a :class:`ParameterWarning`, as implicit's ``fit`` does.

    Only ``fit`` converts: ``recommend``/``score`` keep raising on non-CSR rows (implicit
    does the same), since converting per call would hide a quadratic cost.

    Raises
    ------
    ValueError
        Not sparse, not 2-D, NaN/inf or negative values (see :func:`check_user_items`).
    """
    if sp.issparse(user_items) and user_items.format != "csr":
        warnings.warn(
            f"{name} was passed in {user_items.format!r} format; converting to CSR (pass "
            "x.tocsr() to avoid this copy)",
            ParameterWarning,
            stacklevel=3,
        )
        user_items = user_items.tocsr()
    return check_user_items(user_items, name)


def _resolve_k(k: Any, n: Any, default: int = 10) -> int:
    """``k`` or its implicit alias ``N`` (one of them, not both with different values)."""
    if k is not None and n is not None and k != n:
        raise ValueError(
            f"k={k!r} and N={n!r} were both given; N is implicit's name for k; pass one of them"
        )
    k = k if k is not None else (n if n is not None else default)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1 (N is its implicit alias), got {k!r}")
    return int(k)


def _rank_subset(scores: np.ndarray, subset: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank only the columns ``subset`` of every row (implicit's ``items=``): score descending,
    then item index ascending; excluded (``-inf``) items are kept, last. ``min(k, len(subset))``
    results per row, no padding."""
    sub = scores[:, subset]
    order = np.lexsort((np.broadcast_to(subset, sub.shape), -sub), axis=1)[:, : min(k, subset.size)]
    return subset[order], np.take_along_axis(sub, order, axis=1).astype(np.float32)


def _check_subset(items: Any, upper: int, name: str = "items") -> np.ndarray:
    """``items`` as int64 ids; IndexError (implicit's contract) when one is outside [0, upper)."""
    arr = np.asarray(items)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D array of ints, got {items!r}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= upper):
        raise IndexError(
            f"{name} holds ids outside [0, {upper}) (min {int(arr.min())}, max {int(arr.max())}); "
            f"the model was fitted on {upper} items"
        )
    return arr


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of every row, score descending then column index ascending.

    ``np.partition`` finds each row's k-th largest score; every column scoring at least
    that much (ties at the boundary included) is a candidate; candidates are ordered with
    ``np.lexsort`` on (score desc, index asc), vectorised over rows. ``-inf`` marks excluded
    columns and becomes padding.

    Parameters
    ----------
    scores : np.ndarray, float32, shape (n, n_items)
        Scores; ``-inf`` = excluded. Must not hold NaN.
    k : int
        Number of results per row (>= 1).

    Returns
    -------
    ids : np.ndarray, int64, shape (n, k)
        Column indices; ``-1`` padding when fewer than ``k`` columns have a finite score.
    top_scores : np.ndarray, float32, shape (n, k)
        Their scores; ``-inf`` padding.
    """
    n, m = scores.shape
    ids = np.full((n, k), -1, dtype=np.int64)
    out = np.full((n, k), -np.inf, dtype=np.float32)
    kk = min(k, m)
    if n == 0 or kk == 0:
        return ids, out
    # the kk-th largest score per row; selecting it as the (kk-1)-th smallest of -scores is
    # many times faster than np.partition(scores, m - kk) on rows full of equal scores
    # (sparse kNN or popularity scores: 18 s against 2-3 s for 2,048 x 18,975, numpy 2.4)
    kth = -np.partition(-scores, kk - 1, axis=1)[:, kk - 1]
    mask = (scores >= kth[:, None]) & (scores > -np.inf)
    # rows with more than kk candidates have ties at the k-th score: keep, of the tied columns,
    # only the lowest-index ones needed (what the lexsort below would pick), so the candidate
    # matrix stays kk wide instead of one column per tied item
    over = np.flatnonzero(np.count_nonzero(mask, axis=1) > kk)
    if over.size:
        sub = mask[over]
        eq = sub & (scores[over] == kth[over, None])
        need = kk - (np.count_nonzero(sub, axis=1) - np.count_nonzero(eq, axis=1))
        mask[over] = (sub & ~eq) | (eq & (np.cumsum(eq, axis=1, dtype=np.int32)
                                          <= need[:, None]))
    rows, cols = np.nonzero(mask)  # row-major: columns ascending within each row
    counts = np.bincount(rows, minlength=n)
    width = max(int(counts.max()) if counts.size else 0, 1)
    pos = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    cand = np.full((n, width), m, dtype=np.int64)
    cand_scores = np.full((n, width), -np.inf, dtype=np.float32)
    cand[rows, pos] = cols
    cand_scores[rows, pos] = scores[rows, cols]
    order = np.lexsort((cand, -cand_scores), axis=1)[:, :kk]
    sel_ids = np.take_along_axis(cand, order, axis=1)
    sel_scores = np.take_along_axis(cand_scores, order, axis=1)
    pad = ~np.isfinite(sel_scores)
    sel_ids[pad] = -1
    width = sel_ids.shape[1]  # < kk when fewer than kk columns are finite in every row
    ids[:, :width] = sel_ids
    out[:, :width] = sel_scores
    return ids, out


def _as_index_array(value: Any, name: str, upper: int | None = None) -> tuple[np.ndarray, bool]:
    """Return (int64 1-D array, is_scalar) or raise ValueError naming ``name``."""
    arr = np.asarray(value)
    scalar = arr.ndim == 0
    arr = arr.reshape(-1) if scalar else arr
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(
            f"{name} must be an int or a 1-D array of ints, got {value!r} "
            f"(dtype {arr.dtype}, shape {np.shape(value)}); fix: np.asarray(x, dtype=np.int64)"
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0, got min {int(arr.min())}")
    if upper is not None and arr.size and arr.max() >= upper:
        raise ValueError(
            f"{name} must be < {upper} (the number of items the model was fitted on), "
            f"got max {int(arr.max())}"
        )
    return arr, scalar


class Recommender:
    """Base class of every recommender (see module docstring for the conventions).

    Subclasses implement ``_fit(user_items)`` (set learned attributes ending in ``_``) and
    ``_score(rows, user_index)``; list their learned arrays in ``_state_attrs`` for
    ``save``/``load``; optionally implement ``_item_scores(item_index)`` for ``similar_items``.
    """

    _state_attrs: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ params
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Constructor arguments as a dict (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> Recommender:
        """Set constructor arguments (scikit-learn convention); returns ``self``.

        Raises
        ------
        ValueError
            If a name is not a constructor argument of this model.
        """
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; valid parameters: {valid}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fitting
    # class capabilities used by the implicit-compatible keywords
    _supports_callback: ClassVar[bool] = False  # fit(callback=...) honoured (iterative models)
    _can_recalculate_user: ClassVar[bool] = True  # recommend(recalculate_user=True) honoured

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False,
            callback: Any = None) -> Recommender:
        """Fit on the full training matrix.

        Parameters
        ----------
        user_items : scipy.sparse matrix, shape (n_users, n_items)
            Training interactions, rows = users, values = non-negative weights. CSR is
            expected; other sparse formats are converted with a :class:`ParameterWarning`
            (implicit's behaviour).
        show_progress : bool
            Accepted for implicit compatibility; progress goes to ``logging``, never a bar.
        callback : callable, optional
            implicit's per-iteration callback ``callback(iteration, elapsed_s, loss)``;
            honoured by the iterative models (ALS, BPR).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Invalid matrix (see :func:`check_user_items`), an empty matrix, or an invalid
            constructor parameter.
        NotImplementedError
            ``callback`` given to a closed-form model (no iterations to report).
        """
        user_items = to_csr_for_fit(user_items)
        if callback is not None and not self._supports_callback:
            raise NotImplementedError(
                f"{type(self).__name__} is not iterative and has no per-iteration callback; "
                "fix: drop callback= (ALS and BPR accept it)"
            )
        n_users, n_items = user_items.shape
        if n_users == 0 or n_items == 0:
            raise ValueError(
                f"user_items has shape {user_items.shape}; need at least one user and one item"
            )
        self._validate_params()
        self._fit_callback = callback
        try:
            self._fit(user_items)
        finally:
            del self._fit_callback
        self.n_users_ = int(n_users)
        self.n_items_ = int(n_items)
        return self

    def _validate_params(self) -> None:
        """Raise ValueError on invalid constructor arguments (called by ``fit``)."""

    def _fit(self, user_items: sp.csr_matrix) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call "
                "fit(user_items) or Recommender.load(path) first"
            )

    # ------------------------------------------------------------------ scoring
    def score(self, user_items_rows: sp.csr_matrix, user_index: Any = None) -> np.ndarray:
        """Dense scores of every item for the given users.

        Parameters
        ----------
        user_items_rows : scipy.sparse.csr_matrix, shape (n, n_items)
            The interaction rows of the users to score (``user_items[user_index]``).
        user_index : array-like of int, shape (n,), optional
            Row numbers of those users in the fitted matrix. Only factor models (ALS, BPR)
            use it, to look up stored user factors; item-based models score from the rows.

        Returns
        -------
        np.ndarray, float32, shape (n, n_items)
            Higher = better. Already-seen items are *not* removed here.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError
            Wrong type or number of columns.
        """
        self._check_fitted()
        rows = check_user_items(user_items_rows, "user_items_rows")
        if rows.shape[1] != self.n_items_:
            raise ValueError(
                f"user_items_rows has {rows.shape[1]} columns but the model was fitted on "
                f"{self.n_items_} items; expected shape (n, {self.n_items_}); fix: build the "
                "matrix with the same item index as the training matrix"
            )
        if user_index is not None:
            user_index, _ = _as_index_array(user_index, "user_index")
            if user_index.size != rows.shape[0]:
                raise ValueError(
                    f"user_index has {user_index.size} entries but user_items_rows has "
                    f"{rows.shape[0]} rows; expected one row per user"
                )
        return np.asarray(self._score(rows, user_index), dtype=np.float32)

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract

    def recommend(
        self,
        user_index: int | np.ndarray | None = None,
        user_items: sp.csr_matrix | None = None,
        k: int | None = None,
        *,
        N: int | None = None,
        userid: int | np.ndarray | None = None,
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        recalculate_user: bool = False,
        items: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for one user or a batch of users.

        Accepts implicit's (>= 0.5) keywords too, so ``implicit.evaluation`` can drive any
        model: ``N`` (alias of ``k``), ``userid`` (alias of ``user_index``),
        ``recalculate_user`` and ``items``.

        Parameters
        ----------
        user_index : int or array-like of int, shape (n,)
            Row numbers of the users in the fitted matrix (alias ``userid``).
        user_items : scipy.sparse.csr_matrix, shape (1, n_items) for an int, (n, n_items) for an array
            The interaction rows **of these users only**: ``user_items[user_index]``
            (implicit >= 0.5 convention), not the whole matrix.
        k : int
            Number of items per user (>= 1); default 10. ``N`` is implicit's name for it.
        N : int, optional
            Alias of ``k``. When given, ids come back as ``int32`` (implicit's dtype, which
            ``implicit.evaluation``'s typed buffers require); otherwise ``int64``.
        userid : int or array-like of int, optional
            Alias of ``user_index``.
        filter_already_liked_items : bool
            Remove the items stored as non-zero in the user's row.
        filter_items : array-like of int, optional
            Item indices removed for every user.
        recalculate_user : bool
            Score from ``user_items`` rather than stored user state. Item-based models
            (EASE, ItemKNN, content, popularity) always do; ALS folds the rows in (one
            least-squares step against the item factors); BPR raises NotImplementedError.
        items : array-like of int, optional
            Rank only these items (implicit's ``items=``): ``min(k, len(items))`` results per
            user, no padding; filtered items are kept at the end with score ``-inf``.

        Returns
        -------
        ids : np.ndarray, int64 (int32 with ``N``), shape (k,) for an int user, (n, k) for an array
            Item indices, best first; ties broken by lower item index; ``-1`` padding
            when fewer than ``k`` items remain.
        scores : np.ndarray, float32, same shape
            Scores, descending; ``-inf`` padding.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError
            Bad ``k``/``N``, ``user_index`` or ``filter_items``, both ``user_index`` and
            ``userid``, or ``user_items`` missing or of the wrong type or shape.
        IndexError
            ``items`` holds an id outside ``[0, n_items)`` (implicit's contract).
        NotImplementedError
            ``recalculate_user=True`` on a model that cannot score new rows (BPR).
        """
        self._check_fitted()
        k_out = _resolve_k(k, N)
        if userid is not None:
            if user_index is not None:
                raise ValueError("user_index and userid were both given; userid is implicit's "
                                 "name for user_index; pass one of them")
            user_index = userid
        if user_index is None or user_items is None:
            raise ValueError(
                "recommend needs user_index (or userid) and user_items (the rows of those "
                f"users), got user_index={user_index!r}, user_items={type(user_items).__name__}"
            )
        if recalculate_user and not self._can_recalculate_user:
            raise NotImplementedError(
                f"{type(self).__name__} cannot score users from their rows "
                "(recalculate_user=True); fix: use stored users, or ALS/EASE/ItemKNN"
            )
        users, scalar = _as_index_array(user_index, "user_index")
        rows = check_user_items(user_items)
        n_expected = 1 if scalar else users.size
        fix = "user_items[[user_index]]" if scalar else "user_items[user_index]"
        if rows.shape[1] != self.n_items_:
            raise ValueError(
                f"user_items has {rows.shape[1]} columns but the model was fitted on "
                f"{self.n_items_} items; expected shape ({n_expected}, {self.n_items_}); fix: "
                "build the rows with the same item index as the training matrix"
            )
        if rows.shape[0] != n_expected:
            raise ValueError(
                f"user_items has shape {rows.shape}, expected ({n_expected}, {self.n_items_}): "
                f"one row per requested user, {self.n_items_} item columns; fix: pass {fix} "
                "(the rows of the users asked for, not the whole matrix)"
            )
        exclude = None
        if filter_items is not None:
            exclude, _ = _as_index_array(filter_items, "filter_items", upper=self.n_items_)
        subset = None if items is None else _check_subset(items, self.n_items_)
        width = k_out if subset is None else min(k_out, subset.size)

        ids = np.empty((users.size, width), dtype=np.int64)
        scores = np.empty((users.size, width), dtype=np.float32)
        step = max(1, _MAX_SCORE_CELLS // self.n_items_)
        for start in range(0, users.size, step):
            stop = min(start + step, users.size)
            chunk = rows[start:stop]
            s = self._writable_scores(
                self._score(chunk, None if recalculate_user else users[start:stop]))
            if s.size and np.isnan(s.max()):  # max propagates NaN: one pass, no temporary
                raise RuntimeError(
                    f"{type(self).__name__} produced NaN scores; the model is degenerate "
                    "(check the training data and regularisation) and should be refitted"
                )
            if filter_already_liked_items:
                nz = chunk.data != 0
                r = np.repeat(np.arange(stop - start), np.diff(chunk.indptr))[nz]
                s[r, chunk.indices[nz]] = -np.inf
            if exclude is not None:
                s[:, exclude] = -np.inf
            if subset is None:
                ids[start:stop], scores[start:stop] = topk(s, k_out)
            else:
                ids[start:stop], scores[start:stop] = _rank_subset(s, subset, k_out)
        if N is not None:
            ids = ids.astype(np.int32)
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    def _writable_scores(self, s: Any) -> np.ndarray:
        """``s`` as a float32 array we may overwrite: copied only when it is not a fresh array
        (a read-only or broadcast view, another dtype, or memory shared with learned state)."""
        if (isinstance(s, np.ndarray) and s.dtype == np.float32 and s.flags.writeable
                and s.flags.owndata and s.flags.c_contiguous
                and not any(np.may_share_memory(s, a) for a in vars(self).values()
                            if isinstance(a, np.ndarray))):
            return s
        return np.array(s, dtype=np.float32, copy=True)

    # ------------------------------------------------------------------ similar items
    def similar_items(
        self,
        item_index: int | np.ndarray | None = None,
        k: int | None = None,
        *,
        N: int | None = None,
        itemid: int | np.ndarray | None = None,
        filter_items: Any = None,
        items: Any = None,
        recalculate_item: bool = False,
        item_users: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items most similar to the given items (the query item itself excluded).

        implicit's keywords are accepted: ``N`` (alias of ``k``), ``itemid`` (alias of
        ``item_index``), ``filter_items``, ``items``. Unlike implicit, the query item is never
        returned as its own neighbour.

        Parameters
        ----------
        item_index : int or array-like of int, shape (n,)
        k : int
            Number of neighbours (>= 1); default 10.
        N : int, optional
            Alias of ``k`` (ids then come back as ``int32``, like implicit).
        itemid : int or array-like of int, optional
            Alias of ``item_index``.
        filter_items : array-like of int, optional
            Items never returned.
        items : array-like of int, optional
            Rank only these items: ``min(k, len(items))`` results, no padding.
        recalculate_item, item_users
            implicit's fold-in of a new item: not supported (NotImplementedError).

        Returns
        -------
        ids : np.ndarray, int64 (int32 with ``N``), shape (k,) or (n, k)
            ``-1`` padding.
        scores : np.ndarray, float32, same shape
            Model-specific similarity (documented per model), descending; ``-inf`` padding.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        NotImplementedError
            For models without an item-item notion (popularity), or ``recalculate_item`` /
            ``item_users``.
        ValueError
            Bad ``k``, ``item_index`` or ``filter_items``.
        IndexError
            ``items`` holds an id outside ``[0, n_items)``.
        """
        self._check_fitted()
        k_out = _resolve_k(k, N)
        if itemid is not None:
            if item_index is not None:
                raise ValueError("item_index and itemid were both given; pass one of them")
            item_index = itemid
        if item_index is None:
            raise ValueError("similar_items needs item_index (or itemid), got None")
        if recalculate_item or item_users is not None:
            raise NotImplementedError(
                f"{type(self).__name__} cannot fold in a new item from item_users; fix: refit "
                "with the item's interactions"
            )
        q, scalar = _as_index_array(item_index, "item_index", upper=self.n_items_)
        s = np.array(self._item_scores(q), dtype=np.float32, copy=True)
        s[np.arange(q.size), q] = -np.inf
        if filter_items is not None:
            exclude, _ = _as_index_array(filter_items, "filter_items", upper=self.n_items_)
            s[:, exclude] = -np.inf
        if items is None:
            ids, scores = topk(s, k_out)
        else:
            ids, scores = _rank_subset(s, _check_subset(items, self.n_items_), k_out)
        if N is not None:
            ids = ids.astype(np.int32)
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def similar_users(
        self,
        user_index: int | np.ndarray | None = None,
        k: int | None = None,
        *,
        N: int | None = None,
        userid: int | np.ndarray | None = None,
        filter_users: Any = None,
        users: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Users most similar to the given fitted users (the query user excluded).

        Same keywords and return shapes as :meth:`similar_items`, on users. Implemented by
        the models that keep per-user state (ALS, BPR: cosine of user factors).

        Raises
        ------
        NotImplementedError
            Models that keep no per-user state (EASE, ItemKNN, popularity, content).
        ValueError, IndexError
            As for :meth:`similar_items`.
        """
        self._check_fitted()
        k_out = _resolve_k(k, N)
        if userid is not None:
            if user_index is not None:
                raise ValueError("user_index and userid were both given; pass one of them")
            user_index = userid
        if user_index is None:
            raise ValueError("similar_users needs user_index (or userid), got None")
        q, scalar = _as_index_array(user_index, "user_index", upper=self.n_users_)
        s = np.array(self._user_scores(q), dtype=np.float32, copy=True)
        s[np.arange(q.size), q] = -np.inf
        if filter_users is not None:
            exclude, _ = _as_index_array(filter_users, "filter_users")
            s[:, exclude[exclude < self.n_users_]] = -np.inf
        if users is None:
            ids, scores = topk(s, k_out)
        else:
            ids, scores = _rank_subset(s, _check_subset(users, self.n_users_, "users"), k_out)
        if N is not None:
            ids = ids.astype(np.int32)
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            f"{type(self).__name__} keeps no per-user state, so it has no user-user "
            "similarity; use ALS or BPR for similar_users"
        )

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            f"{type(self).__name__} has no item-item similarity; use ItemKNN, EASE, ALS or "
            "BPR for similar_items"
        )

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name)) for name in self._state_attrs}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        for name in self._state_attrs:
            setattr(self, name, arrays[name])

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to one ``.npz`` file (atomic; no pickle).

        The file holds the learned arrays plus ``__meta__``, a JSON string
        ``{"class", "params", "format_version", "n_users", "n_items"}``.

        Parameters
        ----------
        path : path-like or binary file object
            Destination, written exactly as given (no suffix is appended); a path is
            written atomically (temp name, then rename), a file object in place.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError
            If a parameter cannot be written as JSON.
        """
        self._check_fitted()
        try:
            meta = json.dumps(
                {
                    "class": type(self).__name__,
                    "params": self.get_params(),
                    "format_version": FORMAT_VERSION,
                    "n_users": self.n_users_,
                    "n_items": self.n_items_,
                }
            )
        except TypeError as exc:
            raise ValueError(
                f"parameters {self.get_params()!r} cannot be saved as JSON ({exc}); "
                "fix: use plain int/float/str/bool/None parameter values"
            ) from exc
        arrays = self._get_state()
        arrays[_META_KEY] = np.array(meta)
        if hasattr(path, "write"):  # an open binary file (implicit accepts these too)
            np.savez(path, **arrays)
            return
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        # DEBUG: callers that stage files (recsys.ranking.artifacts.save_trained) pass a temporary name and
        # log the final folder themselves; an INFO line here named the temporary path as if final
        logger.debug("wrote %s arrays to %s", type(self).__name__, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recommender:
        """Load a model written by :meth:`save` (dispatch on the stored class name).

        Parameters
        ----------
        path : path-like or binary file object
            ``.npz`` file written by ``save``.

        Returns
        -------
        Recommender
            A fitted instance of the stored class.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is not a saved model, has an unknown format version or class, or
            the stored class is not ``cls`` (or a subclass) when called on a subclass.
        """
        from recsys.models import MODELS  # late import: the registry imports this module

        if isinstance(path, (str, os.PathLike)) and os.path.isdir(path):  # folder-saved models (LTRRecommender): class named in meta.json
            meta_path = os.path.join(path, "meta.json")
            if not os.path.isfile(meta_path):
                raise ValueError(f"{path} is a folder without meta.json, not a saved Recommender")
            with open(meta_path, encoding="utf-8") as fh:
                name = json.load(fh).get("class")
            by_name = {model.__name__: model for model in MODELS.values()}
            if name not in by_name or not hasattr(by_name[name], "saves_folder"):
                raise ValueError(f"{path} holds unknown folder model class {name!r}")
            if not issubclass(by_name[name], cls):
                raise ValueError(f"{path} holds a {name}, not a {cls.__name__}")
            return by_name[name].load(path)
        with np.load(path, allow_pickle=False) as npz:
            if _META_KEY not in npz.files:
                raise ValueError(f"{path} is not a saved Recommender (no {_META_KEY!r} entry)")
            meta = json.loads(str(npz[_META_KEY]))
            arrays = {name: npz[name] for name in npz.files if name != _META_KEY}
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has format_version {meta.get('format_version')!r}; this code reads "
                f"version {FORMAT_VERSION}; fix: refit and save with this version"
            )
        by_name = {model.__name__: model for model in MODELS.values()}
        model_cls = by_name.get(meta.get("class"))
        if model_cls is None:
            raise ValueError(
                f"{path} holds unknown model class {meta.get('class')!r}; known: {sorted(by_name)}"
            )
        if not issubclass(model_cls, cls):
            raise ValueError(
                f"{path} holds a {model_cls.__name__}, not a {cls.__name__}; fix: call "
                f"Recommender.load(path) or {model_cls.__name__}.load(path)"
            )
        model = model_cls(**meta["params"])
        model._set_state(arrays)
        model.n_users_ = int(meta["n_users"])
        model.n_items_ = int(meta["n_items"])
        return model
