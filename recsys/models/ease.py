"""EASE: Embarrassingly Shallow Autoencoder (Steck, WWW 2019)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Recommender

__all__ = ["EASE", "ease_memory_bytes"]

_GIB = 1024**3


def ease_memory_bytes(n_items: int) -> int:
    """Peak memory of fitting EASE on ``n_items`` items, in bytes.

    ``24 * n_items**2``: the float64 Gram matrix (8 bytes per cell), the LU copy LAPACK's
    ``gesv`` works on (8) and the float64 inverse (8); the float32 weight matrix ``B`` (4) is
    made after the first two are freed.
    """
    return 24 * int(n_items) ** 2


class EASE(Recommender):
    """Linear item-item autoencoder with a closed-form solution.

    H. Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019
    (arXiv:1905.03375), eq. 8::

        P = (X^T X + l2 * I)^-1
        B = I - P @ diagMat(1 / diag(P))      # i.e. B_ij = -P_ij / P_jj, B_jj = 0

    and the score of user ``u`` is ``X_u @ B``. The Gram matrix is built and inverted in
    float64 (``numpy.linalg.inv``, LAPACK ``gesv``); ``B`` is stored as float32.
    Default ``l2=500.0``: the value in the paper's published reference notebook
    (``lambda_ = 500.0``, ML-20M) and Cornac's ``EASE(lamb=500)`` default; tune per dataset.

    Parameters
    ----------
    l2 : float
        L2 regularisation added to the Gram diagonal (> 0).
    max_memory_bytes : int
        Refuse to fit when :func:`ease_memory_bytes` ``(n_items)`` exceeds this (default
        4 GiB, about 13 300 items). EASE is dense in items: for larger catalogues use
        ItemKNN or ALS, or raise the limit if the memory is there.

    Attributes
    ----------
    B_ : np.ndarray, float32, shape (n_items, n_items)
        Item-item weights, zero diagonal. ``similar_items(i)`` ranks items by ``B_[i]``.
    """

    _state_attrs = ("B_",)

    def __init__(self, l2: float = 500.0, max_memory_bytes: int = 4 * _GIB) -> None:
        self.l2 = l2
        self.max_memory_bytes = max_memory_bytes

    def _validate_params(self) -> None:
        if isinstance(self.l2, bool) or not isinstance(self.l2, (int, float)) or not self.l2 > 0:
            raise ValueError(
                f"l2 must be a number > 0, got {self.l2!r}; the paper's reference code uses 500"
            )
        mm = self.max_memory_bytes
        if isinstance(mm, bool) or not isinstance(mm, (int, np.integer)) or mm <= 0:
            raise ValueError(f"max_memory_bytes must be an int > 0 (bytes), got {mm!r}")

    def _fit(self, user_items: sp.csr_matrix) -> None:
        n_items = user_items.shape[1]
        need = ease_memory_bytes(n_items)
        if need > self.max_memory_bytes:
            raise ValueError(
                f"EASE on n_items={n_items} needs about {need} bytes ({need / _GIB:.2f} GiB: "
                f"24 * n_items**2 for the dense float64 Gram, its LU copy and its inverse), over "
                f"max_memory_bytes={self.max_memory_bytes}; fix: use ItemKNN or ALS for this "
                f"catalogue, or pass max_memory_bytes>={need} if the machine has the memory"
            )
        x = user_items.astype(np.float64)  # CSR float64 copy of the data only (nnz values)
        gram = (x.T @ x).toarray()
        gram.flat[:: n_items + 1] += float(self.l2)  # diagonal, in place
        # P = (X^T X + l2 I)^-1 with numpy's LAPACK (gesv against I: LU then solve), the call
        # cornac's EASE makes. Measured against potrf + potri + mirroring the triangle (issue
        # 19.6): potri alone took longer than the whole LU inverse with numpy's OpenBLAS, so
        # the Cholesky route was 1.2x slower than cornac for the same P.
        try:
            p = np.linalg.inv(gram)
        except np.linalg.LinAlgError as exc:
            raise RuntimeError(f"EASE: the Gram matrix is singular ({exc}); raise l2") from exc
        del gram
        diag = p.diagonal().copy()
        p /= -diag[None, :]  # B_ij = -P_ij / P_jj, in place
        p.flat[:: n_items + 1] = 0.0
        self.B_ = p.astype(np.float32)

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        return np.asarray(rows.astype(np.float32) @ self.B_)

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        return self.B_[items]
