"""Sequential recommenders: SASRec, GRU4Rec, a last-item item-kNN and a time-window item-kNN.

Every model here scores items from the user's chronological history (the **next** item;
:class:`WindowKNN` with ``recency=1`` also the items missing from a random holdout) and shares
the :class:`~recsys.models.base.Recommender` interface:

* ``fit(user_items, interaction_times=T)``: ``T`` is a CSR matrix shaped like ``user_items``
  holding, for every interaction, its time (unix seconds) or, for logs without timestamps,
  its position in the user's sequence (1, 2, 3, ...; see :func:`sequences_to_user_items`).
  The order of a user's history is the order of ``T``'s values, ties broken by item index.
  A repeated item counts once, at its latest time (the rule of
  :func:`recsys.models.trending.interaction_times_matrix`), so duplicated consecutive items
  collapse to one.
* the training histories are stored in the model (``hist_indptr_``, ``hist_items_``);
  ``recommend(user_index, rows)`` scores the next item after the user's **whole current
  history**: the stored history, then any item of ``rows`` that is not in it, appended in
  ascending order of its value in ``rows`` (pass times or positions as values to order them)
  then item index. So a history that grew since training is used without retraining;
  :meth:`SequentialRecommender.partial_fit` appends items to stored histories for good, and
  :meth:`SequentialRecommender.recommend_sequences` scores arbitrary histories.
* only the last ``max_length`` items of a history are used (training and scoring): older ones
  are dropped, a stated truncation.
* users with fewer than 2 items give no training pair (nothing to predict from); they are
  still scored at ``recommend`` time (a history of one item predicts its successor). An empty
  history cannot be scored by a sequence model: it raises ``ValueError`` (use popularity).

Neural models (SASRec, GRU4Rec) are trained with PyTorch on ``device`` ("cpu", "cuda" or
"auto"; "cuda" without a GPU raises, it never silently falls back), seeded and
deterministic on the CPU, with early stopping on a validation split carved from the
training histories (the last item of ``validation_users`` randomly chosen users), a tqdm
bar showing loss and validation NDCG@10 per epoch, and optional atomic per-epoch
checkpoints (``checkpoint_dir``) from which an interrupted ``fit`` resumes. ``save``/``load``
write the weights into the project's ``.npz`` format (no pickle).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .base import Recommender, check_user_items, to_csr_for_fit

__all__ = [
    "SequentialRecommender",
    "SASRec",
    "GRU4Rec",
    "LastItemKNN",
    "WindowKNN",
    "histories_from_times",
    "sequences_to_user_items",
    "read_sequence_file",
    "is_sequence_file",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- sequence helpers
def histories_from_times(times: sp.csr_matrix) -> list[np.ndarray]:
    """Chronological item sequences from a CSR matrix of interaction times or positions.

    Parameters
    ----------
    times : scipy.sparse.csr_matrix, shape (n_users, n_items)
        Time (or position) of every stored interaction; larger = later.

    Returns
    -------
    list of np.ndarray (int64)
        One array per row, items ordered by time, ties by item index.
    """
    times = times.tocsr()
    out = []
    for u in range(times.shape[0]):
        a, b = times.indptr[u], times.indptr[u + 1]
        items = times.indices[a:b].astype(np.int64)
        order = np.lexsort((items, times.data[a:b]))
        out.append(items[order])
    return out


def sequences_to_user_items(sequences: list, n_items: int | None = None
                            ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(user_items, interaction_times)`` from item-index sequences, positions as times.

    Parameters
    ----------
    sequences : list of sequences of int
        Item indices per user, oldest first.
    n_items : int, optional
        Number of item columns (default: max index + 1).

    Returns
    -------
    user_items : scipy.sparse.csr_matrix, float32, shape (n_users, n_items)
        1 for every interaction (a repeated item counts once).
    interaction_times : scipy.sparse.csr_matrix, float64, same shape
        The item's 1-based position in the sequence (its latest one when repeated).
    """
    rows, cols, pos = [], [], []
    for u, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64).reshape(-1)
        rows.append(np.full(seq.size, u, dtype=np.int64))
        cols.append(seq)
        pos.append(np.arange(1, seq.size + 1, dtype=np.float64))
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    p = np.concatenate(pos) if pos else np.zeros(0)
    if n_items is None:
        n_items = int(c.max()) + 1 if c.size else 0
    shape = (len(sequences), n_items)
    # keep the latest position of a repeated item, not the sum
    t = sp.coo_matrix((p, (r, c)), shape=shape)
    key = t.row * n_items + t.col
    order = np.lexsort((t.data, key))
    last = np.r_[key[order][1:] != key[order][:-1], True]
    keep = order[last]
    times = sp.csr_matrix((t.data[keep], (t.row[keep], t.col[keep])), shape=shape)
    ui = sp.csr_matrix((np.ones(keep.size, np.float32), (t.row[keep], t.col[keep])), shape=shape)
    return ui, times


