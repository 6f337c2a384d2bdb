"""Interaction logs and item side information named by file, for ``recsys train``,
``recsys evaluate`` and pipeline files alike.

* :func:`read_log`: an interaction log in any accepted format: one ``user<TAB>item item ...``
  sequence per line (MicroLens; positions become the order) or a table read by
  :func:`recsys.data.interactions.load_interactions` (CSV/TSV with or without header,
  Parquet, MovieLens ``u.data``).
* :func:`item_side_matrices`: item feature files (``.npy`` with row = item index, Parquet/CSV
  with ``item_id`` + vector columns) and an item text file (titles/captions: TF-IDF reduced by
  truncated SVD, :func:`text_features`), aligned to a dataset's item order.
* :func:`models_without_item_features`: which of a list of models cannot use them (callers
  warn, naming each, instead of ignoring the files silently).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["LOG_FORMATS", "read_log", "text_features", "item_side_matrices",
           "models_without_item_features", "with_feature_catalog"]

logger = logging.getLogger(__name__)

#: ``format`` values of :func:`read_log` (``[interactions] format`` in a pipeline file).
LOG_FORMATS = ("auto", "sequence", "table")


def read_log(path: str | os.PathLike, *, format: str = "auto", sep: str | None = None,
             signals=None) -> pd.DataFrame:
    """Read an interaction log.

    Parameters
    ----------
    path : path-like
    format : {"auto", "sequence", "table"}
        ``"sequence"``: one user per line, ``user_id<TAB>item item ...`` oldest first
        (:func:`recsys.data.side.read_sequences`; the position in the line is the ``timestamp``);
        ``"table"``: :func:`recsys.data.interactions.load_interactions`; ``"auto"``: a sequence
        file when the first non-blank line looks like one, else a table.
    sep : str, optional
        Column separator of a table (default: sniffed).
    signals : sequence of str, optional
        Feedback columns of a table to keep (``load_interactions(signals=)``); a sequence file
        has none (ValueError).

    Returns
    -------
    pandas.DataFrame
        ``user_id``, ``item_id`` (+ ``rating``, ``timestamp`` where known).

    Raises
    ------
    ValueError
        Unknown ``format``; what the readers raise (bad lines, repeated items in a sequence).
    FileNotFoundError
        ``path`` does not exist.
    """
    from recsys.data.interactions import load_interactions
    from recsys.data.side import read_sequences
    from recsys.models.sequential import is_sequence_file

    if format not in LOG_FORMATS:
        raise ValueError(f"format={format!r}: expected one of {list(LOG_FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"interaction file {path} does not exist")
    if format == "sequence" or (format == "auto" and is_sequence_file(path)):
        if signals:
            raise ValueError(f"{path} is a sequence file (one user per line): it has no columns "
                             f"for the signals {list(signals)}; fix: give a table with a header")
        return read_sequences(path)
    return load_interactions(path, sep=sep, signals=signals)


def text_features(texts, *, n_components: int = 128, seed: int = 0) -> np.ndarray:
    """TF-IDF (scikit-learn, unigrams+bigrams, sublinear tf) reduced by truncated SVD.

    Parameters
    ----------
    texts : sequence of str, length n_items
    n_components : int
        SVD dimension (capped at vocabulary size - 1 and n_items - 1).

    Returns
    -------
    np.ndarray, float32, (n_items, <= n_components); an item with an empty text gets a zero row.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    dim = max(1, min(n_components, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
    return TruncatedSVD(dim, random_state=seed).fit_transform(tfidf).astype(np.float32)


def item_side_matrices(dataset, item_features=(), item_text=None) -> list[np.ndarray] | None:
    """Item feature matrices in ``dataset.item_ids`` order, one per file (and one for the text).

    Parameters
    ----------
    dataset : recsys.data.interactions.Dataset
    item_features : sequence of path-like or numpy.ndarray
        ``.npy`` files have no ids: row ``i`` is item index ``i``, so the log's item ids must
        be the integers ``0..n-1`` (TikTok/MMSSL); the rows of the log's items are taken.
        Parquet/CSV files are looked up by ``item_id``. An array is taken as already in
        ``dataset.item_ids`` order.
    item_text : path-like, optional
        CSV/Parquet with ``item_id`` + a text column: :func:`text_features`.

    Returns
    -------
    list of numpy.ndarray (float32, (n_items, d_m)) or None when nothing was given.

    Raises
    ------
    ValueError
        An ``.npy`` whose row count does not cover the log's item indices, non-integer item ids
        with an ``.npy``, an array with the wrong row count; the
        :class:`recsys.data.side.ItemDataError` of a malformed or incomplete file.
    """
    from recsys.data.side import load_item_features, load_item_text

    feats = []
    for src in item_features or ():
        if isinstance(src, np.ndarray):
            if src.shape[0] != dataset.n_items:
                raise ValueError(f"an item feature array has {src.shape[0]} rows, the dataset "
                                 f"{dataset.n_items} items; fix: one row per item in dataset order")
            feats.append(np.asarray(src, dtype=np.float32))
        elif str(src).endswith(".npy"):  # rows are item indices 0..n-1: ids are their numbers
            _, x = load_item_features(src)
            try:
                pos = np.array([int(i) for i in dataset.item_ids], dtype=np.int64)
            except ValueError:
                raise ValueError(f"{src}: a .npy has no item ids (row = item index), but the log's "
                                 f"item ids are not integers (e.g. {dataset.item_ids[0]!r}); fix: "
                                 "give the features as Parquet/CSV with an item_id column") from None
            if pos.size and (pos.max() >= x.shape[0] or pos.min() < 0):
                raise ValueError(f"{src}: {x.shape[0]} rows but the log names item {pos.max()}; "
                                 "fix: one row per item index 0..n-1")
            feats.append(x[pos])
        else:
            feats.append(load_item_features(src, dataset.item_ids)[1])
    if item_text:
        _, texts = load_item_text(item_text, dataset.item_ids)
        feats.append(text_features(texts))
    return feats or None


def with_feature_catalog(dataset, item_features=()):
    """``dataset`` with every row of the ``.npy`` item feature files in its catalogue.

    An ``.npy`` has one row per item index ``0..n-1`` (MMSSL/DiffMM's TikTok features): those
    items exist even when no log names them, and a full ranking ranks them too (as those papers
    do: all 6,710 TikTok items, 272 of them without an interaction in train or validation).
    Only when every item id of ``dataset`` is a decimal integer; otherwise, and without
    ``.npy`` files, ``dataset`` is returned unchanged.

    Parameters
    ----------
    dataset : recsys.data.interactions.Dataset
    item_features : sequence of path-like or numpy.ndarray
        Only the ``.npy`` paths are read (their shape, memory-mapped, never pickled).

    Returns
    -------
    recsys.data.interactions.Dataset
        Same users; items = the old ones plus ``"0".."n-1"``, in :func:`build_dataset` order.
    """
    from recsys.data.interactions import Dataset, _sorted_unique_ids

    rows = [int(np.load(f, mmap_mode="r", allow_pickle=False).shape[0]) for f in item_features or ()
            if not isinstance(f, np.ndarray) and str(f).endswith(".npy")]
    if not rows or not all(str(i).isdigit() for i in dataset.item_ids):
        return dataset
    extra = [str(i) for i in range(max(rows))]
    if len(set(extra) - set(map(str, dataset.item_ids))) == 0:
        return dataset
    return Dataset(dataset.user_ids, _sorted_unique_ids(list(dataset.item_ids) + extra))


def models_without_item_features(models) -> list[str]:
    """Names in ``models`` whose model cannot take item feature matrices (all but ``ease-content``
    and any later model declaring the ``item_features`` side input)."""
    from recsys.models import MODELS, side_inputs

    return [m for m in models if "item_features" not in side_inputs(MODELS.get(str(m).lower(), object))]
