"""Matrix factorisation models wrapping ``implicit``: ALS and BPR.

Scoring and user factors
------------------------
``score(rows, user_index)`` is ``user_factors @ item_factors_.T``. With ``user_index`` given
(always the case through ``recommend``) the stored ``user_factors_[user_index]`` are used,
as in implicit's ``recommend(..., recalculate_user=False)``; the rows then only serve for
filtering seen items. Users the model was not fitted on (``user_index is None``, or an index
``>= n_users_``) are handled per model: ALS folds them in from their rows with one exact
least-squares user step against the fixed item factors (implicit's ``recalculate_user``,
Hu, Koren & Volinsky 2008, eq. 4); BPR has no such step and raises ``ValueError``.

Threads: implicit warns when BLAS runs its own thread pool; fitting runs under
``threadpoolctl.threadpool_limits(1, "blas")`` as implicit recommends, and its one-time
configuration warning is silenced.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import threadpoolctl

from .base import Recommender

__all__ = ["ALS", "BPR"]

logger = logging.getLogger(__name__)

_DEVICES = ("cpu", "cuda", "auto")


def _quiet_implicit(builder):
    """Call ``builder()`` with implicit's BLAS-thread warning silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*configured to use .* threads.*")
        return builder()


def _use_gpu(device: str) -> bool:
    import implicit.gpu

    if device == "cpu":
        return False
    if device == "cuda" and not implicit.gpu.HAS_CUDA:
        raise RuntimeError(
            "device='cuda' but implicit cannot use CUDA here (implicit.gpu.HAS_CUDA is False: "
            "no GPU, or its CUDA extension could not load; it also needs the rmm package, e.g. "
            "pip install rmm-cu13); fix: device='cpu' or device='auto'"
        )
    return bool(implicit.gpu.HAS_CUDA)


