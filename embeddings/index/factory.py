"""Pure functions that pick a FAISS index factory string under a memory budget,
and the input checks ``embeddings.index.video_index.VideoIndex`` shares.

Nothing here touches faiss: ``choose_factory`` ranks factory strings with a short
reason each, ``estimate_memory_bytes`` gives the memory model behind the ranking,
and ``parse_size`` reads budgets such as ``"4G"``. The approach follows autofaiss
(pure functions returning ranked factory strings) but raises instead of returning
None when nothing fits, and says why each candidate was chosen.

Memory model (bytes, approximate, resident index only; source: faiss wiki
"Guidelines to choose an index" and the storage layouts in faiss/IndexFlat.h,
IndexHNSW.h, IndexIVF.h, impl/ProductQuantizer.h):

=====================  ==============================================================
``Flat``               ``n * (4*d + 8)``  (float32 vectors + int64 id map)
``HNSW{M},Flat``       ``n * (4*d + 8*M + 8)``  (level-0 graph has 2*M int32 links)
``IVF{nlist},Flat``    ``n * (4*d + 8) + 4*d*nlist``  (vectors + int64 ids + centroids)
``IVF{nlist},SQ8``     ``n * (d + 8) + 4*d*nlist``
``IVF{nlist},PQ{m}x8`` ``n * (m + 8) + 4*d*nlist + 4*256*d``  (codes + ids + codebooks)
=====================  ==============================================================
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "FLAT_MAX_VECTORS",
    "choose_factory",
    "default_nlist",
    "estimate_memory_bytes",
    "format_bytes",
    "parse_size",
    "validate_embeddings",
    "validate_ids",
    "normalize_metadata",
    "parse_search_params",
    "check_encoder",
]

#: Below this many vectors exact (``Flat``) search is ranked first: a brute-force
#: scan of 50k x 512 float32 is ~100 MB and a few milliseconds per query batch.
FLAT_MAX_VECTORS = 50_000

#: faiss k-means warns under 39 training points per centroid (faiss/Clustering.cpp).
MIN_POINTS_PER_CENTROID = 39

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGTP]?)(I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Parse a human size such as ``"4G"`` into bytes.

    Parameters
    ----------
    text : str or int
        A number with an optional unit ``K``, ``M``, ``G``, ``T``, ``P``, optionally
        followed by ``B`` or ``iB`` (case-insensitive, spaces allowed). Units are binary:
        ``"1K" == "1KB" == "1KiB" == 1024`` (memory budgets are RAM, counted in powers
        of two). A bare number (or a non-negative int) is bytes.

    Returns
    -------
    int
        Size in bytes, e.g. ``"4G" -> 4 * 1024**3``, ``"1.5GB" -> 1610612736``.

    Raises
    ------
    ValueError
        If ``text`` is not a size, is negative, or denotes a fractional number of bytes.
    """
    if isinstance(text, bool):
        raise ValueError(f"size: got bool {text!r}; expected a string like '4G' or a byte count")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size: got {text}; expected a non-negative number of bytes")
        return text
    if not isinstance(text, str):
        raise ValueError(
            f"size: got {type(text).__name__} {text!r}; expected a string like '4G', '512M', "
            "'1.5GB' or '100000' (bytes)"
        )
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(
            f"size: could not parse {text!r}; expected a number with an optional unit "
            "K/M/G/T/P (binary, optional 'B' or 'iB'), e.g. '4G', '512M', '1.5GB', '100000'"
        )
    number, unit, suffix = match.groups()
    if suffix is not None and suffix.upper() == "IB" and not unit:
        raise ValueError(f"size: {text!r} has 'iB' without a unit prefix; write e.g. '4GiB'")
    value = float(number) * _UNITS[unit.upper()]
    if value != math.floor(value):
        raise ValueError(
            f"size: {text!r} is {value} bytes, not a whole number of bytes; use a larger unit "
            "or an integer"
        )
    return int(value)


