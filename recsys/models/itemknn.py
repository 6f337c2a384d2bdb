"""Item-based nearest neighbours: sparse top-k cosine similarity between item columns."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Recommender, topk

__all__ = ["ItemKNN", "bm25_weight"]

# dense (block x n_items) similarity cells computed at once while fitting (128 MiB of float32)
_BLOCK_CELLS = 1 << 25


def bm25_weight(user_items: sp.csr_matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """BM25-weight an interaction matrix, items as documents and users as terms.

    Same formula as ``implicit.nearest_neighbours.bm25_weight`` applied by implicit's
    ``BM25Recommender`` (to ``user_items.T``), with its defaults K1=1.2, B=0.75 (Robertson &
    Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009)::

        idf_u = log(n_items) - log1p(n_items_of_user_u)
        len_j = (1 - b) + b * n_j / mean(n)      # n_j = sum of item j's column
        w_uj  = x_uj * (k1 + 1) / (k1 * len_j + x_uj) * idf_u

    Parameters
    ----------
    user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
    k1, b : float
        BM25 saturation and length-normalisation constants.

    Returns
    -------
    scipy.sparse.csr_matrix, float64, shape (n_users, n_items)
    """
    x = sp.coo_matrix(user_items, dtype=np.float64)
    n_items = float(x.shape[1])
    idf = np.log(n_items) - np.log1p(np.bincount(x.row, minlength=x.shape[0]))
    col_sums = np.bincount(x.col, weights=x.data, minlength=x.shape[1])
    mean = col_sums.mean() if col_sums.size and col_sums.mean() > 0 else 1.0
    length_norm = (1.0 - b) + b * col_sums / mean
    data = x.data * (k1 + 1.0) / (k1 * length_norm[x.col] + x.data) * idf[x.row]
    return sp.csr_matrix((data, (x.row, x.col)), shape=x.shape)


class ItemKNN(Recommender):
    """Item-item collaborative filtering with top-``neighbors`` cosine similarity.

    ``S[i, j] = cos(X[:, i], X[:, j])`` between item columns of the (optionally BM25-
    weighted) training matrix, self-similarity removed, only the ``neighbors`` largest
    kept per row ``i`` (ties: lower item index). A user's score is ``X_u @ S`` on the
    user's raw row, as in implicit's ``ItemItemRecommender``.

    Parameters
    ----------
    neighbors : int
        Neighbours kept per item (>= 1).
    weighting : {"none", "bm25"}
        Re-weight the matrix with :func:`bm25_weight` before computing similarities.
    bm25_k1, bm25_b : float
        BM25 constants (implicit's defaults 1.2 and 0.75).

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix, float32, shape (n_items, n_items)
        ``similar_items(i)`` ranks the stored neighbours of ``i`` by cosine (in (0, 1] for
        non-negative data); items beyond them are padding (-1 / -inf).
    """

    def __init__(
        self,
        neighbors: int = 50,
        weighting: str = "none",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
    ) -> None:
        self.neighbors = neighbors
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b

    def _validate_params(self) -> None:
        n = self.neighbors
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"neighbors must be an int >= 1, got {n!r}")
        if self.weighting not in ("none", "bm25"):
            raise ValueError(f"weighting must be 'none' or 'bm25', got {self.weighting!r}")
        if not (isinstance(self.bm25_k1, (int, float)) and self.bm25_k1 > 0):
            raise ValueError(f"bm25_k1 must be a number > 0, got {self.bm25_k1!r}")
        if not (isinstance(self.bm25_b, (int, float)) and 0 <= self.bm25_b <= 1):
            raise ValueError(f"bm25_b must be a number in [0, 1], got {self.bm25_b!r}")

    def _fit(self, user_items: sp.csr_matrix) -> None:
        x = user_items.astype(np.float64)
        if self.weighting == "bm25":
            x = bm25_weight(x, self.bm25_k1, self.bm25_b)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        xn = sp.csr_matrix(x @ sp.diags(1.0 / norms)).astype(np.float32)
        xt = sp.csr_matrix(xn.T)
        n_items = x.shape[1]
        kk = min(int(self.neighbors), n_items)
        block = max(1, _BLOCK_CELLS // n_items)
        rows, cols, vals = [], [], []
        for start in range(0, n_items, block):
            stop = min(start + block, n_items)
            sims = np.asarray((xt[start:stop] @ xn).toarray(), dtype=np.float32)
            sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
            sims[sims <= 0] = -np.inf  # keep only positive similarities
            ids, scores = topk(sims, kk)
            keep = ids >= 0
            rows.append(np.nonzero(keep)[0] + start)
            cols.append(ids[keep])
            vals.append(scores[keep])
        self.similarity_ = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_items, n_items),
            dtype=np.float32,
        )

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        return (rows.astype(np.float32) @ self.similarity_).toarray()

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        s = self.similarity_[items].toarray()
        s[s == 0] = -np.inf  # non-neighbours are not similar items
        return s

    def _get_state(self) -> dict[str, np.ndarray]:
        s = self.similarity_
        return {
            "similarity_data": s.data,
            "similarity_indices": s.indices,
            "similarity_indptr": s.indptr,
            "similarity_shape": np.asarray(s.shape, dtype=np.int64),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity_ = sp.csr_matrix(
            (arrays["similarity_data"], arrays["similarity_indices"], arrays["similarity_indptr"]),
            shape=tuple(int(v) for v in arrays["similarity_shape"]),
        )
