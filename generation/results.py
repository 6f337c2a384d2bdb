"""Result lists with synthetic items excluded or capped.

Synthetic items are rows of the index metadata whose ``synthetic`` column is true (written by
:func:`generation.backfill.backfill`). :func:`limited_search` returns the exact top-k under the
rule "at most ``max_synthetic`` synthetic items", using the index's ``exclude_ids`` filter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["synthetic_ids", "limited_search"]


def synthetic_ids(index) -> list[str]:
    """``video_id`` of every synthetic item of ``index`` (empty without a ``synthetic`` column).

    Parameters
    ----------
    index : embeddings.index.video_index.VideoIndex

    Returns
    -------
    list of str
    """
    meta = index.metadata
    if "synthetic" not in meta.columns or len(meta) == 0:
        return []
    flag = meta["synthetic"]
    flag = flag.where(pd.notna(flag), False).astype(bool)
    return meta.loc[flag.to_numpy(), "video_id"].astype(str).tolist()


def limited_search(index, queries: np.ndarray, k: int, *, max_synthetic: int | None = None):
    """Top-``k`` of ``index`` with at most ``max_synthetic`` synthetic items per query.

    Parameters
    ----------
    index : embeddings.index.video_index.VideoIndex
    queries : np.ndarray
        float32 (n_queries, d) or (d,).
    k : int
        Results per query, >= 1.
    max_synthetic : int or None
        None: no limit (a plain search); 0: synthetic items excluded inside faiss
        (``exclude_ids``); m > 0: the index is searched for ``k + n_synthetic`` and the
        lowest-ranked synthetic items beyond the first ``m`` are dropped. This is exact: the
        wanted list (best ``m`` synthetic + best real) lies in the top ``k + n_synthetic``.

    Returns
    -------
    embeddings.index.video_index.SearchResult
        ``(n_queries, k)`` ids / indices / scores, padding None / -1 / -inf.

    Raises
    ------
    ValueError
        ``max_synthetic`` negative or not an integer, and what ``VideoIndex.search`` raises.
    """
    from embeddings.index.video_index import SearchResult

    if max_synthetic is None:
        return index.search(queries, k=k)
    if isinstance(max_synthetic, bool) or not isinstance(max_synthetic, (int, np.integer)) \
            or max_synthetic < 0:
        raise ValueError(f"max_synthetic={max_synthetic!r}: expected None or an integer >= 0")
    syn = synthetic_ids(index)
    if max_synthetic == 0 or not syn:
        return index.search(queries, k=k, exclude_ids=syn)
    wide = index.search(queries, k=k + len(syn))
    syn_set = set(syn)
    nq = wide.ids.shape[0]
    out_ids = np.full((nq, k), None, dtype=object)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    for row in range(nq):
        col = n_syn = 0
        for j, vid in enumerate(wide.ids[row]):
            if col == k or vid is None:
                break
            if str(vid) in syn_set:
                if n_syn >= max_synthetic:
                    continue
                n_syn += 1
            out_ids[row, col] = vid
            out_i[row, col] = wide.indices[row, j]
            out_s[row, col] = wide.scores[row, j]
            col += 1
    return SearchResult(out_ids, out_i, out_s)