def read_sequence_file(path: str | os.PathLike):
    """Read a sequence-per-line file (``user_id<TAB>item item ...``, oldest first).

    A minimal private reader (the MicroLens ``*_pairs*.tsv`` layout); a generic loader lives
    elsewhere in the project.

    Returns
    -------
    pandas.DataFrame
        ``user_id, item_id, timestamp`` with ``timestamp`` the 1-based position of the item
        in its user's line (a position order for a log without times).

    Raises
    ------
    ValueError
        A line without a tab or without items (names the line number).
    """
    import pandas as pd

    users, items, pos = [], [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(
                    f"{path}:{lineno}: expected 'user_id<TAB>item item ...', got {line[:80]!r}; "
                    "fix: one user per line, a tab after the user id, items separated by spaces")
            uid, seq = line.split("\t", 1)
            seq = seq.split()
            if not seq:
                raise ValueError(f"{path}:{lineno}: user {uid!r} has no items; fix: drop the line")
            users.extend([uid] * len(seq))
            items.extend(seq)
            pos.extend(range(1, len(seq) + 1))
    return pd.DataFrame({"user_id": users, "item_id": items,
                         "timestamp": np.asarray(pos, dtype=np.int64)})


def is_sequence_file(path) -> bool:
    """True when the first non-blank line looks like ``user<TAB>item item item``."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                parts = line.rstrip("\n").split("\t")
                return len(parts) == 2 and len(parts[1].split()) >= 1 and " " in parts[1].strip()
    return False


# ---------------------------------------------------------------------------- base class
class SequentialRecommender(Recommender):
    """Shared plumbing of the next-item models (see the module docstring)."""

    side_inputs: ClassVar[tuple[str, ...]] = ("interaction_times",)
    _state_attrs: ClassVar[tuple[str, ...]] = ("hist_indptr_", "hist_items_")

    def fit(self, user_items: sp.csr_matrix, interaction_times: sp.csr_matrix | None = None,
            *, show_progress: bool | None = None, callback=None,
            item_features=None) -> SequentialRecommender:
        """Fit on chronological histories.

        ``show_progress`` (implicit's keyword) overrides the ``progress`` parameter for this fit;
        a per-iteration ``callback`` is not supported (NotImplementedError).

        Parameters
        ----------
        user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
            Training interactions (their stored entries define the histories).
        interaction_times : scipy.sparse.csr_matrix, same shape
            Time or position of each interaction (larger = later).
        item_features : None, array-like (n_items, d) or list of them
            Fixed item content (CLIP or title embeddings, pre-extracted features), only for
            models declaring the ``item_features`` side input (SASRec, GRU4Rec): see
            :class:`SASRec`. Validated by :func:`~recsys.models.content_ease.check_item_features`.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Missing or misshaped ``interaction_times``, entries of ``user_items`` without a
            time, no user with at least 2 items, invalid parameters, ``item_features`` with
            another row count or NaN/inf, or ``item_features`` for a model without that input.
        """
        if callback is not None:
            raise NotImplementedError(
                f"{type(self).__name__} has no per-iteration callback; fix: drop callback= "
                "(the epoch bar shows loss and validation NDCG@10)")
        self._show_progress = (getattr(self, "progress", False) if show_progress is None
                               else bool(show_progress))
        user_items = to_csr_for_fit(user_items)
        if interaction_times is None:
            raise ValueError(
                f"{type(self).__name__} needs interaction_times (a CSR matrix of times or "
                "positions shaped like user_items) to order histories; fix: "
                "fit(user_items, interaction_times=T), see sequences_to_user_items")
        times = check_user_items(interaction_times, "interaction_times")
        if times.shape != user_items.shape:
            raise ValueError(
                f"interaction_times has shape {times.shape}, expected {user_items.shape} "
                "(the shape of user_items); fix: build both from the same id maps")
        ui_nz = user_items.copy()
        ui_nz.eliminate_zeros()
        missing = ui_nz.astype(bool).astype(np.int8) - times.astype(bool).astype(np.int8)
        if missing.count_nonzero() and (missing.data > 0).any():
            raise ValueError(
                f"{int((missing.data > 0).sum())} interaction(s) of user_items have no time in "
                "interaction_times; fix: give every interaction a time or position")
        n_users, n_items = user_items.shape
        if n_users == 0 or n_items == 0:
            raise ValueError(f"user_items has shape {user_items.shape}; need users and items")
        self._validate_params()
        self._item_features = self._prepare_features(item_features, n_items)
        mask = ui_nz.astype(bool)
        histories = histories_from_times(times.multiply(mask).tocsr())
        if not any(h.size >= 2 for h in histories):
            raise ValueError(
                "no user has a history of at least 2 items, so there is no next item to learn; "
                "fix: pass longer histories (users with fewer than 2 items are skipped in training)")
        self.n_users_ = int(n_users)
        self.n_items_ = int(n_items)
        self._store_histories(histories)
        self._fit_sequences(histories, user_items)
        return self

    def _prepare_features(self, item_features, n_items: int) -> np.ndarray | None:
        """Validated, normalised (mean-centred, unit rows) and concatenated features, float32."""
        if item_features is None:
            return None
        if "item_features" not in self.side_inputs:
            raise ValueError(
                f"{type(self).__name__} cannot use item_features; fix: drop item_features, or "
                "fit SASRec or GRU4Rec")
        from .content_ease import check_item_features, normalise_features

        feats = check_item_features(item_features, n_items)
        if not feats:
            return None
        return np.hstack([normalise_features(f) for f in feats]).astype(np.float32)

    def _fit(self, user_items):  # pragma: no cover - fit is overridden
        raise NotImplementedError

    def _validate_params(self) -> None:
        ml = getattr(self, "max_length", 1)
        if isinstance(ml, bool) or not isinstance(ml, (int, np.integer)) or ml < 1:
            raise ValueError(f"max_length must be an int >= 1, got {ml!r}")

    def _store_histories(self, histories: list[np.ndarray]) -> None:
        lengths = np.array([h.size for h in histories], dtype=np.int64)
        self.hist_indptr_ = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        self.hist_items_ = (np.concatenate(histories).astype(np.int64) if histories
                            else np.zeros(0, np.int64))

    def history(self, user_index: int) -> np.ndarray:
        """Stored chronological history of a user (item indices, oldest first)."""
        self._check_fitted()
        a, b = self.hist_indptr_[user_index], self.hist_indptr_[user_index + 1]
        return self.hist_items_[a:b]

    def partial_fit(self, user_index: Any, new_items: list) -> SequentialRecommender:
        """Fold in grown histories without retraining: append items to stored histories.

        Parameters
        ----------
        user_index : int or array-like of int, shape (n,)
            Users to update; an index ``>= n_users_`` adds new users (rows in between get
            empty histories).
        new_items : sequence of int, or list of n sequences
            Items watched since, oldest first; item indices must be < ``n_items_`` (unseen
            items cannot be folded into an id model: refit to add items).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Item indices out of range, or ``new_items`` not one sequence per user.
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(user_index, dtype=np.int64))
        if np.ndim(user_index) == 0:
            new_items = [new_items]
        if len(new_items) != users.size:
            raise ValueError(
                f"new_items has {len(new_items)} sequences for {users.size} users; expected one "
                "sequence per user in user_index")
        if users.size and users.min() < 0:
            raise ValueError(f"user_index must be >= 0, got {int(users.min())}")
        hist = [self.history(u).copy() for u in range(self.n_users_)]
        n_users = max(self.n_users_, int(users.max()) + 1 if users.size else 0)
        hist += [np.zeros(0, np.int64)] * (n_users - self.n_users_)
        for u, items in zip(users, new_items, strict=True):
            items = self._check_items(items, "new_items")
            merged = np.r_[hist[u][~np.isin(hist[u], items)], items]
            # a repeated item counts once, at its latest position
            _, last = np.unique(merged[::-1], return_index=True)
            hist[u] = merged[np.sort(merged.size - 1 - last)]
        self._store_histories(hist)
        self.n_users_ = n_users
        return self

    def _check_items(self, items: Any, name: str) -> np.ndarray:
        arr = np.asarray(items).reshape(-1)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integer item indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_items_):
            raise ValueError(
                f"{name} holds item index {int(arr.max() if arr.max() >= self.n_items_ else arr.min())}"
                f" outside [0, {self.n_items_}): items unseen in training have no embedding; "
                "fix: drop them, or refit the model with them")
        return arr

    def _current_histories(self, rows: sp.csr_matrix, user_index: np.ndarray | None
                           ) -> list[np.ndarray]:
        out = []
        for i in range(rows.shape[0]):
            a, b = rows.indptr[i], rows.indptr[i + 1]
            items = rows.indices[a:b].astype(np.int64)
            vals = rows.data[a:b]
            keep = vals != 0
            items, vals = items[keep], vals[keep]
            stored = np.zeros(0, np.int64)
            if user_index is not None and user_index[i] < self.n_users_:
                stored = self.history(int(user_index[i]))
            extra = ~np.isin(items, stored)
            items, vals = items[extra], vals[extra]
            out.append(np.r_[stored, items[np.lexsort((items, vals))]])
        return out

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        hist = self._current_histories(rows, user_index)
        return self._score_checked(hist)

    def _score_checked(self, histories: list[np.ndarray]) -> np.ndarray:
        empty = [i for i, h in enumerate(histories) if h.size == 0]
        if empty:
            raise ValueError(
                f"{len(empty)} user(s) (first: row {empty[0]}) have an empty history; a sequence "
                "model predicts the next item from at least one item; fix: serve them with "
                "popularity (the pipeline's cold-start fallback)")
        ml = int(self.max_length)
        return self._score_sequences([h[-ml:] for h in histories])

    def _score_sequences(self, histories: list[np.ndarray]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def recommend_sequences(self, histories: list, k: int = 10, *,
                            filter_already_liked_items: bool = True
                            ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` next items for arbitrary histories (no stored user needed).

        Parameters
        ----------
        histories : list of sequences of int
            Item indices, oldest first (only the last ``max_length`` are used).
        k : int
        filter_already_liked_items : bool
            Remove the items of each history from its list.

        Returns
        -------
        ids, scores : np.ndarray, shape (n, k)
            As :meth:`Recommender.recommend` (``-1``/``-inf`` padding).

        Raises
        ------
        ValueError
            Empty history, or item indices outside the fitted items.
        """
        from .base import topk

        self._check_fitted()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        hist = [self._check_items(h, "histories") for h in histories]
        s = np.array(self._score_checked(hist), dtype=np.float32)
        if filter_already_liked_items:
            for i, h in enumerate(hist):
                s[i, h] = -np.inf
        return topk(s, int(k))


def _top_neighbours(sim: sp.csr_matrix, neighbors: int | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays (data float32, indices int64, indptr int64) of ``sim`` without its diagonal,
    each row pruned to its ``neighbors`` largest entries (all kept when None)."""
    sim = sp.csr_matrix(sim, dtype=np.float32, copy=True)
    sim.setdiag(0)
    sim.eliminate_zeros()
    sim.sort_indices()
    if neighbors is None:
        return sim.data.copy(), sim.indices.astype(np.int64), sim.indptr.astype(np.int64)
    rows = []
    for i in range(sim.shape[0]):
        a, b = sim.indptr[i], sim.indptr[i + 1]
        d, c = sim.data[a:b], sim.indices[a:b]
        if d.size > neighbors:
            sel = np.sort(np.argpartition(-d, neighbors - 1)[:neighbors])
            d, c = d[sel], c[sel]
        rows.append((d, c))
    indptr = np.r_[0, np.cumsum([r[1].size for r in rows])].astype(np.int64)
    data = np.concatenate([r[0] for r in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
    indices = np.concatenate([r[1] for r in rows]).astype(np.int64) if rows else np.zeros(0, np.int64)
    return data, indices, indptr


# ---------------------------------------------------------------------------- last-item kNN
class LastItemKNN(SequentialRecommender):
    """"Similar to what was just watched": cosine item-kNN of the last ``n_last`` items.

    ``score_j = sum_{t=0}^{n_last-1} decay**t * cos(i_{-1-t}, j)`` where ``i_{-1}`` is the last
    item of the history and ``cos`` the cosine similarity of item columns of the binary
    training matrix (Sarwar et al., WWW 2001), pruned to each item's ``neighbors`` most similar
    items. ``n_last=1`` is the classic last-item baseline of session recommendation
    (Ludewig & Jannach, UMUAI 2018).

    Parameters
    ----------
    neighbors : int
        Neighbours kept per item (>= 1).
    n_last : int
        How many of the most recent items vote (>= 1).
    decay : float
        Weight ratio between consecutive older items (0 < decay <= 1).
    max_length : int
        Histories are truncated to their last ``max_length`` items (>= n_last).
    """

    _state_attrs: ClassVar[tuple[str, ...]] = ("hist_indptr_", "hist_items_", "sim_data_",
                                               "sim_indices_", "sim_indptr_")

    def __init__(self, neighbors: int = 200, n_last: int = 1, decay: float = 0.5,
                 max_length: int = 50):
        self.neighbors = neighbors
        self.n_last = n_last
        self.decay = decay
        self.max_length = max_length

    def _validate_params(self) -> None:
        super()._validate_params()
        for name in ("neighbors", "n_last"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not (0 < float(self.decay) <= 1):
            raise ValueError(f"decay must be in (0, 1], got {self.decay!r}")

    def _fit_sequences(self, histories, user_items) -> None:
        x = user_items.astype(bool).astype(np.float32).tocsc()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        xn = x @ sp.diags(1.0 / norms)
        sim = (xn.T @ xn).tocsr()
        self.sim_data_, self.sim_indices_, self.sim_indptr_ = _top_neighbours(sim, self.neighbors)

    def _sim(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.sim_data_, self.sim_indices_, self.sim_indptr_),
                             shape=(self.n_items_, self.n_items_))

    def _score_sequences(self, histories):
        sim = self._sim()
        r, c, w = [], [], []
        for i, h in enumerate(histories):
            last = h[-self.n_last:][::-1]
            r.extend([i] * last.size)
            c.extend(last.tolist())
            w.extend((float(self.decay) ** np.arange(last.size)).tolist())
        q = sp.csr_matrix((w, (r, c)), shape=(len(histories), self.n_items_), dtype=np.float32)
        return (q @ sim).toarray().astype(np.float32)

    def _item_scores(self, items):
        return self._sim()[items].toarray()


class WindowKNN(SequentialRecommender):
    """Item-kNN of co-occurrences *within a time window*, voted by the whole history.

    Two items co-occur when one user watched them at most ``window`` positions apart in time
    order (either order; a pair ``d`` positions apart counts ``decay**(d - 1)``), the
    count-based window of word2vec/GloVe applied to watch histories and the bidirectional form
    of the sequential rules of Ludewig & Jannach (UMUAI 2018; they count ``i -> j`` within a
    window, weighted by distance). With ``C`` the summed counts over all training histories and
    ``n_i`` the number of histories holding item ``i``::

        sim_ij = C_ij / (n_i * n_j) ** alpha            (alpha = 0.5: cosine-like)
        score_j = sum_{t >= 0} recency**t * sim(h_{-1-t}, j)   (h_{-1}: the latest item)

    pruned to each item's ``neighbors`` most similar items. Plain co-occurrence models (EASE,
    ItemKNN) count two items of a history alike whether they were watched a minute or a year
    apart; this model counts only items watched together, which is the signal of sessions and
    of the order in which a service showed items. ``recency=1`` (every history item votes
    alike) suits a random holdout, whose missing items sit between the training items of the
    same history; ``recency < 1`` leans on the latest items (next-item prediction).

    Measured on MovieLens 100K (``benchmarks/bench_ltr.py --help``): on a validation split of
    Microsoft Recommenders' training split NDCG@10 0.2724 alone vs ItemKNN 0.2579 and EASE
    0.2751; on the test split, fitted on the whole training split, 0.4444 vs EASE 0.4829: its
    edge is on short histories and fades as they grow.

    Parameters
    ----------
    window : int
        Largest distance in positions (>= 1) at which two items of a history co-occur.
    decay : float
        Weight ratio between pairs one position further apart, in (0, 1] (1: all pairs within
        the window alike).
    alpha : float
        Popularity normalisation exponent in [0, 1] (0: raw counts).
    recency : float
        Weight ratio between consecutive older history items when scoring, in (0, 1].
    neighbors : int or None
        Neighbours kept per item (>= 1), None keeps all.
    max_length : int
        Histories are truncated to their last ``max_length`` items (training and scoring).
    """

    _state_attrs: ClassVar[tuple[str, ...]] = ("hist_indptr_", "hist_items_", "sim_data_",
                                               "sim_indices_", "sim_indptr_")

    def __init__(self, window: int = 10, decay: float = 1.0, alpha: float = 0.5,
                 recency: float = 1.0, neighbors: int | None = None, max_length: int = 1000):
        self.window = window
        self.decay = decay
        self.alpha = alpha
        self.recency = recency
        self.neighbors = neighbors
        self.max_length = max_length

    def _validate_params(self) -> None:
        super()._validate_params()
        w = self.window
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1:
            raise ValueError(f"window must be an int >= 1, got {w!r}; fix: e.g. 10")
        nb = self.neighbors
        if nb is not None and (isinstance(nb, bool) or not isinstance(nb, (int, np.integer)) or nb < 1):
            raise ValueError(f"neighbors must be None or an int >= 1, got {nb!r}")
        for name in ("decay", "recency"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {v!r}")
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not (0 <= a <= 1):
            raise ValueError(f"alpha must be in [0, 1], got {a!r}; fix: 0.5 (cosine-like)")

    def _fit_sequences(self, histories, user_items) -> None:
        n = self.n_items_
        ml = int(self.max_length)
        hist = [h[-ml:] for h in histories]
        flat = np.concatenate(hist) if hist else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(len(hist)), [h.size for h in hist])
        counts = sp.csr_matrix((n, n), dtype=np.float64)
        for d in range(1, int(self.window) + 1):
            if flat.size <= d:
                break
            same = owner[:-d] == owner[d:]
            if not same.any():
                break  # no history is longer than d
            a, b = flat[:-d][same], flat[d:][same]
            w = float(self.decay) ** (d - 1)
            counts = counts + sp.csr_matrix((np.full(a.size, w), (a, b)), shape=(n, n))
        counts = (counts + counts.T).tocsr()
        held = np.bincount(flat, minlength=n).astype(np.float64)  # histories holding each item
        scale = np.where(held > 0, held, 1.0) ** -float(self.alpha)
        sim = sp.diags(scale) @ counts @ sp.diags(scale)
        self.sim_data_, self.sim_indices_, self.sim_indptr_ = _top_neighbours(sim, self.neighbors)

    def _sim(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.sim_data_, self.sim_indices_, self.sim_indptr_),
                             shape=(self.n_items_, self.n_items_))

    def _score_sequences(self, histories):
        lengths = np.array([h.size for h in histories], dtype=np.int64)
        cols = np.concatenate([h[::-1] for h in histories]) if histories else np.zeros(0, np.int64)
        age = np.concatenate([np.arange(m) for m in lengths]) if histories else np.zeros(0)
        w = float(self.recency) ** age
        q = sp.csr_matrix((w.astype(np.float32), cols, np.r_[0, np.cumsum(lengths)]),
                          shape=(len(histories), self.n_items_))
        q.sum_duplicates()
        return (q @ self._sim()).toarray().astype(np.float32)

    def _item_scores(self, items):
        return self._sim()[items].toarray()


# ---------------------------------------------------------------------------- neural models
def _resolve_device(device: str):
    import torch

    if device == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        logger.info("device 'auto' resolved to %s", dev)
        return torch.device(dev)
    if device == "cpu":
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} asked for but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); fix: device='cpu' or 'auto'")
        return torch.device(device)
    raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")


def _windows(seq: np.ndarray, max_length: int, mode: str) -> list[np.ndarray]:
    """Training sequences of one history: its last ``max_length + 1`` items ("last", as Kang
    and McAuley train SASRec), or ("all") the whole history cut from the end into chunks of
    ``max_length + 1`` items that overlap by one item, so that every transition of the history
    is a training target exactly once; chunks shorter than 2 items are dropped."""
    step = max_length + 1
    if mode == "last" or seq.size <= step:
        return [seq[-step:]]
    out = []
    end = seq.size
    while end >= 2:
        out.append(seq[max(0, end - step):end])
        end -= max_length  # the next chunk ends on this chunk's first item (its input only)
    return out


def _pad_left(seqs: list[np.ndarray], length: int) -> np.ndarray:
    """Item indices + 1 (0 = padding), left-padded to ``length``."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-length:]
        if s.size:
            out[i, length - s.size:] = s + 1
    return out


class _NeuralSequential(SequentialRecommender):
    """Training loop shared by SASRec and GRU4Rec (full softmax CE or sampled BCE)."""

    _net_kind: ClassVar[str] = ""
    # item content is optional (recsys.models._OPTIONAL_SIDE_INPUTS): fit_model passes it when given
    side_inputs: ClassVar[tuple[str, ...]] = ("interaction_times", "item_features")

    def _validate_params(self) -> None:
        super()._validate_params()
        ints = {"embed_dim": 1, "epochs": 1, "batch_size": 1, "patience": 1,
                "validation_users": 0, "num_negatives": 1}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' (full softmax) or 'bce' (sampled), got {self.loss!r}")
        if self.windows not in ("last", "all"):
            raise ValueError(f"windows must be 'last' or 'all', got {self.windows!r}")
        for name in ("dropout", "id_dropout"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not 0 <= v < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {v!r}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        _resolve_device(self.device)

    # -- network
    def _build_net(self):
        raise NotImplementedError  # pragma: no cover

    def _config(self) -> dict:
        # what must match to resume: not the epoch budget, patience, progress bar or folder
        skip = {"epochs", "patience", "progress", "checkpoint_dir"}
        feats = getattr(self, "_item_features", None)
        if feats is None:
            skip.add("id_dropout")  # unused without features
        if self.windows == "last":
            skip.add("windows")  # the default: checkpoints written before the option still resume
        params = {k: v for k, v in self.get_params().items() if k not in skip}
        config = {"class": type(self).__name__, "params": params, "n_items": self.n_items_}
        if feats is not None:  # only then: checkpoints of models without features keep their config
            import hashlib

            config["item_features_dim"] = int(feats.shape[1])
            config["item_features_sha1"] = hashlib.sha1(np.ascontiguousarray(feats).tobytes()).hexdigest()
        return config

    # -- training
    def _fit_sequences(self, histories, user_items) -> None:
        import torch

        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            tqdm = None
        dev = _resolve_device(self.device)
        torch.manual_seed(int(self.seed))
        rng = np.random.default_rng(int(self.seed))
        ml = int(self.max_length)
        # validation split: last item of some users with >= 3 items
        eligible = np.flatnonzero([h.size >= 3 for h in histories])
        n_val = min(int(self.validation_users), eligible.size)
        val_users = np.sort(rng.choice(eligible, size=n_val, replace=False)) if n_val else eligible[:0]
        is_val = np.zeros(len(histories), bool)
        is_val[val_users] = True
        train_seqs = [h[:-1] if is_val[u] else h for u, h in enumerate(histories)]
        train_seqs = [c for s in train_seqs if s.size >= 2 for c in _windows(s, ml, self.windows)]
        val_inputs = [histories[u][:-1] for u in val_users]
        val_targets = np.array([histories[u][-1] for u in val_users], dtype=np.int64)

        net = self._build_net().to(dev)
        # with item content, items never seen in training are left out of the loss (not pushed
        # down as negatives): they have no evidence either way, and their score at recommend
        # time comes from their features (the shared projection) alone
        warm = None
        if getattr(self, "_item_features", None) is not None:
            seen = np.zeros(self.n_items_, bool)
            for seq in train_seqs:
                seen[seq] = True
            warm = np.flatnonzero(seen)
            cold_mask = torch.from_numpy(~seen).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=float(self.learning_rate))
        start_epoch, best, best_state, bad, history = 0, -1.0, None, 0, []
        ckpt = Path(self.checkpoint_dir) / "checkpoint.pt" if self.checkpoint_dir else None
        if ckpt is not None and ckpt.exists():
            start_epoch, best, best_state, bad, history = self._resume(ckpt, net, opt, dev)
        self._net = net
        self._dev = dev
        order_rng_seed = int(self.seed)
        stopped = False
        bar = (tqdm(total=int(self.epochs), initial=start_epoch, desc=type(self).__name__,
                    unit="epoch", disable=not self._show_progress) if tqdm else None)
        for epoch in range(start_epoch, int(self.epochs)):
            if bad >= int(self.patience):
                stopped = True
                break
            net.train()
            perm = np.random.default_rng([order_rng_seed, epoch]).permutation(len(train_seqs))
            neg_rng = np.random.default_rng([order_rng_seed, epoch, 1])
            total, count = 0.0, 0
            bs = int(self.batch_size)
            for s in range(0, perm.size, bs):
                batch = [train_seqs[i] for i in perm[s:s + bs]]
                width = max(b.size for b in batch) - 1
                x = torch.from_numpy(_pad_left([b[:-1] for b in batch], width)).to(dev)
                y = torch.from_numpy(_pad_left([b[1:] for b in batch], width)).to(dev)
                h = net(x)  # (B, L, d)
                mask = y > 0
                hs, ys = h[mask], y[mask] - 1
                table = net.items()  # (n_items + 1, d): id embedding [+ W f]
                if self.loss == "ce":
                    logits = hs @ table[1:].T
                    if warm is not None:
                        logits = logits.masked_fill(cold_mask, float("-inf"))
                    loss = torch.nn.functional.cross_entropy(logits, ys)
                else:
                    if warm is None:
                        neg = neg_rng.integers(0, self.n_items_,
                                               size=(ys.shape[0], int(self.num_negatives)))
                    else:  # negatives among the items seen in training (see above)
                        neg = warm[neg_rng.integers(0, warm.size,
                                                    size=(ys.shape[0], int(self.num_negatives)))]
                    neg = torch.from_numpy(neg).to(dev)
                    pos_l = (hs * table[ys + 1]).sum(-1)
                    neg_l = (hs[:, None, :] * table[neg + 1]).sum(-1)
                    loss = (torch.nn.functional.softplus(-pos_l).mean()
                            + torch.nn.functional.softplus(neg_l).mean())
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * ys.shape[0]
                count += int(ys.shape[0])
            train_loss = total / max(count, 1)
            val = self._validation_ndcg(val_inputs, val_targets) if n_val else float("nan")
            history.append({"epoch": epoch + 1, "loss": train_loss, "val_ndcg@10": val})
            if not n_val or val > best:
                best, bad = (val if n_val else best), 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
            if bar is not None:
                bar.set_postfix(loss=f"{train_loss:.4f}", val_ndcg10=f"{val:.4f}")
                bar.update(1)
            logger.info("%s epoch %d loss %.4f val NDCG@10 %.4f", type(self).__name__, epoch + 1,
                        train_loss, val)
            if ckpt is not None:
                self._checkpoint(ckpt, epoch + 1, net, opt, best, best_state, bad, history)
        if bar is not None:
            bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.training_history_ = history
        self.stopped_early_ = stopped
        self.best_validation_ndcg_ = best if n_val else None

    def _checkpoint(self, path: Path, epoch, net, opt, best, best_state, bad, history) -> None:
        import torch

        from embeddings._io import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"epoch": epoch, "net": net.state_dict(), "opt": opt.state_dict(),
                   "best": float(best), "best_state": best_state or {}, "bad": int(bad),
                   "history": json.dumps(history), "config": json.dumps(self._config()),
                   "torch_rng": torch.get_rng_state()}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    def _resume(self, path: Path, net, opt, dev):
        import torch

        try:
            payload = torch.load(path, map_location=dev, weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); it is corrupt or "
                "not a checkpoint of this code; fix: delete it to train from scratch") from exc
        if json.loads(payload.get("config", "{}")) != self._config():
            raise ValueError(
                f"checkpoint {path} was written by a different model configuration; fix: use "
                "another checkpoint_dir or delete the checkpoint")
        net.load_state_dict(payload["net"])
        opt.load_state_dict(payload["opt"])
        torch.set_rng_state(payload["torch_rng"].cpu())
        logger.info("resumed %s from %s at epoch %d", type(self).__name__, path, payload["epoch"])
        return (int(payload["epoch"]), float(payload["best"]), payload["best_state"] or None,
                int(payload["bad"]), json.loads(payload["history"]))

    def _validation_ndcg(self, inputs, targets, k: int = 10) -> float:
        s = self._score_sequences([h[-int(self.max_length):] for h in inputs])
        for i, h in enumerate(inputs):
            s[i, h] = -np.inf
        t = s[np.arange(targets.size), targets]
        rank = (s >= t[:, None]).sum(axis=1)  # ties count against the model
        return float(np.mean(np.where(rank <= k, 1.0 / np.log2(rank + 1), 0.0)))

    def _score_sequences(self, histories):
        import torch

        net = self._ensure_net()
        net.eval()
        out = np.empty((len(histories), self.n_items_), dtype=np.float32)
        bs = 1024
        with torch.no_grad():
            for s in range(0, len(histories), bs):
                batch = histories[s:s + bs]
                width = max(min(h.size, int(self.max_length)) for h in batch)
                x = torch.from_numpy(_pad_left(batch, width)).to(self._dev)
                h = net(x)[:, -1, :]
                out[s:s + bs] = (h @ net.items()[1:].T).float().cpu().numpy()
        return out

    def _ensure_net(self):
        if getattr(self, "_net", None) is None:
            raise RuntimeError("network missing; fit or load the model")  # pragma: no cover
        return self._net

    # -- persistence (weights as plain arrays in the npz; no pickle)
    def _get_state(self) -> dict[str, np.ndarray]:
        state = super()._get_state()
        for k, v in self._net.state_dict().items():
            state["net." + k] = v.detach().float().cpu().numpy()
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        import torch

        super()._set_state(arrays)
        self.n_items_ = int(arrays["net.item_emb.weight"].shape[0]) - 1
        feat = arrays.get("net.feat")
        self._item_features = None if feat is None else np.asarray(feat, dtype=np.float32)
        self._dev = _resolve_device(self.device)
        net = self._build_net()
        sd = {k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")}
        net.load_state_dict(sd)
        self._net = net.to(self._dev).eval()


def _nets():
    """Torch modules, built lazily so that importing the registry does not import torch."""
    import torch
    from torch import nn

    class ItemTable(nn.Module):
        """Item representations: the id embedding, plus ``W f_i`` when item features are given.

        ``feat`` (n_items, D) is a fixed buffer (saved with the weights), ``proj`` a learned
        linear map without bias; row 0 of :meth:`items` is the padding (zero).
        """

        def _init_content(self, features, d, id_dropout=0.0):
            self.proj = None
            self.id_dropout = float(id_dropout)
            if features is not None:
                self.register_buffer("feat", torch.as_tensor(np.asarray(features, np.float32)))
                self.proj = nn.Linear(self.feat.shape[1], d, bias=False)
                nn.init.normal_(self.proj.weight, std=0.02)  # as the id embedding

        def items(self):
            if self.proj is None:
                return self.item_emb.weight
            ids = self.item_emb.weight
            if self.training and self.id_dropout > 0:
                # drop whole id rows (no rescaling): the content part must carry each item alone
                # often enough to score an item that has no trained id (a cold item)
                keep = torch.rand(ids.shape[0], 1, device=ids.device) >= self.id_dropout
                ids = ids * keep
            return ids + nn.functional.pad(self.proj(self.feat), (0, 0, 1, 0))

        def embed(self, x):
            return self.item_emb(x) if self.proj is None else self.items()[x]

    class SASRecNet(ItemTable):
        def __init__(self, n_items, d, max_len, layers, heads, dropout, features=None,
                     id_dropout=0.0):
            super().__init__()
            self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
            self.pos_emb = nn.Embedding(max_len, d)
            self.max_len = max_len
            self.drop = nn.Dropout(dropout)
            layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=d, dropout=dropout,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            self.scale = math.sqrt(d)
            # small initial embeddings (RecBole/BERT's initializer_range 0.02): with N(0, 1) the
            # initial logits h.e have a spread of ~sqrt(d) and the softmax starts saturated
            nn.init.normal_(self.item_emb.weight, std=0.02)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
            self._init_content(features, d, id_dropout)

        def forward(self, x):
            b, length = x.shape
            # positions counted back from the newest item (clamped at max_len - 1), so the last
            # item always has the same position whatever the padding: the original SASRec's
            # left padding to max_len, without computing on the padding
            pos = (length - 1 - torch.arange(length, device=x.device)).clamp(max=self.max_len - 1)
            h = self.embed(x) * self.scale + self.pos_emb(pos)[None]
            h = self.drop(h) * (x > 0).unsqueeze(-1)
            causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=x.device), 1)
            pad = x == 0
            # a fully padded query row would give NaN: let padding rows attend to themselves
            attn_mask = causal[None].expand(b, -1, -1) | pad[:, None, :]
            eye = torch.eye(length, dtype=torch.bool, device=x.device)[None]
            attn_mask = attn_mask & ~eye
            attn_mask = attn_mask.repeat_interleave(self.encoder.layers[0].self_attn.num_heads, 0)
            h = self.encoder(h, mask=attn_mask)
            return self.norm(h)

    class GRU4RecNet(ItemTable):
        def __init__(self, n_items, d, layers, dropout, features=None, id_dropout=0.0):
            super().__init__()
            self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
            self.drop = nn.Dropout(dropout)
            self.gru = nn.GRU(d, d, num_layers=layers, batch_first=True)
            self.out = nn.Linear(d, d)
            nn.init.normal_(self.item_emb.weight, std=0.02)  # as SASRecNet
            self._init_content(features, d, id_dropout)

        def forward(self, x):
            h, _ = self.gru(self.drop(self.embed(x)))
            return self.out(h)

    return SASRecNet, GRU4RecNet


class SASRec(_NeuralSequential):
    """Self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

    A causal Transformer over the last ``max_length`` items (learned positions, pre-norm
    blocks); the next-item score is the dot product of the last position's output with the
    (shared) item embedding. ``loss="ce"`` (default) trains with full softmax cross-entropy
    over all items at every position, the variant Klenitskiy & Vasilev (RecSys 2023, "Turning
    Dross Into Gold Loss: is BERT4Rec really better than SASRec?") show to beat BERT4Rec;
    ``loss="bce"`` is the original loss with ``num_negatives`` uniformly sampled negatives
    per position.

    Parameters
    ----------
    embed_dim : int
        Hidden size d (default 64).
    num_layers, num_heads : int
        Transformer blocks and attention heads (``embed_dim`` divisible by ``num_heads``).
    dropout : float
        Dropout on embeddings and inside blocks, in [0, 1).
    max_length : int
        Histories truncated to their last ``max_length`` items.
    loss : {"ce", "bce"}
    num_negatives : int
        Negatives per position for ``loss="bce"``.
    learning_rate : float
        Adam step size.
    batch_size : int
        Users (sequences) per step.
    epochs : int
        Maximum epochs.
    patience : int
        Stop after this many epochs without a better validation NDCG@10; the best epoch's
        weights are kept.
    validation_users : int
        Users whose last training item is held out for early stopping (0 = no validation:
        train ``epochs`` epochs).
    seed : int
    device : {"cpu", "cuda", "auto"}
    checkpoint_dir : str or None
        Folder for an atomic per-epoch ``checkpoint.pt``; an existing one with the same
        configuration is resumed.
    progress : bool
        Show the tqdm bar.
    id_dropout : float
        Only with ``item_features``: the probability, per item and training step, that the
        item's id embedding is dropped so that its content part ``W f_i`` alone represents it
        (a cold item has only that part); in [0, 1). Unused without features.
    windows : {"last", "all"}
        Training sequences per user and epoch: "last" (default) its last ``max_length + 1``
        items, as Kang & McAuley train SASRec; "all" the whole history in consecutive chunks
        of ``max_length + 1`` items (every transition a target once; long histories give
        several chunks, so an epoch takes longer).

    Item content
    ------------
    ``fit(..., item_features=F)`` with one (n_items, D) matrix or a list of them (CLIP or title
    embeddings, pre-extracted features; each mean-centred and row-normalised by
    :func:`~recsys.models.content_ease.normalise_features`, then concatenated) represents
    item ``i`` as ``e_i + W f_i``, ``W`` a learned (d, D) projection without bias, both in
    the input sequence and in the output scores (the softmax is over the same combined
    item matrix). Items that never occur in the training sequences are left out of the loss
    (not pushed down as negatives), so an item with no training occurrence (cold) is scored
    through its features. ``F`` and ``W`` are saved with the weights. Without features the
    model is the plain id model.
    """

    def __init__(self, embed_dim: int = 64, num_layers: int = 2, num_heads: int = 2,
                 dropout: float = 0.2, max_length: int = 50, loss: str = "ce",
                 num_negatives: int = 1, learning_rate: float = 1e-3, batch_size: int = 128,
                 epochs: int = 20, patience: int = 3, validation_users: int = 2000, seed: int = 0,
                 device: str = "cpu", checkpoint_dir: str | None = None, progress: bool = True,
                 id_dropout: float = 0.5, windows: str = "last"):
        self.embed_dim = embed_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.max_length = max_length
        self.loss = loss
        self.num_negatives = num_negatives
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.validation_users = validation_users
        self.seed = seed
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.id_dropout = id_dropout
        self.windows = windows

    def _validate_params(self) -> None:
        super()._validate_params()
        for name in ("num_layers", "num_heads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads}); "
                "fix: e.g. embed_dim=64, num_heads=2")

    def _build_net(self):
        SASRecNet, _ = _nets()
        return SASRecNet(self.n_items_, int(self.embed_dim), int(self.max_length),
                         int(self.num_layers), int(self.num_heads), float(self.dropout),
                         getattr(self, "_item_features", None), float(self.id_dropout))


class GRU4Rec(_NeuralSequential):
    """GRU4Rec (Hidasi et al., ICLR 2016) trained on whole user sequences.

    A GRU over the item embeddings; the next-item score is the dot product of a linear map of
    the last hidden state with the item embedding. Loss as :class:`SASRec` (``"ce"``, full
    softmax, the setting Hidasi & Czapp (RecSys 2023) recommend over sampled losses; or
    ``"bce"`` with sampled negatives). Parameters as :class:`SASRec` without the heads.
    """

    def __init__(self, embed_dim: int = 64, num_layers: int = 1, dropout: float = 0.2,
                 max_length: int = 50, loss: str = "ce", num_negatives: int = 1,
                 learning_rate: float = 1e-3, batch_size: int = 128, epochs: int = 20,
                 patience: int = 3, validation_users: int = 2000, seed: int = 0,
                 device: str = "cpu", checkpoint_dir: str | None = None, progress: bool = True,
                 id_dropout: float = 0.5, windows: str = "last"):
        self.embed_dim = embed_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.max_length = max_length
        self.loss = loss
        self.num_negatives = num_negatives
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.validation_users = validation_users
        self.seed = seed
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.id_dropout = id_dropout
        self.windows = windows

    def _build_net(self):
        _, GRU4RecNet = _nets()
        return GRU4RecNet(self.n_items_, int(self.embed_dim), int(self.num_layers),
                          float(self.dropout), getattr(self, "_item_features", None),
                          float(self.id_dropout))
