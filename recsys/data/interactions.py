"""Interaction logs: loading, id maps and the ``user_items`` matrix.

An interaction log is a table with one row per (user, item) event. The canonical columns are
:data:`INTERACTION_COLUMNS`: ``user_id`` and ``item_id`` (required, kept as strings), ``rating``
(float64, 1.0 where the file has none) and ``timestamp`` (int64 seconds since the epoch, optional).

Duplicate rule (one rule everywhere): when the same (user_id, item_id) pair occurs more than once,
the row with the **latest timestamp** is kept (equal timestamps: the later row in the file wins);
without a timestamp column the **last occurrence** in the file is kept. The number dropped is
logged and stored in ``df.attrs["n_duplicates_dropped"]``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "INTERACTION_COLUMNS",
    "COLUMN_ALIASES",
    "InteractionFileError",
    "load_interactions",
    "drop_duplicate_interactions",
    "Dataset",
    "build_dataset",
]

logger = logging.getLogger(__name__)

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")

#: Header names recognised for each canonical column, in priority order. Matching ignores case,
#: spaces, ``_`` and ``-`` (``userId``, ``USER_ID`` and ``user id`` all match ``userid``).
#: When a header holds several aliases of one column, the first alias listed here wins and the
#: others are ignored like any unrecognised column (KuaiRec has both ``timestamp`` and ``time``).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("userid", "user", "uid", "customerid", "visitorid"),
    "item_id": ("itemid", "item", "iid", "movieid", "videoid", "video", "photoid", "productid"),
    "rating": ("rating", "ratings", "score", "watchratio", "weight", "value", "preference"),
    "timestamp": ("timestamp", "unixtimestamp", "ts", "time", "datetime", "date"),
}

_NAN_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none", "-nan"})


class InteractionFileError(ValueError):
    """A malformed interaction file: names the file, the 1-based line and the expected columns.

    Attributes
    ----------
    path : str
        The file.
    line : int or None
        1-based physical line number (header included) for text files; 1-based data row for
        Parquet; None when the problem concerns the whole file (empty file, no usable columns).
    reason : str
        Short description of the problem.
    """

    def __init__(self, path, line, reason, *, expected=INTERACTION_COLUMNS[:2]):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}" if line is None else f"{self.path}, line {line}"
        super().__init__(
            f"{where}: {reason}. Expected columns: {', '.join(expected)} (user_id and item_id "
            "required; rating and timestamp optional), comma-, tab- or '::'-separated with an "
            "optional header, or a Parquet file with those column names"
        )


def _norm(name) -> str:
    return re.sub(r"[\s_\-]", "", str(name)).lower()


def _match_header(names: Sequence[str]) -> dict[str, str]:
    """Map file column name -> canonical name using :data:`COLUMN_ALIASES`."""
    normed = {_norm(n): n for n in reversed(list(names))}  # first occurrence wins
    mapping = {}
    for canon, aliases in COLUMN_ALIASES.items():
        for alias in (_norm(canon), *aliases):
            if alias in normed:
                mapping[normed[alias]] = canon
                break
    return mapping


def _sniff_sep(path: Path, first_line: str) -> str:
    suffix = path.suffix.lower()
    if "::" in first_line:
        return "::"
    if suffix in (".tsv", ".tab", ".data") or "\t" in first_line:
        return "\t"
    if suffix == ".csv" or "," in first_line:
        return ","
    if ";" in first_line:
        return ";"
    return "\t"


def _physical_line(path: Path, lineno: int) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh, start=1):
            if i == lineno:
                return line.rstrip("\r\n")
    return ""


def _first_nonblank_line(path: Path) -> tuple[str, int]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                return line.rstrip("\r\n"), lineno
    return "", 0


def load_interactions(path, *, sep=None, columns=None, signals=None) -> pd.DataFrame:
    """Load an interaction log from CSV, TSV, MovieLens ``u.data``/``ratings.dat`` or Parquet.

    Parameters
    ----------
    path : str or os.PathLike
        ``.parquet``/``.pq`` files are read with pyarrow; anything else is read as text (UTF-8).
    sep : str, optional
        Field separator for text files. None sniffs it from the first non-blank line: ``::`` if
        present, else a tab (also for ``.tsv``/``.data``), else ``,``, else ``;``.
    columns : sequence of str or mapping, optional
        For a headerless text file: the canonical name of each positional column (None skips a
        column), e.g. ``("user_id", "item_id", None, "timestamp")``. For a file with a header (or
        Parquet): a mapping ``{file column: canonical name}`` used instead of
        :data:`COLUMN_ALIASES`. None: header names are matched with :data:`COLUMN_ALIASES`; a
        first line with no recognised name is data, read positionally as
        ``user_id, item_id, rating, timestamp`` (2 to 4 fields), which is MovieLens ``u.data``.
    signals : sequence of str, optional
        Further feedback columns to keep by their exact header name (files with a header, or
        Parquet), e.g. KuaiRand's ``("is_like", "long_view")``: numbers >= 0, kept as float64
        columns of that name (the learned stage's objectives,
        :class:`recsys.models.LTRRecommender`).

    Returns
    -------
    pandas.DataFrame
        Columns ``user_id``, ``item_id`` (object, str), ``rating`` (float64; 1.0 where the file
        has no rating column) and, when present, ``timestamp`` (int64 seconds; fractional seconds
        are floored, date strings are parsed as UTC), and the ``signals`` columns.
        Unrecognised columns are dropped. Rows keep
        file order, duplicates removed by the module's duplicate rule; ``attrs`` holds ``source``
        (the path) and ``n_duplicates_dropped``. Blank lines are skipped.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    InteractionFileError
        Empty file; a header without user/item columns; a line with a wrong number of fields;
        a missing id; a non-numeric, NaN or infinite rating; an unparseable timestamp. The
        message names the file, the 1-based line (the header counts as line 1) and the expected
        columns. Line numbers assume no quoted field spans several lines. A ``signals`` column
        that is absent (the message lists the columns), empty, non-numeric, negative or
        infinite on some line.
    ValueError
        ``columns`` names something that is not a canonical column.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"interaction file {str(path)!r} does not exist; check the path")
    if path.suffix.lower() in (".parquet", ".pq"):
        raw, line_of_row, mapping = _read_parquet(path, columns)
    else:
        raw, line_of_row, mapping = _read_text(path, sep, columns)
    df = _normalise(path, raw, line_of_row, mapping)
    for name in _signal_names(signals):
        if name in mapping:
            raise InteractionFileError(
                path, None, f"column {name!r} is read as the {mapping[name]} column; a feedback "
                "signal must be another column (a rating is already the graded label: "
                "--param label=graded), or pass columns= to map the header yourself")
        if name not in raw.columns:
            raise InteractionFileError(
                path, None, f"no column {name!r} to read as a feedback signal among "
                f"{[str(c) for c in raw.columns if c not in mapping]} (the columns that are not "
                "user, item, rating or timestamp); signals need a header naming them")
        src = raw[name]
        vals = pd.to_numeric(src, errors="coerce").to_numpy(dtype=np.float64)
        text = src.astype(str).str.strip()
        _first_bad(path, line_of_row, src.isna().to_numpy() | (text == "").to_numpy(),
                   f"missing {name}")
        _first_bad(path, line_of_row, np.isnan(vals), f"non-numeric {name}")
        _first_bad(path, line_of_row, np.isinf(vals) | (vals < 0), f"{name} negative or infinite")
        df[name] = vals
    return drop_duplicate_interactions(df, source=str(path))