class _FactorModel(Recommender):
    """Shared code of ALS and BPR: validation, fitting through implicit, scoring."""

    _state_attrs = ("user_factors_", "item_factors_")
    _supports_callback = True

    def _check_common(self) -> None:
        for name in ("factors", "iterations"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        r = self.regularization
        if isinstance(r, bool) or not isinstance(r, (int, float)) or r < 0:
            raise ValueError(f"regularization must be a number >= 0, got {r!r}")
        t = self.num_threads
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ValueError(f"num_threads must be an int >= 0 (0 = all cores), got {t!r}")
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {self.device!r}")
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, (int, np.integer))):
            raise ValueError(f"random_state must be an int or None, got {rs!r}")

    def _build(self, gpu: bool) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit(self, user_items: sp.csr_matrix) -> None:
        gpu = _use_gpu(self.device)
        model = _quiet_implicit(lambda: self._build(gpu))
        x = user_items.astype(np.float32, copy=False)
        with threadpoolctl.threadpool_limits(1, "blas"):
            model.fit(x, show_progress=False, callback=getattr(self, "_fit_callback", None))
        if gpu:
            model = model.to_cpu()
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        logger.info(
            "%s fitted: %d users, %d items, factor width %d",
            type(self).__name__,
            *x.shape,
            self.item_factors_.shape[1],
        )

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        raise ValueError(
            f"{type(self).__name__} can only score users it was fitted on "
            f"(user_index in [0, {self.n_users_})); it has no fold-in step for new users; "
            "fix: pass user_index of fitted users, refit with the new users, or use ALS, "
            "EASE or ItemKNN, which score new users from their rows"
        )

    def _score(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        return self._user_vectors(rows, user_index) @ self.item_factors_.T

    def _user_vectors(self, rows: sp.csr_matrix, user_index: np.ndarray | None) -> np.ndarray:
        """float32 (n, factors): stored factors of known users, folded-in ones for new rows."""
        n = rows.shape[0]
        users = np.empty((n, self.item_factors_.shape[1]), dtype=np.float32)
        new = np.ones(n, dtype=bool) if user_index is None else user_index >= self.n_users_
        if (~new).any():
            users[~new] = self.user_factors_[user_index[~new]]
        if new.any():
            users[new] = self._fold_in(rows[np.flatnonzero(new)])
        return users

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        """Cosine similarity between item factor vectors."""
        return _cosine_rows(self.item_factors_, items)

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        """Cosine similarity between user factor vectors (``similar_users``)."""
        return _cosine_rows(self.user_factors_, users)


def _cosine_rows(v: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine of ``v[rows]`` against every row of ``v``; zero vectors score 0."""
    norms = np.linalg.norm(v, axis=1)
    norms[norms == 0] = 1e-10
    return (v[rows] @ v.T) / (norms[rows, None] * norms[None, :])


class ALS(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky, ICDM 2008) via ``implicit``.

    Wraps ``implicit.cpu.als.AlternatingLeastSquares`` (conjugate-gradient solver,
    Takacs et al. 2011), or the GPU class when ``device`` asks for it and implicit has CUDA.

    Parameters
    ----------
    factors : int
        Latent dimension.
    regularization : float
        L2 penalty (implicit's default 0.01).
    alpha : float
        Confidence scaling: implicit fits on ``alpha * user_items`` (``C = alpha * R``).
    iterations : int
        ALS sweeps.
    random_state : int or None
        Seed of the initial factors.
    num_threads : int
        implicit's native threads; 0 = all cores.
    device : {"cpu", "cuda", "auto"}
        "cuda" raises RuntimeError when implicit has no CUDA; "auto" uses it if present.

    Attributes
    ----------
    user_factors_ : np.ndarray, float32, shape (n_users, factors)
    item_factors_ : np.ndarray, float32, shape (n_items, factors)
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        random_state: int | None = 0,
        num_threads: int = 0,
        device: str = "cpu",
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.device = device

    def _validate_params(self) -> None:
        self._check_common()
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not a > 0:
            raise ValueError(f"alpha must be a number > 0, got {a!r}")

    def _build(self, gpu: bool) -> Any:
        kwargs = dict(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=float(self.alpha),
            iterations=int(self.iterations),
            random_state=self.random_state,
        )
        if gpu:
            import implicit.gpu.als

            return implicit.gpu.als.AlternatingLeastSquares(**kwargs)
        import implicit.cpu.als

        return implicit.cpu.als.AlternatingLeastSquares(num_threads=int(self.num_threads), **kwargs)

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        """ALS user step for unseen users: implicit's ``recalculate_user`` on their rows."""
        model = getattr(self, "_cpu_model", None)
        if model is None or model.item_factors is not self.item_factors_:
            model = _quiet_implicit(lambda: self._build(False))
            model.user_factors = self.user_factors_
            model.item_factors = self.item_factors_
            self._cpu_model = model
        x = sp.csr_matrix(rows, dtype=np.float32)
        with threadpoolctl.threadpool_limits(1, "blas"):
            return model.recalculate_user(np.arange(x.shape[0]), x)


class BPR(_FactorModel):
    """Bayesian Personalized Ranking (Rendle et al., UAI 2009) via ``implicit``.

    Wraps ``implicit.cpu.bpr.BayesianPersonalizedRanking`` (or the GPU class). implicit
    appends an item-bias column, so the stored factors are ``factors + 1`` wide (users
    carry a constant 1 there). Interaction values are treated as binary.

    Parameters
    ----------
    factors : int
        Latent dimension (before implicit's bias column).
    learning_rate : float
        SGD step (> 0).
    regularization : float
        L2 penalty.
    iterations : int
        Epochs.
    random_state : int or None
        Seed (fits are only reproducible with ``num_threads=1``: implicit's SGD is
        lock-free across threads).
    num_threads : int
        0 = all cores.
    device : {"cpu", "cuda", "auto"}
        As for :class:`ALS`.

    Attributes
    ----------
    user_factors_ : np.ndarray, float32, shape (n_users, factors + 1)
    item_factors_ : np.ndarray, float32, shape (n_items, factors + 1)
    """

    _can_recalculate_user = False  # no fold-in step (see _fold_in)

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int | None = 0,
        num_threads: int = 0,
        device: str = "cpu",
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.device = device

    def _validate_params(self) -> None:
        self._check_common()
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"learning_rate must be a number > 0, got {lr!r}")

    def _build(self, gpu: bool) -> Any:
        kwargs = dict(
            factors=int(self.factors),
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            iterations=int(self.iterations),
            random_state=self.random_state,
        )
        if gpu:
            import implicit.gpu.bpr

            return implicit.gpu.bpr.BayesianPersonalizedRanking(**kwargs)
        import implicit.cpu.bpr

        return implicit.cpu.bpr.BayesianPersonalizedRanking(
            num_threads=int(self.num_threads), **kwargs
        )
