"""Train/test splits of an interaction log (one row per interaction, see :mod:`recsys.data.interactions`).

Every function returns new frames that keep the input's index labels and columns, so a row
can be traced back to the input. None mutates its input.

=====================  ==========================================================================
function               rule
=====================  ==========================================================================
random_holdout         per user, a seeded random ``test_ratio`` of the rows (each user keeps >= 1
                       row in train; users with one row stay in train)
leave_last_out         per user, the ``n`` latest rows by timestamp (ties: later row) to test;
                       each user keeps >= 1 row in train
temporal_split         one global cut time: rows at or after it go to test
stratified_split       Microsoft Recommenders ``python_stratified_split``, reproduced exactly
recommenders_split     the protocol named "stratified" everywhere: their benchmark's call of it,
                       ``ratio=0.75, filter_by="item", seed=42``
chrono_stratified...   Microsoft Recommenders ``python_chrono_split``
k_fold                 per user, rows dealt (seeded) to ``n_folds`` folds; each row tests once
validation_split       any of the above applied to a training split (tune without the test)
=====================  ==========================================================================
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "cold_item_split",
    "random_holdout",
    "leave_last_out",
    "temporal_split",
    "stratified_split",
    "chrono_stratified_split",
    "recommenders_split",
    "RECOMMENDERS_SPLIT",
    "k_fold",
    "validation_split",
    "VALIDATION_METHODS",
]


def _need(df: pd.DataFrame, cols, fn: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"{fn}: df lacks column(s) {missing}; got {list(df.columns)}; "
            "load it with recsys.data.interactions.load_interactions"
        )


def _group_positions(codes: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows visited in ``order`` (grouped by ``codes``): position within group, group size."""
    sorted_codes = codes[order]
    counts = np.bincount(codes)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos_sorted = np.arange(len(order)) - starts[sorted_codes]
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = pos_sorted
    return pos, counts[codes]


def random_holdout(df: pd.DataFrame, test_ratio: float = 0.2, *, seed: int = 42):
    """Per user, move a seeded random share of the rows to test.

    A user with ``n`` rows gets ``min(n - 1, floor(test_ratio * n + 0.5))`` test rows (half
    rounds up), so every user keeps at least one training row and a user with one row stays
    wholly in train.

    Parameters
    ----------
    df : pandas.DataFrame
        Interaction rows with ``user_id``.
    test_ratio : float
        In (0, 1).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed and the same input (same row order)
        give the same split.

    Returns
    -------
    (train_df, test_df) : tuple of pandas.DataFrame
        Rows in input order, input index labels kept.

    Raises
    ------
    ValueError
        ``test_ratio`` outside (0, 1) or ``user_id`` missing.
    """
    if not 0.0 < float(test_ratio) < 1.0:
        raise ValueError(f"test_ratio={test_ratio!r} must be in (0, 1), e.g. 0.2")
    _need(df, ["user_id"], "random_holdout")
    codes = pd.factorize(df["user_id"])[0]
    draws = np.random.default_rng(seed).random(len(df))
    order = np.lexsort((draws, codes))
    pos, size = _group_positions(codes, order)
    n_test = np.minimum(size - 1, np.floor(test_ratio * size + 0.5).astype(np.int64))
    is_test = pos < n_test
    return df[~is_test].copy(), df[is_test].copy()