def _signal_names(signals) -> list[str]:
    if signals is None:
        return []
    names = [signals] if isinstance(signals, str) else list(signals)
    for n in names:
        if not isinstance(n, str) or not n or n in INTERACTION_COLUMNS:
            raise ValueError(f"signals names a column {n!r}; expected header names other than "
                             f"{list(INTERACTION_COLUMNS)}")
    return names


def _check_canonical(names) -> None:
    bad = [n for n in names if n is not None and n not in INTERACTION_COLUMNS]
    if bad:
        raise ValueError(
            f"columns={list(names)!r} names {bad!r}, which are not interaction columns; "
            f"use names from {INTERACTION_COLUMNS} (or None to skip a column)"
        )


def _read_parquet(path: Path, columns):
    raw = pd.read_parquet(path)
    if len(raw) == 0:
        raise InteractionFileError(path, None, "the file holds no rows")
    if isinstance(columns, Mapping):
        _check_canonical(columns.values())
        mapping = dict(columns)
    else:
        mapping = _match_header(raw.columns)
    line_of_row = np.arange(1, len(raw) + 1)
    return raw, line_of_row, mapping


def _read_text(path: Path, sep, columns):
    first, first_lineno = _first_nonblank_line(path)
    if not first:
        raise InteractionFileError(path, None, "the file is empty")
    if sep is None:
        sep = _sniff_sep(path, first)
    fields = [f.strip().strip('"') for f in first.split(sep)]
    if isinstance(columns, Mapping):
        _check_canonical(columns.values())
        has_header, mapping_by_name = True, dict(columns)
    elif columns is not None:
        _check_canonical(columns)
        has_header, mapping_by_name = False, None
    else:
        mapping_by_name = _match_header(fields)
        has_header = bool(mapping_by_name)
    if has_header:
        names = fields
        n_fields = len(fields)
    else:
        n_fields = len(fields) if columns is None else len(columns)
        if columns is None and not 2 <= n_fields <= 4:
            raise InteractionFileError(
                path, first_lineno,
                f"the first line has {n_fields} field(s) and no recognised header; without a "
                "header the file must have 2 to 4 fields (user, item[, rating[, timestamp]]), "
                "or pass columns=",
            )
        names = list(columns) if columns is not None else list(INTERACTION_COLUMNS[:n_fields])
    # One spare column catches lines with too many fields; a short line leaves it and the last
    # expected field empty (NaN).
    read_names = [f"_c{i}" for i in range(n_fields + 1)]
    engine = "python" if len(sep) > 1 else "c"
    try:
        raw = pd.read_csv(
            path, sep=sep, header=None, names=read_names, dtype=str, skip_blank_lines=False,
            keep_default_na=False, na_values=[], skiprows=first_lineno if has_header else 0,
            engine=engine, encoding="utf-8", quotechar='"', index_col=False,
        )
    except pd.errors.ParserError as exc:
        # pandas numbers physical lines (skipped header included), as we do
        m = re.search(r"line (\d+), saw (\d+)", str(exc))
        line, got = (int(m.group(1)), m.group(2)) if m else (None, "more")
        raise InteractionFileError(
            path, line, f"wrong number of fields: expected {n_fields} separated by {sep!r}, "
            f"got {got}",
        ) from exc
    offset = first_lineno if has_header else 0
    line_of_row = np.arange(1, len(raw) + 1) + offset
    filled = (raw.notna() & (raw != "")).to_numpy()
    blank = ~filled.any(axis=1)
    too_many = filled[:, -1]
    # pandas reads a missing trailing field and an empty one alike (""): look at the physical
    # line of the first candidate to tell "too few fields" from "empty field" (caught later)
    short = ~filled[:, n_fields - 1] & ~blank
    bad_many = np.flatnonzero(too_many)
    first_many = bad_many[0] if bad_many.size else len(raw)
    for row in np.flatnonzero(short[:first_many]):
        got = len(_physical_line(path, int(line_of_row[row])).split(sep))
        if got < n_fields:
            raise InteractionFileError(
                path, int(line_of_row[row]),
                f"wrong number of fields: expected {n_fields} separated by {sep!r}, got {got}",
            )
        break  # an empty field, not a short line: reported by the column checks
    if bad_many.size:
        row = bad_many[0]
        raise InteractionFileError(
            path, int(line_of_row[row]),
            f"wrong number of fields: expected {n_fields} separated by {sep!r}, got more"
            f" ({int(bad_many.size)} such line(s) in total)",
        )
    raw = raw.loc[~blank, read_names[:n_fields]]
    line_of_row = line_of_row[~blank]
    raw.columns = names
    if has_header:
        mapping = mapping_by_name
    else:
        mapping = {n: n for n in names if n is not None}
        raw = raw.loc[:, [n is not None for n in names]]
    if len(raw) == 0:
        raise InteractionFileError(path, None, "the file holds a header but no data rows")
    return raw, line_of_row, mapping