def format_bytes(n_bytes: float) -> str:
    """Format a byte count for humans with binary units (``1536 -> '1.5 KiB'``)."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def default_nlist(n_vectors: int) -> int:
    """Number of IVF lists: the power of two nearest ``4 * sqrt(n)``.

    Capped so that every centroid gets at least 39 training points (faiss warns below
    that) and floored at 1. Source: faiss wiki "Guidelines to choose an index"
    (``nlist`` between ``4*sqrt(n)`` and ``16*sqrt(n)``).
    """
    if n_vectors <= 0:
        return 1
    target = 4.0 * math.sqrt(n_vectors)
    nlist = 2 ** max(0, round(math.log2(target)))
    cap = max(1, n_vectors // MIN_POINTS_PER_CENTROID)
    while nlist > cap and nlist > 1:
        nlist //= 2
    return int(nlist)


_FACTORY_PATTERNS = [
    (re.compile(r"^Flat$"), "flat"),
    (re.compile(r"^HNSW(\d+)(?:,Flat)?$"), "hnsw"),
    (re.compile(r"^IVF(\d+),Flat$"), "ivfflat"),
    (re.compile(r"^IVF(\d+),SQ8$"), "ivfsq8"),
    (re.compile(r"^IVF(\d+),PQ(\d+)(?:x8)?$"), "ivfpq"),
]


def estimate_memory_bytes(factory_string: str, n_vectors: int, dim: int) -> int | None:
    """Approximate resident memory of an index (see the module table for formulas).

    Parameters
    ----------
    factory_string : str
        One of the shapes ``Flat``, ``HNSW{M}[,Flat]``, ``IVF{nlist},Flat``,
        ``IVF{nlist},SQ8``, ``IVF{nlist},PQ{m}[x8]``.
    n_vectors, dim : int
        Number of vectors and their dimension.

    Returns
    -------
    int or None
        Bytes, or None for factory strings outside the table (no estimate).
    """
    for pattern, kind in _FACTORY_PATTERNS:
        match = pattern.match(factory_string.replace(" ", ""))
        if match is None:
            continue
        n, d = int(n_vectors), int(dim)
        if kind == "flat":
            return n * (4 * d + 8)
        if kind == "hnsw":
            return n * (4 * d + 8 * int(match.group(1)) + 8)
        nlist = int(match.group(1))
        if kind == "ivfflat":
            return n * (4 * d + 8) + 4 * d * nlist
        if kind == "ivfsq8":
            return n * (d + 8) + 4 * d * nlist
        m = int(match.group(2))
        return n * (m + 8) + 4 * d * nlist + 4 * 256 * d
    return None


def _pq_sizes(dim: int) -> list[int]:
    return [m for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1) if m <= dim and dim % m == 0]


def choose_factory(
    n_vectors: int, dim: int, *, max_memory_bytes: int | str | None = None, metric: str = "ip",
    nlist: int | None = None,
) -> list[tuple[str, str]]:
    """Rank FAISS factory strings for ``n_vectors`` vectors of dimension ``dim``.

    Rules (simple and sound rather than tuned):

    1. ``n < 50,000``: ``Flat`` first (exact, brute force is fast at this size).
    2. Otherwise, among candidates whose estimated memory fits the budget:
       ``HNSW32,Flat`` (no training, high recall), ``IVF{nlist},Flat``,
       ``IVF{nlist},SQ8``, ``IVF{nlist},PQ{m}x8`` (``m`` the largest of 64, 48, 32, ...
       dividing ``dim`` that fits), then ``Flat`` (exact but O(n*d) per query).
    3. IVF candidates need ``n >= 39 * nlist`` and PQ ``n >= 39 * 256`` training
       vectors; ``nlist`` is :func:`default_nlist` (~``4*sqrt(n)``).

    Parameters
    ----------
    n_vectors : int
        Number of vectors to index (>= 0).
    dim : int
        Vector dimension (>= 1).
    max_memory_bytes : int, str or None
        Budget for the resident index; a string is read with :func:`parse_size`.
        None means no limit.
    metric : {"ip", "l2"}
        Accepted for API symmetry; every candidate supports both metrics.
    nlist : int, optional
        IVF list count for the IVF candidates instead of :func:`default_nlist` (a smaller
        ``nlist`` trains faster on few cores at the cost of more vectors scanned per probe).

    Returns
    -------
    list of (str, str)
        ``(factory_string, reason)`` best first; each reason states the estimated memory.

    Raises
    ------
    ValueError
        On invalid arguments, or when no candidate fits ``max_memory_bytes`` (the
        message names the smallest estimate and the budget).
    """
    if isinstance(n_vectors, bool) or not isinstance(n_vectors, int) or n_vectors < 0:
        raise ValueError(f"n_vectors: got {n_vectors!r}; expected an int >= 0")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim: got {dim!r}; expected an int >= 1")
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric: got {metric!r}; expected 'ip' or 'l2'")
    budget = None if max_memory_bytes is None else parse_size(max_memory_bytes)
    n, d = n_vectors, dim
    if nlist is not None and (isinstance(nlist, bool) or not isinstance(nlist, int) or nlist < 1):
        raise ValueError(f"nlist: got {nlist!r}; expected a positive int or None (default ~4*sqrt(n))")
    nlist = default_nlist(n) if nlist is None else nlist
    ivf_ok = n >= MIN_POINTS_PER_CENTROID * nlist and nlist >= 2
    pq_ok = ivf_ok and n >= MIN_POINTS_PER_CENTROID * 256

    def fits(factory: str) -> bool:
        return budget is None or estimate_memory_bytes(factory, n, d) <= budget

    def mem(factory: str) -> str:
        return f"~{format_bytes(estimate_memory_bytes(factory, n, d))}"

    candidates: list[tuple[str, str]] = []
    flat_reason = (
        f"exact search; {n} vectors < {FLAT_MAX_VECTORS} so brute force is fast; {mem('Flat')}"
        if n < FLAT_MAX_VECTORS
        else f"exact but scans all {n} vectors per query (O(n*d)); {mem('Flat')}"
    )
    if n < FLAT_MAX_VECTORS:
        candidates.append(("Flat", flat_reason))
    candidates.append(("HNSW32,Flat", f"graph search, no training, high recall; {mem('HNSW32,Flat')}"))
    if ivf_ok:
        f = f"IVF{nlist},Flat"
        candidates.append((f, f"inverted lists, nlist={nlist} ~ 4*sqrt(n); exact vectors; {mem(f)}"))
        f = f"IVF{nlist},SQ8"
        candidates.append((f, f"nlist={nlist}, 8-bit scalar quantizer (4x smaller); {mem(f)}"))
    if pq_ok:
        sizes = _pq_sizes(d)
        m = next((m for m in sizes if fits(f"IVF{nlist},PQ{m}x8")), sizes[-1])
        f = f"IVF{nlist},PQ{m}x8"
        candidates.append(
            (f, f"nlist={nlist}, product quantizer {m} bytes/vector (tight budget); {mem(f)}")
        )
    if n >= FLAT_MAX_VECTORS:
        candidates.append(("Flat", flat_reason))
    ranked = [(f, r) for f, r in candidates if fits(f)]
    if not ranked:
        smallest = min(candidates, key=lambda c: estimate_memory_bytes(c[0], n, d))
        raise ValueError(
            f"max_memory_bytes: {format_bytes(budget)} is too small for {n} vectors of dim {d}; "
            f"the smallest candidate {smallest[0]!r} needs {mem(smallest[0])}. Fix: raise the "
            "budget, reduce the vectors, or pass an explicit factory_string such as "
            f"'IVF{nlist},PQ{_pq_sizes(d)[-1]}x8'"
        )
    return ranked


# ------------------------------------------------------------------------------------------
# Input checks shared by VideoIndex (kept here so embeddings/index/video_index.py stays small).
# ------------------------------------------------------------------------------------------

#: Rows of an ``"ip"`` index must have ``| ||x|| - 1 | <= NORM_TOLERANCE``.
NORM_TOLERANCE = 1e-3
_SEARCH_KNOBS = ("nprobe", "max_codes", "efSearch", "quantizer_efSearch")


def _rows(mask, limit: int = 10) -> str:
    rows = np.flatnonzero(mask)
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{rows[:limit].tolist()}{more}"


def validate_embeddings(embeddings, dim: int | None, *, metric: str = "ip",
                        check_norm: bool = True, name: str = "embeddings") -> np.ndarray:
    """Return ``embeddings`` as a C-contiguous float32 ``(n, d)`` array or raise ValueError.

    Checks: 2-D, floating dtype (float16/32/64; cast to float32), ``d == dim`` when
    ``dim`` is given (message names both and the likely cause), every value finite
    (message names the offending row numbers), and for ``metric="ip"`` with
    ``check_norm`` unit L2 norm per row (tolerance :data:`NORM_TOLERANCE`).
    """
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"{name}: got shape {x.shape}; expected a 2-D array (n, d)"
                         + ("; use x[None, :] for one vector" if x.ndim == 1 else ""))
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: got dtype {x.dtype}; expected float32 (or another float type)")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(
            f"{name}: got dimension {x.shape[1]}, but the index has dimension {dim}. The index "
            "was probably built with a different encoder; encode with the same model as the "
            "index (see its manifest 'encoder') or rebuild the index with this encoder")
    x = np.ascontiguousarray(x, dtype=np.float32)  # no copy for C-contiguous float32/memmap
    want_norm = check_norm and metric == "ip"
    if not want_norm and len(x) <= 1024 and np.isfinite(x).all():
        return x  # fast path for query batches (one reduction)
    chunk = 65_536  # bounded temporaries for large (memory-mapped) inputs
    bad = np.zeros(len(x), dtype=bool)
    norms = np.ones(len(x), dtype=np.float32)
    for s in range(0, len(x), chunk):
        part = x[s:s + chunk]
        bad[s:s + chunk] = ~np.isfinite(part).all(axis=1)
        if want_norm:
            norms[s:s + chunk] = np.sqrt(np.einsum("ij,ij->i", part, part))
    if bad.any():
        raise ValueError(f"{name}: rows {_rows(bad)} contain NaN or inf; drop or re-encode them")
    if want_norm and len(x):
        off = np.abs(norms - 1.0) > NORM_TOLERANCE
        if off.any():
            raise ValueError(
                f"{name}: rows {_rows(off)} are not L2-normalised (norms e.g. "
                f"{norms[off][:3].round(4).tolist()}); metric='ip' means cosine on unit vectors. "
                "Fix: x / np.linalg.norm(x, axis=1, keepdims=True), metric='l2', or "
                "check_norm=False for maximum inner product search")
    return x


def validate_ids(ids, n: int) -> list[str]:
    """Return ``ids`` as a list of ``n`` unique non-empty strings or raise ValueError."""
    if isinstance(ids, str):
        raise ValueError(f"ids: got the single string {ids!r}; expected a sequence of strings")
    id_list = list(ids)
    if len(id_list) != n:
        raise ValueError(f"ids: got {len(id_list)} ids for {n} embedding rows; expected one "
                         "id per row")
    bad = [i for i, v in enumerate(id_list) if not isinstance(v, str) or not v]
    if bad:
        raise ValueError(f"ids: positions {bad[:10]} are not non-empty strings (e.g. "
                         f"{id_list[bad[0]]!r}); convert ids with str() first")
    id_list = [str(v) for v in id_list]
    if len(set(id_list)) != n:
        seen, dups = set(), []
        for v in id_list:
            if v in seen:
                dups.append(v)
            seen.add(v)
        raise ValueError(f"ids: {len(dups)} duplicates (e.g. {sorted(set(dups))[:5]}); "
                         "every video_id must be unique")
    return id_list


def normalize_metadata(metadata, id_list: list[str]) -> pd.DataFrame:
    """Metadata aligned with ``id_list``: ``video_id`` first, bool ``synthetic`` (default False).

    Raises ValueError if the row count differs, a ``video_id`` column disagrees with the
    ids, or ``synthetic`` is not boolean.
    """
    if metadata is None:
        return pd.DataFrame({"video_id": pd.Series(id_list, dtype=str),
                             "synthetic": np.zeros(len(id_list), dtype=bool)})
    if not isinstance(metadata, pd.DataFrame):
        raise ValueError(f"metadata: got {type(metadata).__name__}; expected a pandas DataFrame")
    if len(metadata) != len(id_list):
        raise ValueError(f"metadata: got {len(metadata)} rows for {len(id_list)} ids; expected "
                         "one row per id, in the same order")
    meta = metadata.reset_index(drop=True).copy()
    if "video_id" in meta.columns:
        given = meta["video_id"].astype(str).tolist()
        if given != id_list:
            first = next(i for i, (a, b) in enumerate(zip(given, id_list, strict=True)) if a != b)
            raise ValueError(f"metadata: video_id column differs from ids at row {first} "
                             f"({given[first]!r} vs {id_list[first]!r}); align the rows or "
                             "drop the column")
        meta = meta.drop(columns="video_id")
    meta.insert(0, "video_id", pd.Series(id_list, dtype=str))
    if "synthetic" not in meta.columns:
        meta["synthetic"] = False
    elif not pd.api.types.is_bool_dtype(meta["synthetic"]):
        raise ValueError(f"metadata: 'synthetic' has dtype {meta['synthetic'].dtype}; expected "
                         "bool (True for generated clips)")
    return meta


def parse_search_params(text: str | None) -> dict[str, float]:
    """Parse ``"nprobe=16,efSearch=64"`` into ``{"nprobe": 16, "efSearch": 64}``.

    Raises ValueError on malformed text, unknown names (allowed: ``nprobe``,
    ``max_codes``, ``efSearch``, ``quantizer_efSearch``) or non-positive integers.
    """
    if text is None or text == "":
        return {}
    if not isinstance(text, str):
        raise ValueError(f"search_params: got {type(text).__name__}; expected a string such as "
                         "'nprobe=16,efSearch=64'")
    out = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in _SEARCH_KNOBS or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"search_params: cannot use {part.strip()!r} in {text!r}; expected "
                             f"name=positive_int with name in {list(_SEARCH_KNOBS)}")
        out[name] = int(value)
    return out


def check_encoder(saved: dict | None, expected: dict | None, where) -> None:
    """Raise ValueError if ``expected`` and ``saved`` encoders differ in model/pretrained/embed_dim."""
    if expected is None:
        return
    if saved is None:
        logger.warning("%s: no encoder recorded in the manifest; cannot check expected_encoder",
                       where)
        return
    diffs = [f"{key}: index {saved.get(key)!r} vs expected {expected.get(key)!r}"
             for key in ("model", "pretrained", "embed_dim")
             if key in expected and saved.get(key) != expected.get(key)]
    if diffs:
        raise ValueError(f"expected_encoder does not match the index in {where} ({'; '.join(diffs)})"
                         ". Queries from this encoder would be meaningless here; load the "
                         "matching encoder or rebuild the index with this one")
