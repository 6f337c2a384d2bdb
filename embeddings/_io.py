"""Atomic file and folder writes shared by every stage.

Readers must never see a half-written file: everything is written to a temporary
name in the same folder and renamed into place (``os.replace`` is atomic on POSIX
when source and target are on the same filesystem).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_dir",
    "write_json",
    "save_npy",
    "write_parquet",
    "file_sha256",
    "json_default",
    "json_ready",
    "dumps_strict",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it to ``path`` on success.

    Parameters
    ----------
    path : path-like
        Final folder.
    overwrite : bool
        If ``path`` exists it is replaced (the old folder is removed only after the
        new one is complete). If False and it exists, ``FileExistsError`` is raised.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True or choose another folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_strict(obj, indent=2) + "\n", encoding="utf-8")


def json_ready(obj: Any) -> Any:
    """``obj`` with every value a strict JSON parser accepts (RFC 8259: no NaN or Infinity).

    Containers are copied recursively (tuples and sets become lists); numpy scalars and arrays
    become Python values; ``NaN``, ``±inf``, ``pandas.NA`` and ``NaT`` become ``None`` (JSON
    ``null``: a missing value); a float column value that is integral stays a float (callers
    that mean an integer convert it where they know the column).

    Returns
    -------
    Any
        A structure of dict/list/str/int/float/bool/None, plus any value left for
        :func:`json_default` (paths).
    """
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else str(json_ready(k))): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_ready(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    with contextlib.suppress(TypeError, ValueError):
        import pandas as pd

        if pd.isna(obj):  # pandas.NA, NaT
            return None
    return obj


def dumps_strict(obj: Any, *, default=None, **kwargs) -> str:
    """``json.dumps`` that only writes strict JSON: :func:`json_ready`, ``allow_nan=False``.

    Every JSON file and ``--json`` document of the project goes through it, so that strict
    parsers (JavaScript's ``JSON.parse``, ``json.loads(..., parse_constant=...)`` raising) read
    it; missing values are ``null``. ``default`` replaces :func:`json_default` as the fallback
    for other types; ``kwargs`` go to :func:`json.dumps` (``indent``, ...).

    Raises
    ------
    TypeError
        For a value that :func:`json_default` cannot write.
    """
    return json.dumps(json_ready(obj), allow_nan=False, default=default or json_default, **kwargs)


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` fallback: numpy scalars and arrays to Python, paths to str, dates to ISO 8601.

    Raises
    ------
    TypeError
        For any other type.
    """
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (datetime.date, datetime.time)):  # pandas.Timestamp included
        return o.isoformat()
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically (never pickled)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array), allow_pickle=False)


def write_parquet(path: str | os.PathLike, df) -> None:
    """Write a pandas DataFrame to Parquet atomically (pyarrow engine, no index)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, engine="pyarrow", index=False)


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file, read in ``chunk_bytes`` chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