def _first_bad(path, line_of_row, mask, reason, total_what="row(s)"):
    bad = np.flatnonzero(np.asarray(mask))
    if bad.size:
        raise InteractionFileError(
            path, int(line_of_row[bad[0]]), f"{reason} ({int(bad.size)} {total_what} in total)"
        )


def _ids(path, series: pd.Series, line_of_row, name) -> np.ndarray:
    if pd.api.types.is_float_dtype(series):
        vals = series.to_numpy()
        _first_bad(path, line_of_row, np.isnan(vals), f"missing {name}")
        if np.all(vals == np.floor(vals)):
            series = series.astype(np.int64)
    text = series.astype(str).str.strip()
    _first_bad(path, line_of_row, series.isna().to_numpy() | (text == "").to_numpy(),
               f"missing {name}")
    return text.to_numpy(dtype=object)


def _normalise(path, raw: pd.DataFrame, line_of_row, mapping) -> pd.DataFrame:
    cols = {canon: src for src, canon in mapping.items() if canon is not None}
    missing = [c for c in ("user_id", "item_id") if c not in cols]
    if missing:
        raise InteractionFileError(
            path, None, f"no column recognised as {' or '.join(missing)} among "
            f"{[str(c) for c in raw.columns]} (see recsys.data.interactions.COLUMN_ALIASES, or pass columns=)",
        )
    out = pd.DataFrame({
        "user_id": _ids(path, raw[cols["user_id"]], line_of_row, "user_id"),
        "item_id": _ids(path, raw[cols["item_id"]], line_of_row, "item_id"),
    })
    if "rating" in cols:
        src = raw[cols["rating"]]
        rating = pd.to_numeric(src, errors="coerce").to_numpy(dtype=np.float64)
        text = src.astype(str).str.strip().str.lower()
        nan_like = src.isna().to_numpy() | text.isin(_NAN_TEXT).to_numpy()
        _first_bad(path, line_of_row, nan_like, "missing or NaN rating")
        _first_bad(path, line_of_row, np.isnan(rating), "non-numeric rating")
        _first_bad(path, line_of_row, np.isinf(rating), "infinite rating")
        out["rating"] = rating
    else:
        out["rating"] = np.ones(len(out), dtype=np.float64)
    if "timestamp" in cols:
        out["timestamp"] = _timestamps(path, raw[cols["timestamp"]], line_of_row)
    return out


