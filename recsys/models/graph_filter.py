"""Training-free graph filtering over the item graph, with item-item graphs from content.

Two published ideas, combined in closed form:

* **Graph filtering** (Shen et al., "How Powerful is Graph Convolution for Recommendation?",
  CIKM 2021, GF-CF): with the degree-normalised interaction matrix
  ``R~ = D_U^-1/2 X D_I^-1/2`` the item-item matrix ``P = R~^T R~`` is a low-pass graph filter;
  LightGCN's propagation without training is its powers. GF-CF scores ``x_u D_I^-1/2 P D_I^1/2``;
  here ``P`` is applied ``layers`` times (``layers = 1`` is GF-CF's linear filter), the
  training-free counterpart of LightGCN's L propagation layers (He et al., SIGIR 2020).
* **Frozen modality kNN graphs** (Zhou and Shen, "A Tale of Two Graphs: Freezing and Denoising
  Graph Structures for Multimodal Recommendation", ACM MM 2023, FREEDOM; LATTICE, Zhang et al.,
  MM 2021, learns them): per feature matrix, each item keeps its ``knn`` nearest items by
  cosine (positive similarities only), the graph is symmetrised (max) and normalised
  ``S~ = D^-1/2 S D^-1/2``. FREEDOM uses ``knn = 10``.

The propagation matrix mixes them, and the score is::

    M = (1 - sum_m w_m) P + sum_m w_m S~_m     (sparse, symmetric)
    W = D_I^-1/2 M^layers D_I^1/2              (dense, when it fits; see ``max_memory_bytes``)
    score_u = x_u W                            (else: x_u propagated through sparse M per batch)

Items without training interactions get degree 1 in ``D_I`` and reach users only through
content edges, so a cold item can be recommended when its content neighbours are; without
content graphs it scores 0 everywhere. On TikTok (MMSSL splits) this model with the visual
graph is the project's best (``benchmarks/bench_shortvideo.py``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .content_ease import ItemFeaturesRecommender, feature_weights, normalise_features
from .ease import _GIB

__all__ = ["GraphFilter", "knn_item_graph"]

_BLOCK = 2048


def knn_item_graph(features: np.ndarray, knn: int) -> sp.csr_matrix:
    """Symmetric-normalised cosine kNN graph over items (FREEDOM's frozen modality graph).

    Parameters
    ----------
    features : np.ndarray, (n_items, d)
        One row per item; mean-centred and L2-normalised here
        (:func:`recsys.models.content_ease.normalise_features`), so similarities are cosines.
    knn : int
        Neighbours kept per item (>= 1; capped at ``n_items - 1``); self-loops are excluded.

    Returns
    -------
    scipy.sparse.csr_matrix, float32, (n_items, n_items)
        ``D^-1/2 S D^-1/2`` with ``S = max(A, A^T)``, ``A`` the kNN cosines clipped at 0; rows of
        items with no positive neighbour are empty.

    Notes
    -----
    Computed in blocks of 2,048 rows, so memory is ``2048 * n_items`` floats, not ``n_items^2``.
    """
    f = normalise_features(features).astype(np.float32)
    n = f.shape[0]
    k = int(min(knn, n - 1))
    if k < 1:
        return sp.csr_matrix((n, n), dtype=np.float32)
    rows, cols, vals = [], [], []
    for start in range(0, n, _BLOCK):
        block = f[start:start + _BLOCK] @ f.T
        r = np.arange(block.shape[0])
        block[r, start + r] = -np.inf
        idx = np.argpartition(-block, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(start + r, k))
        cols.append(idx.ravel())
        vals.append(np.take_along_axis(block, idx, axis=1).ravel())
    v = np.maximum(np.concatenate(vals), 0.0)
    a = sp.csr_matrix((v, (np.concatenate(rows), np.concatenate(cols))), shape=(n, n),
                      dtype=np.float32)
    a.eliminate_zeros()
    s = a.maximum(a.T).tocsr()
    d = np.asarray(s.sum(axis=1)).ravel()
    inv = np.divide(1.0, np.sqrt(d), out=np.zeros_like(d), where=d > 0).astype(np.float32)
    return (sp.diags(inv) @ s @ sp.diags(inv)).tocsr().astype(np.float32)


class GraphFilter(ItemFeaturesRecommender):
    """LightGCN-style propagation without training, over the interaction and content graphs.

    Parameters
    ----------
    layers : int
        Propagation steps ``L`` (>= 1). 1 is GF-CF's linear filter; TikTok's validation split
        chooses 3.
    feature_weight : float or sequence of float
        Mixing weight ``w_m`` of each content graph (one value for all matrices or one per
        matrix; each >= 0, sum <= 1). 0 = interactions only.
    knn : int
        Neighbours per item in each content graph (>= 1; FREEDOM's 10).
    dense : "auto", True or False
        Precompute the dense ``W`` (True), keep ``M`` sparse (False), or decide by the budget
        ("auto", default).
    max_memory_bytes : int
        Memory budget (default 4 GiB). When three dense ``n_items^2`` float32 arrays fit in it,
        ``W`` is precomputed densely (``layers - 1`` BLAS products of ``n_items^3``; scoring is one
        product per batch: TikTok's 6,710 items, fit 20-30 s, all 9,303 users scored in seconds).
        Otherwise ``M`` stays sparse (12 bytes per entry, which must fit the budget) and every
        batch of users is propagated through it ``layers`` times (single-threaded sparse
        products: slower per user, but no ``n_items^2`` array, so catalogues of 10^5 items fit).
        A log needing more than the budget either way is refused.

    Attributes
    ----------
    M_ : scipy.sparse.csr_matrix, float32, (n_items, n_items)
        The mixed propagation matrix of the module docstring (symmetric).
    W_ : np.ndarray, float32, (n_items, n_items), or None
        ``D_I^-1/2 M^L D_I^1/2`` when it fits the budget; None in sparse mode.
    item_degree_ : np.ndarray, float64, (n_items,)
        Training interactions per item, 1 for items without any (``D_I``).
    n_feature_matrices_ : int

    Notes
    -----
    ``fit(user_items, item_features=...)`` takes one ``(n_items, d)`` array or a list (one per
    modality), as :class:`recsys.models.ContentEASE`. ``M``'s entries are the item pairs that
    share a user plus ``knn`` per item and modality. ``similar_items`` scores are rows of ``W``
    (in sparse mode: the item's unit vector propagated the same way).
    """

    _state_attrs = ("M_", "item_degree_")

    def __init__(self, layers: int = 3, feature_weight=0.2, knn: int = 10,
                 dense: str | bool = "auto", max_memory_bytes: int = 4 * _GIB) -> None:
        self.layers = layers
        self.feature_weight = feature_weight
        self.knn = knn
        self.dense = dense
        self.max_memory_bytes = max_memory_bytes

    def _validate_params(self) -> None:
        if self.dense not in ("auto", True, False):
            raise ValueError(f"dense must be 'auto', True or False, got {self.dense!r}")
        for name in ("layers", "knn"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        w = self.feature_weight
        vals = [w] if isinstance(w, (int, float)) else list(w)
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"feature_weight values must be numbers in [0, 1], got {w!r}")

    def _fit(self, user_items: sp.csr_matrix) -> None:
        n_items = user_items.shape[1]
        weights = feature_weights(self.feature_weight, len(self._features), max_total=1.0)
        x = user_items.astype(np.float64)
        du = np.asarray(x.sum(axis=1)).ravel()
        di = np.asarray(x.sum(axis=0)).ravel()
        inv_u = np.divide(1.0, np.sqrt(du), out=np.zeros_like(du), where=du > 0)
        di_safe = np.where(di > 0, di, 1.0)
        rt = (sp.diags(inv_u) @ x @ sp.diags(di_safe ** -0.5)).tocsc()
        # entries of R~^T R~ = item pairs sharing a user: sum over users of their squared degree
        per_user = np.diff(user_items.indptr).astype(np.int64)
        nnz = int((per_user ** 2).sum()) + n_items * int(self.knn) * 2 * len(weights)
        if 12 * nnz > self.max_memory_bytes:
            raise ValueError(
                f"GraphFilter on this log needs up to {12 * nnz} bytes for its propagation matrix, "
                f"over max_memory_bytes={self.max_memory_bytes}; fix: raise it if the memory is "
                "there, or drop the heaviest users")
        m = (rt.T @ rt).tocsr().astype(np.float32)
        m *= np.float32(1.0 - sum(weights))
        for w, f in zip(weights, self._features, strict=True):
            if w > 0:
                m = m + np.float32(w) * knn_item_graph(f, int(self.knn))
        m = m.tocsr()
        m.sum_duplicates()
        self.M_ = m.astype(np.float32)
        self.item_degree_ = di_safe
        self.n_feature_matrices_ = len(self._features)
        self.W_ = None
        dense_bytes = 3 * 4 * n_items * n_items
        if self.dense is True and dense_bytes > self.max_memory_bytes:
            raise ValueError(f"dense=True needs about {dense_bytes} bytes for n_items={n_items}, "
                             f"over max_memory_bytes={self.max_memory_bytes}; fix: dense='auto'")
        if self.dense is True or (self.dense == "auto" and dense_bytes <= self.max_memory_bytes):
            dense = self.M_.toarray()
            w_mat = dense.copy()
            for _ in range(int(self.layers) - 1):
                w_mat = w_mat @ dense
            del dense
            w_mat *= (di_safe ** -0.5).astype(np.float32)[:, None]
            w_mat *= (di_safe ** 0.5).astype(np.float32)[None, :]
            self.W_ = w_mat

    def _propagate(self, start: sp.csr_matrix) -> np.ndarray:
        """``start D_I^-1/2 M^L D_I^1/2`` for a (b, n_items) sparse matrix; dense float32."""
        scale = self.item_degree_ ** -0.5
        y = np.asarray((start.astype(np.float32) @ sp.diags(scale.astype(np.float32))).toarray())
        mt = self.M_.T.tocsr()  # M is symmetric up to rounding; y @ M = (M^T y^T)^T
        for _ in range(int(self.layers)):
            y = np.asarray(mt @ y.T).T
        y *= (self.item_degree_ ** 0.5).astype(np.float32)[None, :]
        return np.ascontiguousarray(y, dtype=np.float32)

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        if self.W_ is not None:
            return np.asarray(rows.astype(np.float32) @ self.W_)
        return self._propagate(rows)

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        if self.W_ is not None:
            return self.W_[items]
        n = self.item_degree_.shape[0]
        one_hot = sp.csr_matrix((np.ones(len(items), np.float32), (np.arange(len(items)), items)),
                                shape=(len(items), n))
        return self._propagate(one_hot)

    def _get_state(self) -> dict[str, np.ndarray]:
        m = self.M_.tocsr()
        state = {"M_data": m.data, "M_indices": m.indices, "M_indptr": m.indptr,
                 "item_degree_": np.asarray(self.item_degree_)}
        if self.W_ is not None:
            state["W_"] = self.W_
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        n = arrays["item_degree_"].shape[0]
        self.M_ = sp.csr_matrix((arrays["M_data"], arrays["M_indices"], arrays["M_indptr"]),
                                shape=(n, n))
        self.item_degree_ = arrays["item_degree_"]
        self.W_ = arrays["W_"] if "W_" in arrays else None