def cold_item_split(df: pd.DataFrame, item_fraction: float = 0.2, *, warm_test_ratio: float = 0.2,
                    seed: int = 42):
    """Hold a seeded random share of the items out whole (item cold start), plus a warm holdout.

    1. ``round(item_fraction * n_items)`` distinct items (at least 1) are drawn uniformly without
       replacement (``numpy.random.default_rng(seed)``, over the sorted unique ``item_id``); every
       row of those items goes to test, so they have **no** training interaction.
    2. The remaining rows are split by :func:`random_holdout` (``warm_test_ratio``, same seed),
       so test also holds warm items and the cold/warm/all tables of
       :func:`recsys.evaluation.coldstart.evaluate_cold_start` can be compared on one fit.

    A user whose rows are all on cold items has no training row (a cold user as well); such users
    are kept, and the evaluation counts them.

    Parameters
    ----------
    df : pandas.DataFrame
        Interaction rows with ``user_id`` and ``item_id``.
    item_fraction : float
        Share of the distinct items held out whole, in (0, 1).
    warm_test_ratio : float
        Per-user test share of the other rows, in (0, 1) (see :func:`random_holdout`).
    seed : int
        Same seed and same input give the same split.

    Returns
    -------
    (train_df, test_df, cold_items) : tuple
        Rows in input order with index labels kept; ``cold_items`` is a numpy object array of the
        held-out ``item_id`` values (sorted).

    Raises
    ------
    ValueError
        A fraction outside (0, 1), a missing column, or fewer than 2 distinct items.
    """
    for name, v in (("item_fraction", item_fraction), ("warm_test_ratio", warm_test_ratio)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) < 1.0:
            raise ValueError(f"{name}={v!r} must be a number in (0, 1), e.g. 0.2")
    _need(df, ["user_id", "item_id"], "cold_item_split")
    items = np.sort(pd.unique(df["item_id"].astype(str)))
    if items.size < 2:
        raise ValueError(f"cold_item_split needs at least 2 distinct items, df has {items.size}; "
                         "fix: pass the whole interaction log")
    n_cold = int(min(items.size - 1, max(1, round(float(item_fraction) * items.size))))
    cold = np.sort(np.random.default_rng(seed).choice(items, size=n_cold, replace=False))
    is_cold = df["item_id"].astype(str).isin(set(cold)).to_numpy()
    warm_pos = np.flatnonzero(~is_cold)
    warm = df.iloc[warm_pos].reset_index(drop=True)  # positional labels: robust to any index
    _, warm_test = random_holdout(warm, warm_test_ratio, seed=seed)
    is_test = is_cold.copy()
    is_test[warm_pos[warm_test.index.to_numpy()]] = True
    return df[~is_test].copy(), df[is_test].copy(), cold.astype(object)


