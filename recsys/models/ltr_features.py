"""Time and sequence features of the learned second stage (:class:`recsys.models.LTRRecommender`).

:func:`build_context` summarises a training matrix and its interaction times (or positions)
into small arrays; :func:`context_features` turns them into feature columns for
(user, candidate) pairs. The ranker is trained with a context built from the **fit part** of
its validation split only (times of held-out interactions masked away), and served with a
context built from the whole training matrix, so no feature sees a label or the test split.

Two kinds of time, chosen by ``kind``:

* ``"global"`` (unix timestamps, comparable between users): with ``T`` the latest training
  time and ``span`` = ``T`` minus the earliest one (so the values do not depend on the unit)

  - ``item_age``: ``(T - first time of the item) / span``; NaN for an item never seen;
  - ``item_age_at_user``: ``(user's last time - first time of the item) / span`` (negative
    when the item first appeared after the user's last interaction);
  - ``user_recency``: ``(T - user's last time) / span``;
  - ``recent_pop_<q>`` for every ``q`` in ``windows``: share of users whose interaction with
    the item lies in the last ``q * span`` of the log (``t >= T - q * span``);
  - ``pop_near_user``: share of users who interacted with the item within
    ``windows[0] * span`` of the user's last time (either side);

* ``"order"`` (positions within each user's sequence, not comparable between users): none of
  the above.

With either kind, the user's sequence (interactions ordered by time, ties by item index)
gives the short-term features, over the user's last ``n_last`` items ``l_1`` (newest) ...
``l_m``:

* ``st_cooc_last1``, ``st_cooc_lastm``: item-item co-occurrence cosine
  ``|U_i & U_j| / sqrt(|U_i| |U_j|)`` (users in common; top ``neighbors`` kept per item) of
  the candidate with ``l_1``, and its mean over ``l_1..l_m``;
* ``st_trans_last1``, ``st_trans_lastm``: transition probability ``P(next = candidate | l)``
  estimated from consecutive pairs of the training sequences (count of ``l -> candidate``
  divided by the count of ``l -> anything``), for ``l_1`` and averaged over ``l_1..l_m``;
* ``st_content_last1``, ``st_content_lastm`` (when item embeddings are given): cosine of
  the candidate's unit embedding with ``l_1``'s and its mean over ``l_1..l_m``.

A user outside the context (no ``user_index``, or an index beyond the training users) gets
NaN for every user-dependent feature (LightGBM treats NaN as missing).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["build_context", "context_features", "context_feature_names", "resolve_time_kind",
           "CONTEXT_ARRAYS"]

#: Array names of a context (saved as ``ctx__<name>`` in the model's state.npz).
CONTEXT_ARRAYS = ("item_first", "recent_pop", "user_last_time", "last_items", "pop_keys",
                  "scalars", "cooc_data", "cooc_indices", "cooc_indptr", "trans_data",
                  "trans_indices", "trans_indptr")
_KEY = np.int64(1) << 40  # item * _KEY + time: times below 2**40 s (year 36812) stay in range


def resolve_time_kind(kind: str, times: sp.csr_matrix | None) -> str | None:
    """``"global"``, ``"order"`` or None (no time features) for a ``time_features`` setting.

    ``"auto"``: None without times; ``"order"`` when every value is below 1e6 (positions: no
    unix timestamp of this century is that small); ``"global"`` otherwise.

    Raises
    ------
    ValueError
        ``kind`` not one of "auto", "global", "order", "none".
    """
    if kind not in ("auto", "global", "order", "none"):
        raise ValueError(f"time_features={kind!r}: expected 'auto', 'global', 'order' or 'none'")
    if kind == "none" or times is None or times.nnz == 0:
        return None
    if kind == "auto":
        return "order" if float(np.max(times.data)) < 1e6 else "global"
    return kind


def _sequences(times: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, items, times) of every stored entry, ordered by user, then time, then item."""
    t = times.tocsr()
    rows = np.repeat(np.arange(t.shape[0]), np.diff(t.indptr))
    order = np.lexsort((t.indices, t.data, rows))
    return rows[order], t.indices[order].astype(np.int64), t.data[order].astype(np.float64)


