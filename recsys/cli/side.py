"""``--validation FILE``, ``--item-features FILE`` (repeatable) and ``--item-text FILE`` for
``recsys train``: argument definitions and their loading, kept out of :mod:`recsys.cli`.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["add_side_arguments", "side_options", "text_features"]

logger = logging.getLogger(__name__)


def add_side_arguments(parser) -> None:
    """Add the predefined-validation and item side-information flags to ``parser``."""
    parser.add_argument("--validation", metavar="FILE",
                        help="predefined validation split (same format as the log) used by --tune "
                             "instead of carving one from the training data")
    parser.add_argument("--item-features", action="append", metavar="FILE",
                        help="item feature matrix: .npy (row = item index: ids 0..n-1), or "
                             ".parquet/.csv with item_id + vector columns (repeatable, one per "
                             "modality); only models that take item features accept it "
                             "(ease-content, graph-filter)")
    parser.add_argument("--item-text", metavar="FILE",
                        help="item texts (CSV/Parquet: item_id + title/caption/text): TF-IDF "
                             "reduced by truncated SVD, used as one more feature matrix")


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


def side_options(args, dataset, *, sep=None) -> dict:
    """``validation`` / ``item_features`` options for :func:`recsys.app.stages.train_model`.

    Raises
    ------
    recsys.data.side.ItemDataError
        A feature or text file that does not cover ``dataset.item_ids`` or is malformed.
    """
    from recsys.data.interactions import load_interactions
    from recsys.data.side import load_item_features, load_item_text

    options = {}
    if getattr(args, "validation", None):
        options["validation"] = load_interactions(args.validation, sep=sep)
    feats = []
    for path in getattr(args, "item_features", None) or []:
        if str(path).endswith(".npy"):  # rows are item indices 0..n-1: ids are their numbers
            _, x = load_item_features(path)
            pos = np.array([int(i) for i in dataset.item_ids])
            if pos.max() >= x.shape[0]:
                raise ValueError(f"{path}: {x.shape[0]} rows but the log names item "
                                 f"{pos.max()}; fix: one row per item index")
            feats.append(x[pos])
        else:
            feats.append(load_item_features(path, dataset.item_ids)[1])
    if getattr(args, "item_text", None):
        _, texts = load_item_text(args.item_text, dataset.item_ids)
        feats.append(text_features(texts))
    if feats:
        options["item_features"] = feats
    return options
