"""Sequence logs and item side information (feature matrices, titles) from files.

* :func:`read_sequences`: one line per user, ``user_id<TAB>item item ...`` in chronological
  order (MicroLens ``*_pairs.tsv``). Without timestamps the order is kept as a per-user
  ``position`` column (0 = oldest), also copied to ``timestamp`` so that time-based splits and
  the "latest wins" duplicate rule of :mod:`recsys.data.interactions` follow the sequence order.
* :func:`load_item_features`: a float matrix with one row per item from ``.npy`` (row = item
  index, no ids), Parquet or CSV (an ``item_id`` column plus numeric vector columns, or one
  column holding lists).
* :func:`load_item_text`: item texts (titles, captions) from CSV/Parquet (``item_id`` plus a
  text column).

Every problem is raised as :class:`ItemDataError` (a ``ValueError``) naming the file, the
1-based row or line, what is wrong and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ItemDataError", "read_sequences", "load_item_features", "load_item_text",
           "SEQUENCE_REPEATS"]

#: What :func:`read_sequences` does with an item repeated inside one user's sequence.
SEQUENCE_REPEATS = ("error", "first", "last")

_ID_NAMES = ("item_id", "itemid", "item", "video_id", "videoid", "iid")


class ItemDataError(ValueError):
    """A malformed sequence or item side-information file.

    Attributes
    ----------
    path : str
    row : int or None
        1-based line (text) or data row (Parquet, ``.npy``); None for whole-file problems.
    reason : str
    fix : str
    """

    def __init__(self, path, row, reason: str, fix: str) -> None:
        self.path, self.row, self.reason, self.fix = str(path), row, reason, fix
        where = self.path if row is None else f"{self.path}, row {row}"
        super().__init__(f"{where}: {reason}; fix: {fix}")


def read_sequences(path: str | os.PathLike, *, repeats: str = "error") -> pd.DataFrame:
    """Read a sequence-per-line log: ``user_id<TAB>item item ...`` (oldest item first).

    Parameters
    ----------
    path : path-like
        UTF-8 text; the user id and its sequence are separated by one tab, items by spaces.
        A first line whose sequence is a single word ``item``/``items``/``sequence`` is a header
        and skipped.
    repeats : {"error", "first", "last"}
        An item that occurs twice in one user's sequence: raise (default), keep its first
        position, or keep its last position (the rule of :mod:`recsys.data.interactions`: latest wins).

    Returns
    -------
    pandas.DataFrame
        ``user_id``, ``item_id`` (str, as in the file), ``rating`` (1.0), ``timestamp`` and
        ``position`` (int64, 0-based position in the user's sequence), in file order.
        ``attrs["source"]`` is the path.

    Raises
    ------
    ItemDataError
        Empty file; an empty or whitespace-only line; a line without a tab or with no item;
        a user id given on two lines; a repeated item with ``repeats="error"``.
    ValueError
        Unknown ``repeats``.
    """
    if repeats not in SEQUENCE_REPEATS:
        raise ValueError(f"repeats={repeats!r}: expected one of {SEQUENCE_REPEATS}")
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    pos: list[int] = []
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                raise ItemDataError(path, lineno, "empty line", "delete empty lines (one line "
                                    "per user: user_id<TAB>item item ...)")
            user, tab, seq = line.partition("\t")
            ids = seq.split()
            if lineno == 1 and len(ids) == 1 and ids[0].lower() in ("item", "items", "sequence",
                                                                     "item_id", "item_ids"):
                continue
            if not tab or not user.strip():
                raise ItemDataError(path, lineno, f"no tab-separated user id in {line[:60]!r}",
                                    "write user_id<TAB>item item ... (items space-separated)")
            if not ids:
                raise ItemDataError(path, lineno, f"user {user!r} has no item",
                                    "drop the line or add the user's items")
            user = user.strip()
            if user in first_line:
                raise ItemDataError(path, lineno, f"user {user!r} also has line "
                                    f"{first_line[user]}", "join the user's items into one line")
            first_line[user] = lineno
            if len(set(ids)) != len(ids):
                seen: dict[str, int] = {}
                for p, it in enumerate(ids):
                    if it in seen and repeats == "error":
                        raise ItemDataError(
                            path, lineno, f"item {it!r} is repeated in user {user!r}'s sequence "
                            f"(positions {seen[it]} and {p})",
                            "remove the repeat, or pass repeats='first' or 'last' to keep one")
                    if repeats == "last" or it not in seen:
                        seen[it] = p
                keep = sorted(seen.values())
                ids = [ids[p] for p in keep]
            users += [user] * len(ids)
            items += ids
            pos += range(len(ids))
    if not users:
        raise ItemDataError(path, None, "no sequence in the file",
                            "write one line per user: user_id<TAB>item item ...")
    p = np.asarray(pos, dtype=np.int64)
    df = pd.DataFrame({"user_id": pd.Series(users, dtype=object),
                       "item_id": pd.Series(items, dtype=object),
                       "rating": np.ones(len(users)), "timestamp": p, "position": p.copy()})
    df.attrs["source"] = str(path)
    return df


def _id_column(path, columns) -> str:
    for c in columns:
        if str(c).lower().replace("-", "_") in _ID_NAMES:
            return c
    raise ItemDataError(path, None, f"no item id column among {list(columns)[:10]}",
                        f"name the id column one of {list(_ID_NAMES)}")


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    return pd.read_csv(path, sep=sep, dtype={0: str}, keep_default_na=False, na_values=[""])


def _align(path, ids: np.ndarray, values, item_ids, what: str):
    ids = np.asarray([str(i) for i in ids], dtype=object)
    dup = pd.Index(ids).duplicated()
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        raise ItemDataError(path, r + 1, f"item id {ids[r]!r} appears twice",
                            f"keep one {what} row per item")
    if item_ids is None:
        return ids, values
    pos = pd.Index(ids).get_indexer([str(i) for i in item_ids])
    if (pos < 0).any():
        miss = [str(item_ids[i]) for i in np.flatnonzero(pos < 0)[:5]]
        raise ItemDataError(path, None, f"{int((pos < 0).sum())} of {len(pos)} items have no "
                            f"{what} (e.g. {miss})", "add rows for them, or drop their "
                            "interactions")
    return np.asarray([str(i) for i in item_ids], dtype=object), values[pos]


def load_item_features(path: str | os.PathLike, item_ids=None, *, n_items: int | None = None,
                       allow_zero_rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read an item feature matrix, checked and optionally aligned to ``item_ids``.

    Parameters
    ----------
    path : path-like
        ``.npy`` (2-D float, row ``i`` = item index ``i``; no ids, loaded without pickle),
        ``.parquet`` or ``.csv``/``.tsv`` (an ``item_id`` column plus either numeric columns,
        one per dimension, or a single column holding a list per row).
    item_ids : sequence of str, optional
        Order of the rows to return. For ``.npy`` these are the ids of rows ``0..n-1`` (the
        file has no ids; its row count must equal ``len(item_ids)``); for tables, rows are
        looked up by id.
    n_items : int, optional
        Required row count (``.npy``) when ``item_ids`` is not given.
    allow_zero_rows : bool
        Accept all-zero rows (items without content); by default they are an error because
        cosine-based models cannot use them.

    Returns
    -------
    (ids, features) : tuple
        ``ids`` object array of str (``"0".."n-1"`` for ``.npy`` without ``item_ids``),
        ``features`` float32 ``(n, d)``.

    Raises
    ------
    ItemDataError
        Wrong row count, non-numeric values, NaN/inf or all-zero rows (names the first row),
        an id column missing or repeated, ``item_ids`` absent from the file.
    FileNotFoundError
        ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"item features {str(path)!r} do not exist; pass a .npy, "
                                ".parquet or .csv file")
    if path.suffix.lower() == ".npy":
        x = np.load(path, allow_pickle=False)
        if x.ndim != 2:
            raise ItemDataError(path, None, f"array of shape {x.shape}, expected (n_items, d)",
                                "save a 2-D array with one row per item index")
        want = len(item_ids) if item_ids is not None else n_items
        if want is not None and x.shape[0] != want:
            raise ItemDataError(path, None, f"{x.shape[0]} rows, expected {want} (one per item "
                                "index)", "save one row per item, in item index order, or use a "
                                "Parquet/CSV file with an item_id column")
        ids = (np.asarray([str(i) for i in item_ids], dtype=object) if item_ids is not None
               else np.asarray([str(i) for i in range(x.shape[0])], dtype=object))
        values = x
    else:
        table = _read_table(path)
        idc = _id_column(path, table.columns)
        rest = [c for c in table.columns if c != idc]
        if len(rest) == 1 and table[rest[0]].map(lambda v: isinstance(v, (list, np.ndarray))
                                                 ).all():
            lens = table[rest[0]].map(len)
            if lens.nunique() > 1:
                r = int(np.flatnonzero(lens.to_numpy() != lens.iloc[0])[0])
                raise ItemDataError(path, r + 1, f"vector of length {lens.iloc[r]}, the first "
                                    f"row has {lens.iloc[0]}", "give every item the same "
                                    "dimension")
            values = np.stack(table[rest[0]].to_numpy())
        else:
            num = table[rest].apply(pd.to_numeric, errors="coerce")
            bad = num.isna() & table[rest].notna()
            if bad.to_numpy().any():
                r, c = map(int, np.argwhere(bad.to_numpy())[0])
                raise ItemDataError(path, r + 2, f"column {rest[c]!r} holds non-numeric "
                                    f"{table[rest].iat[r, c]!r}", "keep only numeric feature "
                                    "columns beside item_id (text goes to --item-text)")
            values = num.to_numpy()
        ids, values = _align(path, table[idc].to_numpy(), values, item_ids, "feature vector")
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        r = int(np.flatnonzero(~finite)[0])
        raise ItemDataError(path, r + 1, f"item {ids[r]!r} has NaN or infinite features "
                            f"({int((~finite).sum())} such rows)", "re-extract those items' "
                            "features or drop the items")
    if not allow_zero_rows:
        zero = ~values.any(axis=1)
        if zero.any():
            r = int(np.flatnonzero(zero)[0])
            raise ItemDataError(path, r + 1, f"item {ids[r]!r} has an all-zero feature vector "
                                f"({int(zero.sum())} such rows)", "extract features for those "
                                "items, or pass allow_zero_rows=True if zero means 'no content'")
    return ids, values.astype(np.float32)


def load_item_text(path: str | os.PathLike, item_ids=None, *, column: str | None = None
                   ) -> tuple[np.ndarray, list[str]]:
    """Read item texts (titles, captions) from a CSV/TSV/Parquet table.

    Parameters
    ----------
    path : path-like
        A table with an item id column and a text column.
    item_ids : sequence of str, optional
        Return texts in this order; every id must be present.
    column : str, optional
        The text column; default: ``title``, ``caption``, ``text`` or the only other column.

    Returns
    -------
    (ids, texts) : tuple
        Object array of str ids and a list of str (missing texts become ``""``).

    Raises
    ------
    ItemDataError
        No id or text column, repeated ids, ``item_ids`` absent from the file.
    """
    path = Path(path)
    table = _read_table(path)
    idc = _id_column(path, table.columns)
    rest = [c for c in table.columns if c != idc]
    if column is None:
        pref = [c for c in rest if str(c).lower() in ("title", "caption", "text", "description")]
        if pref:
            column = pref[0]
        elif len(rest) == 1:
            column = rest[0]
        else:
            raise ItemDataError(path, None, f"cannot tell the text column among {rest}",
                                "name it title/caption/text or pass column=")
    if column not in table.columns:
        raise ItemDataError(path, None, f"no column {column!r} (has {list(table.columns)})",
                            "pass an existing column")
    texts = table[column].fillna("").astype(str).to_numpy(dtype=object)
    ids, texts = _align(path, table[idc].to_numpy(), texts, item_ids, "text")
    return ids, [str(t) for t in texts]