def _top_k_rows(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row of a CSR matrix."""
    m = m.tocsr()
    keep = np.ones(m.nnz, dtype=bool)
    for i in np.flatnonzero(np.diff(m.indptr) > k):
        a, b = m.indptr[i], m.indptr[i + 1]
        keep[a + np.argsort(-m.data[a:b], kind="stable")[k:]] = False
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=m.shape[0]))])
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


def build_context(user_items: sp.csr_matrix, times: sp.csr_matrix | None, kind: str | None, *,
                  windows=(0.01, 0.05, 0.2), n_last: int = 3, neighbors: int = 100) -> dict | None:
    """Item and user summaries of a training matrix and its times (module docstring).

    Parameters
    ----------
    user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
        The matrix the features may see (the fit part during training).
    times : scipy.sparse.csr_matrix, same shape, or None
        Time (unix seconds, ``kind="global"``) or position (``"order"``) of every entry of
        ``user_items``; entries not in ``user_items`` are ignored.
    kind : {"global", "order"} or None
        From :func:`resolve_time_kind`; None returns None (no context).
    windows : sequence of float
        Recent-popularity windows as shares of the log's time span, each in (0, 1].
    n_last : int
        How many of the user's last items the short-term features look at (>= 1).
    neighbors : int
        Co-occurrence neighbours kept per item (>= 1).

    Returns
    -------
    dict of str to np.ndarray, or None
        The arrays named in :data:`CONTEXT_ARRAYS` plus ``"kind"`` (str) and ``"windows"``.

    Raises
    ------
    ValueError
        ``times`` shaped unlike ``user_items``, or an entry of ``user_items`` without a time.
    """
    if kind is None or times is None:
        return None
    ui = user_items.tocsr()
    n_users, n_items = ui.shape
    t = sp.csr_matrix(times, dtype=np.float64)
    if t.shape != ui.shape:
        raise ValueError(f"interaction_times has shape {t.shape}, expected {ui.shape} (like "
                         "user_items); fix: build both from the same log")
    mask = ui.copy()
    mask.data = (mask.data != 0).astype(np.float64)
    mask.eliminate_zeros()
    t = t.multiply(mask).tocsr()
    t.eliminate_zeros()
    if t.nnz != mask.nnz:
        raise ValueError(f"{mask.nnz - t.nnz} interactions of user_items have no time in "
                         "interaction_times; fix: give every interaction a time or position (a "
                         "time of 0 must be stored as a small positive number)")
    rows, items, tv = _sequences(t)
    counts = np.bincount(rows, minlength=n_users)
    ends = np.cumsum(counts)
    last_items = np.full((n_users, n_last), -1, dtype=np.int64)
    for j in range(n_last):  # j = 0 newest
        ok = counts > j
        last_items[ok, j] = items[ends[ok] - 1 - j]
    ctx: dict = {"kind": kind, "windows": np.asarray(windows, dtype=np.float64),
                 "last_items": last_items}
    # transitions: consecutive pairs of the same user
    same = rows[1:] == rows[:-1]
    a, b = items[:-1][same], items[1:][same]
    trans = sp.csr_matrix((np.ones(a.size), (a, b)), shape=(n_items, n_items))
    out_deg = np.asarray(trans.sum(axis=1)).ravel()
    trans = sp.diags(np.divide(1.0, out_deg, out=np.zeros(n_items), where=out_deg > 0)) @ trans
    trans = sp.csr_matrix(trans, dtype=np.float32)
    # co-occurrence cosine, top `neighbors` per item, no self-similarity
    x = sp.csr_matrix(mask, dtype=np.float32)
    g = (x.T @ x).tocsr()
    g.setdiag(0)
    g.eliminate_zeros()
    deg = np.asarray(x.sum(axis=0)).ravel()
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros(n_items), where=deg > 0).astype(np.float32)
    g = sp.csr_matrix(sp.diags(inv) @ g @ sp.diags(inv), dtype=np.float32)
    g = _top_k_rows(g, int(neighbors))
    for name, m in (("cooc", g), ("trans", trans)):
        ctx[f"{name}_data"], ctx[f"{name}_indices"], ctx[f"{name}_indptr"] = \
            m.data.astype(np.float32), m.indices.astype(np.int64), m.indptr.astype(np.int64)
    if kind == "global":
        t_max, t_min = float(tv.max()), float(tv.min())
        span = max(t_max - t_min, 1.0)
        first = np.full(n_items, np.inf)
        np.minimum.at(first, items, tv)
        first[np.isinf(first)] = np.nan
        user_last = np.full(n_users, np.nan)
        user_last[counts > 0] = tv[ends[counts > 0] - 1]
        recent = np.stack([np.bincount(items[tv >= t_max - q * span], minlength=n_items) / max(n_users, 1)
                           for q in ctx["windows"]]).astype(np.float32)
        ctx.update({"item_first": first, "user_last_time": user_last, "recent_pop": recent,
                    "pop_keys": np.sort(items * _KEY + np.rint(tv).astype(np.int64)),
                    "scalars": np.array([t_max, span, n_users], dtype=np.float64)})
    return ctx


def context_feature_names(kind: str | None, windows, content: bool) -> list[str]:
    """Feature names :func:`context_features` returns, in order."""
    if kind is None:
        return []
    out = []
    if kind == "global":
        out += ["item_age", "item_age_at_user", "user_recency"]
        out += [f"recent_pop_{q:g}" for q in windows] + ["pop_near_user"]
    out += ["st_cooc_last1", "st_cooc_lastm", "st_trans_last1", "st_trans_lastm"]
    return out + (["st_content_last1", "st_content_lastm"] if content else [])


def _pair_values(m: sp.csr_matrix, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``m[a, c]`` for pairs; 0 where ``a < 0``."""
    out = np.zeros(a.size, dtype=np.float32)
    ok = a >= 0
    if ok.any():
        out[ok] = np.asarray(m[a[ok], c[ok]]).ravel()
    return out


def context_features(ctx: dict | None, r: np.ndarray, c: np.ndarray, users: np.ndarray | None,
                     emb: np.ndarray | None) -> list[np.ndarray]:
    """Feature columns (float32, one per :func:`context_feature_names` entry) for pairs.

    Parameters
    ----------
    ctx : dict or None
        From :func:`build_context` (None: no columns).
    r : np.ndarray of int, shape (n_pairs,)
        Row of each pair in the batch.
    c : np.ndarray of int, shape (n_pairs,)
        Candidate item index.
    users : np.ndarray of int, shape (n_rows,), or None
        Training user index of each batch row (None or out of range: user features NaN).
    emb : np.ndarray, float32, shape (n_items, d), or None
        Unit item embeddings for the content short-term features.
    """
    if ctx is None:
        return []
    last = ctx["last_items"]
    n_users, m = last.shape
    n_items = ctx["cooc_indptr"].size - 1
    if users is None:
        u = np.full(r.size, -1, dtype=np.int64)
    else:
        uu = np.asarray(users, dtype=np.int64)[r]
        u = np.where((uu >= 0) & (uu < n_users), uu, -1)
    known = u >= 0
    lp = np.full((r.size, m), -1, dtype=np.int64)
    lp[known] = last[u[known]]
    cols: list[np.ndarray] = []
    nan = np.float32(np.nan)
    if ctx["kind"] == "global":
        t_max, span, n_tr = (float(v) for v in ctx["scalars"])
        first = ctx["item_first"][c]
        ulast = np.where(known, ctx["user_last_time"][np.maximum(u, 0)], np.nan)
        cols += [((t_max - first) / span).astype(np.float32),
                 ((ulast - first) / span).astype(np.float32),
                 ((t_max - ulast) / span).astype(np.float32)]
        cols += [row[c] for row in ctx["recent_pop"]]
        w = float(ctx["windows"][0]) * span
        keys = ctx["pop_keys"]
        base = c.astype(np.int64) * _KEY
        lo = base + np.rint(np.nan_to_num(ulast - w, nan=0.0)).astype(np.int64)
        hi = base + np.rint(np.nan_to_num(ulast + w, nan=0.0)).astype(np.int64)
        near = (np.searchsorted(keys, hi, side="right") - np.searchsorted(keys, lo, side="left"))
        cols.append(np.where(np.isfinite(ulast), near / max(n_tr, 1.0), np.nan).astype(np.float32))
    for name in ("cooc", "trans"):
        mat = sp.csr_matrix((ctx[f"{name}_data"], ctx[f"{name}_indices"], ctx[f"{name}_indptr"]),
                            shape=(n_items, n_items))
        vals = np.stack([_pair_values(mat, lp[:, j], c) for j in range(m)], axis=1)
        n_have = (lp >= 0).sum(axis=1)
        cols += [np.where(lp[:, 0] >= 0, vals[:, 0], nan).astype(np.float32),
                 np.where(n_have > 0, vals.sum(axis=1) / np.maximum(n_have, 1), nan).astype(np.float32)]
    if emb is not None:
        sims = np.zeros((r.size, m), dtype=np.float32)
        step = 1 << 16
        for a in range(0, r.size, step):
            sl = slice(a, a + step)
            ec = emb[c[sl]]
            for j in range(m):
                li = lp[sl, j]
                ok = li >= 0
                sims[sl, j][ok] = np.einsum("nd,nd->n", emb[li[ok]], ec[ok])
        n_have = (lp >= 0).sum(axis=1)
        cols += [np.where(lp[:, 0] >= 0, sims[:, 0], nan).astype(np.float32),
                 np.where(n_have > 0, sims.sum(axis=1) / np.maximum(n_have, 1), nan).astype(np.float32)]
    return cols