def leave_last_out(df: pd.DataFrame, n: int = 1):
    """Per user, move the ``n`` latest interactions (by ``timestamp``) to test.

    Ties in time are broken by row order (a later row is later). A user keeps at least one
    training row: with ``m <= n`` rows, ``m - 1`` go to test (a single-row user stays in train).

    Parameters
    ----------
    df : pandas.DataFrame
        Rows with ``user_id`` and ``timestamp``.
    n : int
        Test rows per user, >= 1.

    Returns
    -------
    (train_df, test_df) : tuple of pandas.DataFrame
        Rows in input order, input index labels kept.

    Raises
    ------
    ValueError
        ``n < 1``, or ``user_id``/``timestamp`` missing.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer (test rows per user), e.g. 1")
    _need(df, ["user_id", "timestamp"], "leave_last_out")
    codes = pd.factorize(df["user_id"])[0]
    rows = np.arange(len(df))
    # descending time, later row first: sort by (-time, -row) within user
    order = np.lexsort((-rows, -df["timestamp"].to_numpy(dtype=np.int64), codes))
    pos, size = _group_positions(codes, order)
    is_test = pos < np.minimum(int(n), size - 1)
    return df[~is_test].copy(), df[is_test].copy()


def temporal_split(df: pd.DataFrame, *, quantile: float = 0.8, at=None):
    """Split at one global time: rows with ``timestamp < t`` train, ``>= t`` test.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows with ``timestamp`` (int seconds).
    quantile : float
        In (0, 1); used when ``at`` is None: ``t = numpy.quantile(timestamps, quantile,
        method="higher")``, so about ``quantile`` of the rows train (ties at ``t`` go to test).
    at : int, optional
        The cut time in seconds; overrides ``quantile``.

    Returns
    -------
    (train_df, test_df) : tuple of pandas.DataFrame
        Rows in input order. Test users/items absent from train are kept (cold start);
        :meth:`recsys.data.interactions.Dataset.to_user_items` or the caller decides what to do with them.

    Raises
    ------
    ValueError
        ``quantile`` outside (0, 1), ``timestamp`` missing, or empty ``df``.
    """
    _need(df, ["timestamp"], "temporal_split")
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    if at is None:
        if not 0.0 < float(quantile) < 1.0:
            raise ValueError(f"quantile={quantile!r} must be in (0, 1), e.g. 0.8")
        if len(ts) == 0:
            raise ValueError("temporal_split: df is empty")
        at = np.quantile(ts, quantile, method="higher")
    is_test = ts >= at
    return df[~is_test].copy(), df[is_test].copy()


def _process_split_ratio(ratio):
    """Microsoft Recommenders ``split_utils.process_split_ratio``: (multi, ratios)."""
    if isinstance(ratio, float):
        if ratio <= 0 or ratio >= 1:
            raise ValueError(f"ratio={ratio!r}: a float split ratio must be in (0, 1), e.g. 0.75")
        return False, ratio
    if isinstance(ratio, (list, tuple)):
        if any(x <= 0 for x in ratio):
            raise ValueError(f"ratio={ratio!r}: every split ratio must be > 0")
        if math.fsum(ratio) != 1.0:
            ratio = [x / math.fsum(ratio) for x in ratio]
        return True, list(ratio)
    raise TypeError(
        f"ratio={ratio!r} ({type(ratio).__name__}): pass a float such as 0.75 or a list of "
        "floats such as [0.6, 0.2, 0.2]"
    )


def _do_stratification(df, ratio, min_rating, filter_by, is_random, seed, col_user, col_item,
                       col_timestamp):
    if filter_by not in ("user", "item"):
        raise ValueError(f"filter_by={filter_by!r} must be 'user' or 'item'")
    if min_rating < 1:
        raise ValueError(f"min_rating={min_rating!r} must be an integer >= 1")
    _need(df, [col_user, col_item] + ([] if is_random else [col_timestamp]), "stratified split")
    for tmp in ("random", "count", "rank"):
        if tmp in df.columns:
            raise ValueError(
                f"df has a column named {tmp!r}, which the Microsoft Recommenders algorithm uses "
                "as scratch space; rename it first"
            )
    multi, ratio = _process_split_ratio(ratio)
    split_by = col_user if filter_by == "user" else col_item
    ratios = ratio if multi else [ratio, 1 - ratio]
    data = df.copy()
    if min_rating > 1:  # split_utils.min_rating_filter_pandas
        data = data.groupby(split_by).filter(lambda x: len(x) >= min_rating)
    if is_random:
        # np.random.seed(seed); np.random.rand(n) == RandomState(seed).rand(n), same MT19937
        # stream, without touching numpy's global random state.
        data["random"] = np.random.RandomState(seed).rand(data.shape[0])
        order_by = "random"
    else:
        order_by = col_timestamp
    data = data.sort_values([split_by, order_by])
    groups = data.groupby(split_by)
    data["count"] = groups[split_by].transform("count")
    data["rank"] = groups.cumcount() + 1
    if is_random:
        data = data.drop("random", axis=1)
    splits = []
    prev = None
    for threshold in np.cumsum(ratios):
        # round() of a Series: numpy round-half-to-even, exactly as the original
        cond = data["rank"] <= round(threshold * data["count"])
        if prev is not None:
            cond &= data["rank"] > round(prev * data["count"])
        splits.append(data[cond].drop(["rank", "count"], axis=1))
        prev = threshold
    return splits


def stratified_split(df: pd.DataFrame, ratio=0.75, *, filter_by: str = "user", seed: int = 42,
                     min_rating: int = 1, col_user: str = "user_id", col_item: str = "item_id"):
    """Microsoft Recommenders' ``python_stratified_split``, reproduced exactly.

    Transcribed from ``recommenders/datasets/python_splitters.py`` (``_do_stratification``)
    and ``split_utils.py`` (``process_split_ratio``, ``min_rating_filter_pandas``) of
    recommenders-team/recommenders (formerly microsoft/recommenders) at commit
    ``bd4a38ab6237dfeb2004fcb8076df87b9d9f3e46``, identical to the PyPI release 1.2.1 against
    which it was checked row for row on MovieLens 100K (float and list ratios, both
    ``filter_by`` values, ``min_rating`` > 1):

    1. if ``min_rating > 1``, drop groups of ``split_by`` with fewer than ``min_rating`` rows;
    2. ``np.random.seed(seed)``; ``df["random"] = np.random.rand(len(df))`` (in row order);
    3. sort by ``[split_by, "random"]``; within each group ``rank = cumcount + 1`` and
       ``count`` = group size;
    4. with ``c_i = cumsum(ratios)[i]``, split ``i`` takes
       ``round(c_{i-1} * count) < rank <= round(c_i * count)``, ``round`` being numpy's
       round-half-to-even (a user with 42 rows and ratio 0.75 gets round(31.5) = 32 train rows).

    Older versions of the file (e.g. commit ``182ce901dce3e7dd31a41804556b06ea4df7868f``)
    compared ``rank / count <= c_i`` instead (31 train rows in that example); this function
    follows the current release.

    ``split_by`` is ``col_user`` for ``filter_by="user"`` (each user's rows are split in
    ``ratio``) and ``col_item`` for ``"item"``; the min-rating filter uses the same column.
    Same seed and input give the same rows in the same order with the same index labels as
    the original. Differences: the input is not mutated (the original adds a ``random`` column
    to the caller's frame when ``min_rating == 1``) and numpy's global random state is left
    alone (a private ``RandomState(seed)`` draws the identical numbers). Row order follows the
    sort of the id column's dtype (our ids are str, so ``"10" < "9"``).

    Parameters
    ----------
    df : pandas.DataFrame
        Interaction rows; must not hold columns named ``random``, ``count`` or ``rank``.
    ratio : float or list of float
        Float in (0, 1): train share (two splits). List: one share per split, normalised to
        sum to 1 when they do not.
    filter_by : {"user", "item"}
    seed : int
    min_rating : int
        Minimum rows per user (or item); >= 1.
    col_user, col_item : str
        Column names.

    Returns
    -------
    (train_df, test_df) for a float ``ratio``; a list of ``len(ratio)`` frames for a list.
    Rows sorted by (split column, random draw); input index labels kept.

    Raises
    ------
    ValueError
        Bad ``filter_by``, ``min_rating`` or ratio values; missing columns; scratch-column
        clash.
    TypeError
        ``ratio`` neither float nor list.
    """
    splits = _do_stratification(df, ratio, min_rating, filter_by, True, seed, col_user, col_item,
                                "timestamp")
    return tuple(splits) if isinstance(ratio, float) else splits


#: The split of Microsoft Recommenders' MovieLens benchmark
#: (``examples/06_benchmarks/movielens.ipynb``): what the protocol name "stratified" means in
#: ``recsys evaluate``, :func:`recsys.app.stages.split_interactions`, tuning and the benchmarks.
RECOMMENDERS_SPLIT = {"ratio": 0.75, "filter_by": "item", "seed": 42}


def recommenders_split(df: pd.DataFrame, ratio: float = 0.75, *, seed: int = 42, **columns):
    """The "stratified" protocol: ``python_stratified_split(df, ratio, filter_by="item", seed)``.

    Microsoft Recommenders' benchmark call (:data:`RECOMMENDERS_SPLIT`): per item, a seeded
    ``ratio`` share of its rows to train, the rest to test (:func:`stratified_split`, which
    reproduces their function row for row).

    Parameters
    ----------
    df : pandas.DataFrame
    ratio : float
        Train share, in (0, 1); 0.75 in their benchmark.
    seed : int
    **columns
        ``col_user``/``col_item``/... as for :func:`stratified_split`.

    Returns
    -------
    (train, test) : tuple of pandas.DataFrame
    """
    return stratified_split(df, ratio, filter_by="item", seed=seed, **columns)


def chrono_stratified_split(df: pd.DataFrame, ratio=0.75, *, filter_by: str = "user",
                            min_rating: int = 1, col_user: str = "user_id",
                            col_item: str = "item_id", col_timestamp: str = "timestamp"):
    """Microsoft Recommenders' ``python_chrono_split``: per user (or item), the earliest
    ``ratio`` of rows by ``col_timestamp`` train and the rest test.

    Same algorithm and source as :func:`stratified_split` with the random draw replaced by the
    timestamp. Ties in time follow pandas' sort of
    ``[split column, timestamp]``, as in the original. Returns and raises as
    :func:`stratified_split` (plus ValueError when ``col_timestamp`` is missing).
    """
    splits = _do_stratification(df, ratio, min_rating, filter_by, False, 0, col_user, col_item,
                                col_timestamp)
    return tuple(splits) if isinstance(ratio, float) else splits


def k_fold(df: pd.DataFrame, n_folds: int = 5, *, seed: int = 42):
    """Per-user k-fold: each user's rows are shuffled (seeded) and dealt round-robin to folds.

    Fold ``f`` tests the rows dealt to ``f`` and trains on the rest, so every row is in test
    exactly once over the folds and each user's rows are spread evenly (a user with ``n`` rows
    has ``floor(n / n_folds)`` or one more in each fold's test set). Users with fewer rows than
    folds are absent from the test set of some folds (they stay in train there).

    Parameters
    ----------
    df : pandas.DataFrame
        Interaction rows with ``user_id``.
    n_folds : int
        >= 2.
    seed : int
        Seed of ``numpy.random.default_rng`` (same seed and input order, same folds).

    Returns
    -------
    list of (train_df, test_df)
        ``n_folds`` pairs, rows in input order, index labels kept.

    Raises
    ------
    ValueError
        ``n_folds`` < 2 or ``user_id`` missing.
    """
    if isinstance(n_folds, bool) or int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"n_folds={n_folds!r} must be an integer >= 2, e.g. 5")
    _need(df, ["user_id"], "k_fold")
    codes = pd.factorize(df["user_id"])[0]
    draws = np.random.default_rng(seed).random(len(df))
    order = np.lexsort((draws, codes))
    pos, _ = _group_positions(codes, order)
    # start each user at a seeded fold so small users do not all test in fold 0
    offset = np.random.default_rng([seed, 1]).integers(0, int(n_folds), size=codes.max() + 1
                                                        if len(codes) else 0)
    fold = (pos + offset[codes]) % int(n_folds) if len(codes) else pos
    return [(df[fold != f].copy(), df[fold == f].copy()) for f in range(int(n_folds))]


VALIDATION_METHODS = ("random_holdout", "leave_last_out", "temporal", "stratified")


def validation_split(train_df: pd.DataFrame, method: str = "random_holdout", *,
                     val_ratio: float = 0.1, seed: int = 42):
    """Carve a validation split out of a training split with one of the protocols above.

    The test split is never touched: tune on ``(fit_df, val_df)``, then refit on the whole
    ``train_df`` and report on the test split.

    Parameters
    ----------
    train_df : pandas.DataFrame
        A training split made by any function of this module (or a predefined one).
    method : str
        ``"random_holdout"`` (per user, ``val_ratio``), ``"leave_last_out"`` (latest row per
        user), ``"temporal"`` (global cut at the ``1 - val_ratio`` time quantile) or
        ``"stratified"`` (:func:`recommenders_split` with ratio ``1 - val_ratio``).
    val_ratio : float
        In (0, 1).
    seed : int

    Returns
    -------
    (fit_df, val_df) : tuple of pandas.DataFrame

    Raises
    ------
    ValueError
        Unknown ``method`` or the errors of the chosen split.
    """
    if not 0.0 < float(val_ratio) < 1.0:
        raise ValueError(f"val_ratio={val_ratio!r} must be in (0, 1), e.g. 0.1")
    if method == "random_holdout":
        return random_holdout(train_df, val_ratio, seed=seed)
    if method == "leave_last_out":
        return leave_last_out(train_df)
    if method == "temporal":
        return temporal_split(train_df, quantile=1.0 - float(val_ratio))
    if method == "stratified":
        return recommenders_split(train_df, 1.0 - float(val_ratio), seed=seed)
    raise ValueError(f"method={method!r}: expected one of {VALIDATION_METHODS}")
