"""TREC run and qrels files, so other tools (trec_eval, pytrec_eval, ranx) can score our lists.

Formats (trec_eval's README):

- run, 6 whitespace-separated columns: ``qid Q0 docid rank score tag``; ``qid`` = user_id,
  ``docid`` = item_id, ``rank`` 1-based.
- qrels, 4 columns: ``qid 0 docid relevance`` (relevance an integer; > 0 is relevant).

trec_eval orders a query's documents by score descending and breaks ties by docid in
*descending* string order, not by the rank column. Our lists break ties by item index
ascending. So that every tool reads our order, :func:`write_trec_run` writes
``score = number of listed items - rank + 1`` by default (strictly decreasing, no ties) and keeps
the model's raw score only when ``scores="model"`` is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings._io import atomic_path

__all__ = ["write_trec_run", "write_trec_qrels", "read_trec_run", "read_trec_qrels"]


def _check_id(values, what):
    bad = [v for v in values if not str(v) or any(c.isspace() for c in str(v))]
    if bad:
        raise ValueError(f"{what} {bad[0]!r} is empty or holds whitespace; TREC files are "
                         "whitespace-separated, so ids must not contain spaces")


def write_trec_run(path: str | os.PathLike, user_ids, item_ids, ids, scores=None, *,
                   tag: str = "recsys", score_mode: str = "rank") -> Path:
    """Write top-k lists as a TREC run file (atomically).

    Parameters
    ----------
    path : path-like
    user_ids : array-like
        (n,) external user id of each row of ``ids`` (the qid).
    item_ids : array-like
        (n_items,) external item ids; ``item_ids[item_index]`` is the docid.
    ids : numpy.ndarray
        int (n, k) item_index, best first, -1 padding (skipped).
    scores : numpy.ndarray, optional
        float (n, k) model scores; needed for ``score_mode="model"``.
    tag : str
        Run tag (6th column), no whitespace.
    score_mode : str
        ``"rank"`` (default): score = list length - rank + 1, so tools reproduce our order;
        ``"model"``: the model's scores (ties then follow each tool's own rule).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        Shapes that disagree, ids or tag with whitespace, unknown ``score_mode``, or
        ``score_mode="model"`` without ``scores``.
    """
    ids = np.asarray(ids)
    user_ids = np.asarray(user_ids, dtype=object)
    item_ids = np.asarray(item_ids, dtype=object)
    if ids.ndim != 2 or ids.shape[0] != user_ids.size:
        raise ValueError(f"ids has shape {ids.shape} but user_ids has {user_ids.size} entries; "
                         "expected one row of ids per user")
    if score_mode not in ("rank", "model"):
        raise ValueError(f"score_mode={score_mode!r}: expected 'rank' or 'model'")
    if score_mode == "model" and (scores is None or np.shape(scores) != ids.shape):
        raise ValueError("score_mode='model' needs scores of the same shape as ids")
    _check_id([tag], "tag")
    _check_id(user_ids, "user_id")
    r, c = np.nonzero(ids >= 0)
    frame = pd.DataFrame({"qid": user_ids[r], "q0": "Q0", "docid": item_ids[ids[r, c]],
                          "rank": c + 1})
    _check_id(pd.unique(frame["docid"]), "item_id")
    if score_mode == "rank":
        lengths = (ids >= 0).sum(axis=1)
        frame["score"] = (lengths[r] - c).astype(np.float64)
    else:
        frame["score"] = np.asarray(scores, dtype=np.float64)[r, c]
    frame["tag"] = tag
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep=" ", header=False, index=False, float_format="%.9g")
    return path


def write_trec_qrels(path: str | os.PathLike, test_df: pd.DataFrame, *, graded: bool = False
                     ) -> Path:
    """Write held-out interactions as a TREC qrels file (atomically).

    Parameters
    ----------
    path : path-like
    test_df : pandas.DataFrame
        Columns ``user_id``, ``item_id`` and, for ``graded=True``, ``rating``.
    graded : bool
        False: relevance 1 for every row. True: ``round(rating)`` (ratings must be whole numbers
        >= 1, since trec_eval reads integers and treats <= 0 as not relevant).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        Missing columns, ids with whitespace, or non-integer / < 1 ratings with ``graded=True``.
    """
    need = ["user_id", "item_id"] + (["rating"] if graded else [])
    missing = [c for c in need if c not in test_df.columns]
    if missing:
        raise ValueError(f"test_df lacks column(s) {missing}; got {list(test_df.columns)}")
    _check_id(pd.unique(test_df["user_id"].astype(str)), "user_id")
    _check_id(pd.unique(test_df["item_id"].astype(str)), "item_id")
    if graded:
        rel = test_df["rating"].to_numpy(dtype=np.float64)
        if not np.all((rel == np.round(rel)) & (rel >= 1)):
            raise ValueError("graded qrels need whole-number ratings >= 1; use graded=False")
        rel = rel.astype(np.int64)
    else:
        rel = np.ones(len(test_df), dtype=np.int64)
    frame = pd.DataFrame({"qid": test_df["user_id"].astype(str).to_numpy(), "zero": 0,
                          "docid": test_df["item_id"].astype(str).to_numpy(), "rel": rel})
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep=" ", header=False, index=False)
    return path


def read_trec_run(path) -> pd.DataFrame:
    """Read a 6-column run file into ``qid, q0, docid, rank, score, tag`` (ids as str)."""
    return pd.read_csv(path, sep=r"\s+", header=None, names=["qid", "q0", "docid", "rank", "score",
                       "tag"], dtype={"qid": str, "docid": str, "q0": str, "tag": str})


def read_trec_qrels(path) -> pd.DataFrame:
    """Read a 4-column qrels file into ``qid, iteration, docid, relevance`` (ids as str)."""
    return pd.read_csv(path, sep=r"\s+", header=None, names=["qid", "iteration", "docid",
                       "relevance"], dtype={"qid": str, "docid": str})