def _timestamps(path, src: pd.Series, line_of_row) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(src):
        vals = pd.to_datetime(src, utc=True)
        _first_bad(path, line_of_row, vals.isna().to_numpy(), "missing timestamp")
        return (vals.astype("int64") // 1_000_000_000).to_numpy(dtype=np.int64)
    num = pd.to_numeric(src, errors="coerce").to_numpy(dtype=np.float64)
    text = src.astype(str).str.strip()
    _first_bad(path, line_of_row, src.isna().to_numpy() | text.str.lower().isin(_NAN_TEXT),
               "missing timestamp")
    if np.isnan(num).any():
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        _first_bad(path, line_of_row, parsed.isna().to_numpy(),
                   "timestamp is neither numeric seconds nor a date")
        return (parsed.astype("int64") // 1_000_000_000).to_numpy(dtype=np.int64)
    _first_bad(path, line_of_row, ~np.isfinite(num), "infinite timestamp")
    floored = np.floor(num)
    n_frac = int(np.count_nonzero(floored != num))
    if n_frac:
        logger.info("%s: %d fractional timestamps floored to whole seconds", path, n_frac)
    return floored.astype(np.int64)


def drop_duplicate_interactions(df: pd.DataFrame, *, source: str | None = None) -> pd.DataFrame:
    """Keep one row per (user_id, item_id) by the module's duplicate rule.

    The row with the latest ``timestamp`` is kept (ties: the later row); without a ``timestamp``
    column the last occurrence is kept. Kept rows stay in their original order; the index is
    reset to ``0..n-1``.

    Parameters
    ----------
    df : pandas.DataFrame
        Has at least ``user_id`` and ``item_id``.
    source : str, optional
        Name used in the log message (e.g. the file).

    Returns
    -------
    pandas.DataFrame
        A new frame; ``attrs["n_duplicates_dropped"]`` holds the number of rows removed and
        ``attrs["source"]`` the ``source`` (when given).

    Raises
    ------
    ValueError
        ``df`` lacks ``user_id`` or ``item_id``.
    """
    missing = [c for c in ("user_id", "item_id") if c not in df.columns]
    if missing:
        raise ValueError(
            f"df lacks column(s) {missing}; got {list(df.columns)}; load it with load_interactions"
        )
    order = np.arange(len(df))
    if "timestamp" in df.columns:
        order = np.lexsort((order, df["timestamp"].to_numpy()))  # by time, then row
    keys = df[["user_id", "item_id"]].iloc[order]
    keep = np.sort(order[~keys.duplicated(keep="last").to_numpy()])
    n_dup = len(df) - len(keep)
    out = df.iloc[keep].reset_index(drop=True) if n_dup else df.reset_index(drop=True)
    out.attrs = dict(df.attrs)
    out.attrs["n_duplicates_dropped"] = int(n_dup)
    if source is not None:
        out.attrs["source"] = source
    if n_dup:
        rule = "latest timestamp" if "timestamp" in df.columns else "last occurrence"
        logger.warning("%s: %d duplicate (user_id, item_id) rows dropped, keeping the %s",
                       source or "interactions", n_dup, rule)
    return out


def _sorted_unique_ids(values) -> np.ndarray:
    """Unique ids as str, sorted numerically when all are decimal integers, else as text."""
    uniq = pd.unique(pd.Series(values, dtype=object).astype(str))
    uniq = np.asarray(uniq, dtype=object)
    if uniq.size and all(s.isascii() and s.isdigit() for s in uniq):
        # numeric order without int conversion (ids may exceed int64): by length of the
        # number without leading zeros, then its digits, then the original text
        stripped = np.array([s.lstrip("0") or "0" for s in uniq])
        lengths = np.array([len(s) for s in stripped])
        order = np.lexsort((uniq.astype(str), stripped, lengths))
        return uniq[order]
    return np.sort(uniq.astype(str)).astype(object)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Id maps between external ids (str) and internal row/column numbers.

    Attributes
    ----------
    user_ids : numpy.ndarray
        object (n_users,) of str; ``user_ids[user_index]`` is the external id.
    item_ids : numpy.ndarray
        object (n_items,) of str; ``item_ids[item_index]`` is the external id.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    _user_lookup: pd.Index = field(init=False, repr=False, compare=False)
    _item_lookup: pd.Index = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        for name in ("user_ids", "item_ids"):
            ids = np.asarray(getattr(self, name), dtype=object)
            lookup = pd.Index(ids)
            if not lookup.is_unique:
                raise ValueError(f"{name} holds duplicate ids; pass unique ids (build_dataset does)")
            object.__setattr__(self, name, ids)
            object.__setattr__(self, f"_{name[:4]}_lookup", lookup)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_index(self, user_id) -> int:
        """Row number of ``user_id`` (str or anything whose ``str`` is the id).

        Raises
        ------
        ValueError
            Unknown ``user_id``.
        """
        return self._one(self._user_lookup, user_id, "user_id")

    def item_index(self, item_id) -> int:
        """Column number of ``item_id``. Raises ValueError for an unknown id."""
        return self._one(self._item_lookup, item_id, "item_id")

    @staticmethod
    def _one(lookup: pd.Index, value, name) -> int:
        pos = lookup.get_indexer([str(value)])[0]
        if pos < 0:
            raise ValueError(
                f"{name}={value!r} is not in this Dataset ({len(lookup)} known); "
                "build the Dataset from data that contains it"
            )
        return int(pos)

    def user_indices(self, user_ids) -> np.ndarray:
        """int64 (n,) row numbers of ``user_ids``; -1 for unknown ids."""
        return self._user_lookup.get_indexer(pd.Index(np.asarray(user_ids).astype(str)))

    def item_indices(self, item_ids) -> np.ndarray:
        """int64 (n,) column numbers of ``item_ids``; -1 for unknown ids."""
        return self._item_lookup.get_indexer(pd.Index(np.asarray(item_ids).astype(str)))

    def to_user_items(self, df: pd.DataFrame, *, binary: bool = True) -> sp.csr_matrix:
        """Build ``user_items`` (n_users, n_items) from an interaction frame.

        Parameters
        ----------
        df : pandas.DataFrame
            Columns ``user_id``, ``item_id`` and, for ``binary=False``, ``rating``.
        binary : bool
            True: every interaction is 1.0 (duplicate pairs count once). False: the ``rating``
            value; zero ratings are not stored (so they do not count as interactions).

        Returns
        -------
        scipy.sparse.csr_matrix
            float32 (n_users, n_items), sorted indices, no duplicate entries. Rows whose user or
            item is unknown to this Dataset are dropped; their number is logged (warning).

        Raises
        ------
        ValueError
            Missing columns; ``binary=False`` without ``rating``; ``binary=False`` with duplicate
            (user_id, item_id) pairs (call :func:`drop_duplicate_interactions` first).
        """
        need = ["user_id", "item_id"] + ([] if binary else ["rating"])
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise ValueError(
                f"df lacks column(s) {missing} needed for binary={binary}; got {list(df.columns)}"
            )
        rows = self.user_indices(df["user_id"].to_numpy())
        cols = self.item_indices(df["item_id"].to_numpy())
        known = (rows >= 0) & (cols >= 0)
        n_unknown = int(len(df) - np.count_nonzero(known))
        if n_unknown:
            logger.warning(
                "to_user_items: %d of %d rows dropped (%d unknown user ids, %d unknown item ids)",
                n_unknown, len(df), int(np.count_nonzero(rows < 0)),
                int(np.count_nonzero(cols < 0)),
            )
        rows, cols = rows[known], cols[known]
        shape = (self.n_users, self.n_items)
        if binary:
            data = np.ones(len(rows), dtype=np.float32)
            mat = sp.csr_matrix((data, (rows, cols)), shape=shape)
            mat.sum_duplicates()
            mat.data[:] = 1.0
        else:
            key = rows.astype(np.int64) * self.n_items + cols
            if np.unique(key).size != key.size:
                raise ValueError(
                    f"df holds {key.size - np.unique(key).size} duplicate (user_id, item_id) "
                    "pairs; with binary=False each pair needs one rating: call "
                    "drop_duplicate_interactions(df) first"
                )
            data = df["rating"].to_numpy(dtype=np.float32)[known]
            mat = sp.csr_matrix((data, (rows, cols)), shape=shape)
            mat.eliminate_zeros()
        mat.sort_indices()
        return mat


def build_dataset(df: pd.DataFrame) -> Dataset:
    """Id maps from every user and item in ``df``.

    Ids are sorted so the same data always gives the same indices: numerically when every id is
    a string of ASCII digits (MovieLens: ``user_index = int(user_id) - 1``), else as text.

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``user_id`` and ``item_id``. Build from the full log (before splitting) so test
        users and items have indices.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        ``df`` lacks ``user_id`` or ``item_id``, or is empty.
    """
    missing = [c for c in ("user_id", "item_id") if c not in df.columns]
    if missing:
        raise ValueError(
            f"df lacks column(s) {missing}; got {list(df.columns)}; load it with load_interactions"
        )
    if len(df) == 0:
        raise ValueError("df is empty; build_dataset needs at least one interaction")
    return Dataset(_sorted_unique_ids(df["user_id"]), _sorted_unique_ids(df["item_id"]))
