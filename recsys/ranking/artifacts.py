"""A trained ranker on disk (``MODEL_DIR``): the model, its id maps and its training matrix.

Layout::

    MODEL_DIR/
      model.npz          fitted arrays (``Recommender.save``; no pickle), or
      model/             the folder of a folder-saved model (``LTRRecommender``: booster text,
                         stage-1 models inside)
      user_items.npz     training matrix, CSR (n_users, n_items), ``scipy.sparse.save_npz``
      users.parquet      user_index -> user_id
      items.parquet      item_index -> item_id
      model.json         model name, parameters, training file, counts, fit seconds (and the
                         validation tuning table / two-stage settings when chosen)
      item_embeddings.npy  optional (n_items, d) float32 content vectors (content, hybrid,
                         two-stage models), ``np.load(allow_pickle=False)``

The folder is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embeddings._io import atomic_dir, dumps_strict

__all__ = ["TrainedModel", "save_trained", "load_trained"]

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A fitted recommender with the id maps that translate its indices.

    Attributes
    ----------
    model : recsys.models.base.Recommender
    user_items : scipy.sparse.csr_matrix
        Training interactions, shape ``(n_users, n_items)``.
    user_ids, item_ids : numpy.ndarray
        object arrays of external ids; ``user_ids[user_index]``, ``item_ids[item_index]``.
    info : dict
        Name, parameters, counts, timings.
    item_embeddings : numpy.ndarray or None
        float32 ``(n_items, d)`` content vectors aligned with ``item_ids``, when trained with them.
    """

    model: object
    user_items: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    info: dict = field(default_factory=dict)
    item_embeddings: np.ndarray | None = None

    def user_index(self, user_id: str) -> int:
        """Row of ``user_id``.

        Raises
        ------
        KeyError
            If the user is not in the training data (a cold-start user); the message says so.
        """
        lookup = getattr(self, "_user_lookup", None)
        if lookup is None:
            lookup = {u: i for i, u in enumerate(self.user_ids)}
            self._user_lookup = lookup
        try:
            return lookup[str(user_id)]
        except KeyError:
            raise KeyError(f"user_id {user_id!r} is not in the training data ({len(self.user_ids)} users): "
                           "a cold-start user; popularity is the fallback for such users") from None

    def recommend(self, user_indices: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` unseen items for rows ``user_indices``: ``(item_index (n,k), scores (n,k))``, -1/-inf padded."""
        user_indices = np.asarray(user_indices, dtype=np.int64)
        return self.model.recommend(user_indices, self.user_items[user_indices], k=k,
                                    filter_already_liked_items=True)


def save_trained(folder: str | os.PathLike, tm: TrainedModel) -> Path:
    """Write ``tm`` to ``folder`` atomically (layout in the module docstring); returns the folder."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        tm.model.save(tmp / ("model" if getattr(tm.model, "saves_folder", False) else "model.npz"))
        sp.save_npz(tmp / "user_items.npz", tm.user_items.tocsr(), compressed=True)
        pd.DataFrame({"user_index": np.arange(len(tm.user_ids)), "user_id": tm.user_ids.astype(str)}).to_parquet(
            tmp / "users.parquet", index=False)
        pd.DataFrame({"item_index": np.arange(len(tm.item_ids)), "item_id": tm.item_ids.astype(str)}).to_parquet(
            tmp / "items.parquet", index=False)
        if tm.item_embeddings is not None:
            np.save(tmp / "item_embeddings.npy", np.asarray(tm.item_embeddings, dtype=np.float32))
        (tmp / "model.json").write_text(dumps_strict(tm.info, indent=2) + "\n", encoding="utf-8")
    log.info("saved %s model to %s", type(tm.model).__name__, folder)  # the final folder, not the staging one
    return folder


def load_trained(folder: str | os.PathLike) -> TrainedModel:
    """Load a folder written by :func:`save_trained` (``recsys train``).

    Raises
    ------
    FileNotFoundError
        If the folder or one of its files is missing (the message names it and how to make one).
    """
    from recsys.models import Recommender

    folder = Path(folder)
    model_path = folder / "model" if (folder / "model").is_dir() else folder / "model.npz"
    for name in (model_path.name, "user_items.npz", "users.parquet", "items.parquet", "model.json"):
        if not (folder / name).exists():
            raise FileNotFoundError(
                f"{folder / name} is missing: {folder} is not a model folder. "
                "Make one with `recsys train INTERACTIONS --model ease --out MODEL_DIR`.")
    model = Recommender.load(model_path)
    ui = sp.load_npz(folder / "user_items.npz").tocsr()
    users = pd.read_parquet(folder / "users.parquet").sort_values("user_index")["user_id"].to_numpy(dtype=object)
    items = pd.read_parquet(folder / "items.parquet").sort_values("item_index")["item_id"].to_numpy(dtype=object)
    info = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    emb_path = folder / "item_embeddings.npy"
    emb = np.load(emb_path, allow_pickle=False) if emb_path.is_file() else None
    return TrainedModel(model=model, user_items=ui, user_ids=users, item_ids=items, info=info,
                        item_embeddings=emb)
