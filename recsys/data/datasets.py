"""Public recommendation datasets: verified download from the official source, or a local copy.

Every loader returns the canonical interaction frame of :mod:`recsys.data.interactions` (``user_id``,
``item_id`` as the dataset's own external ids in str, ``rating`` float64, ``timestamp`` int64
seconds) plus dataset-specific columns named below, and never renumbers ids.

==================  =====================================================  ========================
name                official source (file)                                 checksum
==================  =====================================================  ========================
ml-100k             files.grouplens.org ml-100k.zip (``u.data``: tab)       md5, GroupLens ``.md5``
ml-1m               ml-1m.zip (``ratings.dat``: ``::``)                    md5, GroupLens ``.md5``
ml-10m              ml-10m.zip (``ml-10M100K/ratings.dat``: ``::``)        md5, GroupLens ``.md5``
ml-20m / ml-25m     ml-20m.zip / ml-25m.zip (``ratings.csv``)              md5, GroupLens ``.md5``
ml-latest-small     ml-latest-small.zip (``ratings.csv``)                  fetched from its ``.md5``
                                                                           (GroupLens updates it)
kuairec             zenodo.org record 18164998 ``KuaiRec.zip``             md5 from Zenodo's record
                                                                           API at download time
kuairand-pure/1k    zenodo.org record 10439422 ``KuaiRand-*.tar.gz``       md5 from Zenodo's record
                                                                           API at download time
microlens-100k      recsys.westlake.edu.cn ``MicroLens-100k_pairs.csv``    none published: pass
                                                                           ``sha256=`` yourself
==================  =====================================================  ========================

The MovieLens md5 values are the ones GroupLens publishes beside each archive
(``<url>.md5``). A download is streamed to a temporary file in the target folder, hashed,
compared, and only then renamed into place (and unpacked into a temporary folder that is
renamed), so an interrupted or corrupted download never looks complete. When no checksum is
known the download refuses instead of trusting the bytes.

KuaiRec has no like signal; its README suggests ``like = 1 if watch_ratio > 2.0``, which
:func:`load_kuairec` applies with ``like_threshold=2.0`` (strictly greater).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.interactions import drop_duplicate_interactions, load_interactions
from recsys.data.side import ItemDataError, load_item_features, load_item_text, read_sequences

__all__ = ["SOURCES", "Source", "download", "load_movielens", "load_movielens_items",
           "load_kuairec", "load_kuairec_items", "load_kuairand", "load_microlens", "load_log",
           "KUAIREC_LIKE_THRESHOLD", "ShortVideoData", "load_dataset", "load_microlens_50k",
           "load_tiktok_mmssl", "DATASETS"]

logger = logging.getLogger(__name__)

KUAIREC_LIKE_THRESHOLD = 2.0

_ML = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and how its bytes are verified.

    Attributes
    ----------
    url : str
        Official download URL.
    filename : str
        Name of the downloaded file.
    md5 : str or None
        Published md5 of the file, when a fixed one exists.
    md5_url : str or None
        URL of a published ``.md5`` text file (first token = md5).
    zenodo_record : str or None
        Zenodo record id whose API lists each file's published md5.
    folder : str
        Folder (inside ``root``) that holds the unpacked data.
    """

    url: str
    filename: str
    md5: str | None = None
    md5_url: str | None = None
    zenodo_record: str | None = None
    folder: str = ""


SOURCES: dict[str, Source] = {
    "ml-100k": Source(_ML + "ml-100k.zip", "ml-100k.zip", md5="0e33842e24a9c977be4e0107933c0723",
                      folder="ml-100k"),
    "ml-1m": Source(_ML + "ml-1m.zip", "ml-1m.zip", md5="c4d9eecfca2ab87c1945afe126590906",
                    folder="ml-1m"),
    "ml-10m": Source(_ML + "ml-10m.zip", "ml-10m.zip", md5="ce571fd55effeba0271552578f2648bd",
                     folder="ml-10M100K"),
    "ml-20m": Source(_ML + "ml-20m.zip", "ml-20m.zip", md5="cd245b17a1ae2cc31bb14903e1204af3",
                     folder="ml-20m"),
    "ml-25m": Source(_ML + "ml-25m.zip", "ml-25m.zip", md5="6b51fb2759a8657d3bfcbfc42b592ada",
                     folder="ml-25m"),
    "ml-latest-small": Source(_ML + "ml-latest-small.zip", "ml-latest-small.zip",
                              md5_url=_ML + "ml-latest-small.zip.md5", folder="ml-latest-small"),
    "kuairec": Source("https://zenodo.org/records/18164998/files/KuaiRec.zip", "KuaiRec.zip",
                      zenodo_record="18164998", folder="KuaiRec"),
    "kuairand-pure": Source("https://zenodo.org/records/10439422/files/KuaiRand-Pure.tar.gz",
                            "KuaiRand-Pure.tar.gz", zenodo_record="10439422",
                            folder="KuaiRand-Pure"),
    "kuairand-1k": Source("https://zenodo.org/records/10439422/files/KuaiRand-1K.tar.gz",
                          "KuaiRand-1K.tar.gz", zenodo_record="10439422", folder="KuaiRand-1K"),
    "microlens-100k": Source(
        "https://recsys.westlake.edu.cn/MicroLens-100k-Dataset/MicroLens-100k_pairs.csv",
        "MicroLens-100k_pairs.csv", folder="MicroLens-100k"),
    # URL by analogy with the 100k file on the MicroLens download page (not fetched from here: no
    # network on the development machines); no checksum is published, so --sha256 is required
    "microlens-50k": Source(
        "https://recsys.westlake.edu.cn/MicroLens-50k-Dataset/MicroLens-50k_pairs.tsv",
        "MicroLens-50k_pairs.tsv", folder="microlens-50k"),
}


def _urlopen(url: str, timeout: float = 60.0):
    """The single network call (tests replace it)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - https URLs from SOURCES


def _read_small(url: str) -> bytes:
    with _urlopen(url) as resp:
        return resp.read(1 << 20)


def _published_md5(name: str, src: Source) -> str | None:
    if src.md5:
        return src.md5
    if src.md5_url:
        return _read_small(src.md5_url).decode("ascii", "replace").split()[0].lower()
    if src.zenodo_record:
        meta = json.loads(_read_small(f"https://zenodo.org/api/records/{src.zenodo_record}"))
        for f in meta.get("files", []):
            if f.get("key") == src.filename and str(f.get("checksum", "")).startswith("md5:"):
                return f["checksum"][4:].lower()
        raise ValueError(f"{name}: Zenodo record {src.zenodo_record} lists no md5 for "
                         f"{src.filename}; pass sha256= or md5= yourself")
    return None


def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, root: str | os.PathLike, *, md5: str | None = None,
             sha256: str | None = None) -> Path:
    """Download dataset ``name`` into ``root``, verify it, unpack it; return its data folder.

    Nothing is fetched when the unpacked folder already exists. A file already at
    ``root / SOURCES[name].filename`` (fetched by hand on an offline machine) is verified and
    unpacked instead of downloading.

    Parameters
    ----------
    name : str
        A key of :data:`SOURCES`.
    root : path-like
        Where the archive and the unpacked folder go (created if missing).
    md5, sha256 : str, optional
        Expected hex digest; overrides the published one (needed where none is published).

    Returns
    -------
    pathlib.Path
        ``root / SOURCES[name].folder``.

    Raises
    ------
    ValueError
        Unknown ``name``; no checksum known or given; checksum mismatch (the partial file is
        deleted); an archive member that would unpack outside ``root``.
    ConnectionError
        The source cannot be reached: names the URL to fetch by hand and the path to put it at.
    OSError
        Disk errors.
    """
    if name not in SOURCES:
        raise ValueError(f"dataset {name!r} is unknown; known: {sorted(SOURCES)}")
    src = SOURCES[name]
    root = Path(root)
    target = root / src.folder
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    algo, expected = ("sha256", sha256.lower()) if sha256 else ("md5", (md5 or "").lower() or None)
    by_hand = root / src.filename
    if expected is None:
        try:
            expected = _published_md5(name, src)
        except OSError as exc:
            raise ConnectionError(_offline(name, src, root, exc, checksum=True)) from exc
    if not expected:
        raise ValueError(f"{name}: no published checksum is known for {src.url}; download it "
                         f"yourself to {by_hand} and pass sha256=... (CLI: recsys data download "
                         f"{name} --root {root} --sha256 HEX), or load the local copy with root=")
    if by_hand.is_file():  # fetched by hand (offline machines): verify it, then unpack
        got = _hash_file(by_hand, algo)
        if got != expected:
            raise ValueError(f"{name}: {algo} of {by_hand} is {got}, expected {expected} "
                             f"(published for {src.url}); fetch it again")
        _unpack(by_hand, root, target)
        return target
    fd, tmp_name = tempfile.mkstemp(prefix=f".{src.filename}.", dir=root)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                resp = _urlopen(src.url)
            except OSError as exc:  # URLError, timeouts, DNS failures: offline
                raise ConnectionError(_offline(name, src, root, exc)) from exc
            with resp:
                logger.info("downloading %s from %s", name, src.url)
                shutil.copyfileobj(resp, out, length=1 << 20)
        got = _hash_file(tmp, algo)
        if got != expected:
            raise ValueError(f"{name}: {algo} of the download is {got}, expected {expected} "
                             f"(published for {src.url}); the file was deleted, try again")
        archive = root / src.filename
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)
    _unpack(archive, root, target)
    return target


def _offline(name: str, src: Source, root: Path, exc: Exception, *, checksum: bool = False) -> str:
    what = "its published checksum" if checksum else src.url
    return (f"{name}: cannot reach {what} ({exc}); fetch {src.url} by hand (browser, another "
            f"machine) and put it at {root / src.filename}, then rerun the same command"
            + (" with --sha256 HEX (or --md5)" if checksum else "") + "; it is verified and "
            "unpacked from there")


def _unpack(archive: Path, root: Path, target: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=".unpack.", dir=root))
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                names = zf.namelist()
                _check_members(names, work)
                zf.extractall(work)
        elif archive.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(archive) as tf:
                _check_members(tf.getnames(), work)
                tf.extractall(work, filter="data")
        else:  # a plain file (MicroLens pairs): it is the data
            (work / target.name).mkdir()
            shutil.copy2(archive, work / target.name / archive.name)
        produced = work / target.name
        if not produced.exists():  # archive without a top folder
            produced = work
        os.replace(produced, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_members(names, work: Path) -> None:
    base = work.resolve()
    for n in names:
        if not (work / n).resolve().is_relative_to(base):
            raise ValueError(f"archive member {n!r} would unpack outside {work}; refusing")


def _folder(name: str, root, do_download: bool) -> Path:
    """``root/<folder>`` if it exists, else ``root`` itself if it holds files, else download."""
    root = Path(root)
    sub = root / SOURCES[name].folder
    if sub.is_dir():
        return sub
    if root.is_dir() and any(p.is_file() for p in root.iterdir()):
        return root
    if do_download:
        return download(name, root)
    raise FileNotFoundError(f"{name}: no local copy under {str(root)!r}; pass download=True to "
                            f"fetch {SOURCES[name].url} (verified), or point root= at the folder")


_ML_RATINGS = {
    "ml-100k": ("u.data", "\t", False),
    "ml-1m": ("ratings.dat", "::", False),
    "ml-10m": ("ratings.dat", "::", False),
    "ml-20m": ("ratings.csv", ",", True),
    "ml-25m": ("ratings.csv", ",", True),
    "ml-latest-small": ("ratings.csv", ",", True),
}


def _ml_name(variant: str) -> str:
    name = variant if variant.startswith("ml-") else f"ml-{variant}"
    name = name.lower()
    if name not in _ML_RATINGS:
        raise ValueError(f"variant={variant!r}: expected one of {sorted(_ML_RATINGS)} (or without "
                         "'ml-')")
    return name


def load_movielens(variant: str, root, *, download: bool = False) -> pd.DataFrame:
    """MovieLens ratings in their official format.

    Parameters
    ----------
    variant : str
        ``"100k"``, ``"1m"``, ``"10m"``, ``"20m"``, ``"25m"`` or ``"latest-small"`` (``ml-``
        prefix optional).
    root : path-like
        The unpacked folder itself (holding ``u.data`` / ``ratings.dat`` / ``ratings.csv``) or
        its parent.
    download : bool
        Fetch and verify the official archive when no local copy is found.

    Returns
    -------
    pandas.DataFrame
        ``user_id, item_id, rating, timestamp`` (MovieLens ids as str, ratings 0.5-5).

    Raises
    ------
    ValueError
        Unknown variant; what :func:`download` raises.
    FileNotFoundError
        No local copy and ``download=False``.
    recsys.data.interactions.InteractionFileError
        Malformed rating file.
    """
    name = _ml_name(variant)
    folder = _folder(name, root, download)
    fname, sep, header = _ML_RATINGS[name]
    path = folder / fname
    if not path.is_file():
        raise FileNotFoundError(f"{name}: {fname} not found in {str(folder)!r}")
    if header:
        return load_interactions(path, sep=sep, columns={"userId": "user_id", "movieId": "item_id",
                                                         "rating": "rating",
                                                         "timestamp": "timestamp"})
    return load_interactions(path, sep=sep, columns=("user_id", "item_id", "rating", "timestamp"))


def load_movielens_items(variant: str, root, *, download: bool = False) -> pd.DataFrame:
    """MovieLens movies: ``item_id`` (str), ``title``, ``genres`` (``|``-joined names).

    ``u.item`` (100K) is latin-1 with 19 genre flags (names from ``u.genre``); ``movies.dat``
    (1M latin-1, 10M UTF-8) and ``movies.csv`` already hold ``genres``. Raises as
    :func:`load_movielens`.
    """
    name = _ml_name(variant)
    folder = _folder(name, root, download)
    if name == "ml-100k":
        genres = pd.read_csv(folder / "u.genre", sep="|", header=None, names=["g", "i"],
                             encoding="latin-1").dropna()["g"].tolist()
        raw = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1",
                          dtype=str)
        flags = raw.iloc[:, 5:5 + len(genres)].astype(int).to_numpy().astype(bool)
        names = np.array(genres, dtype=object)
        return pd.DataFrame({"item_id": raw[0].astype(str), "title": raw[1],
                             "genres": ["|".join(names[f]) for f in flags]})
    if name in ("ml-1m", "ml-10m"):
        enc = "latin-1" if name == "ml-1m" else "utf-8"
        raw = pd.read_csv(folder / "movies.dat", sep="::", header=None, engine="python",
                          names=["item_id", "title", "genres"], encoding=enc, dtype=str)
        return raw
    raw = pd.read_csv(folder / "movies.csv", dtype=str)
    return raw.rename(columns={"movieId": "item_id"})[["item_id", "title", "genres"]]


def load_kuairec(root, *, matrix: str = "small", like_threshold: float = KUAIREC_LIKE_THRESHOLD,
                 download: bool = False) -> pd.DataFrame:
    """KuaiRec 2.0 interactions (``small_matrix.csv``, fully observed, or ``big_matrix.csv``).

    Parameters
    ----------
    root : path-like
        The ``KuaiRec`` folder, its ``data`` subfolder, or their parent.
    matrix : str
        ``"small"`` (1,411 users x 3,327 videos) or ``"big"`` (7,176 x 10,728).
    like_threshold : float
        ``like = watch_ratio > like_threshold`` (the KuaiRec README's suggestion, 2.0).
    download : bool

    Returns
    -------
    pandas.DataFrame
        ``user_id, item_id`` (video_id), ``rating`` (= watch_ratio), ``timestamp`` (floor of
        the unix time; NaN times dropped, count logged), ``like`` (bool), then every other
        column of the file under its own name, so multi-behaviour labels stay available:
        ``watch_ratio``, ``play_duration`` and ``video_duration`` (ms), ``time`` (text),
        ``date`` (YYYYMMDD), and ``unix_time`` (the file's float ``timestamp``).

    Raises
    ------
    ValueError
        Unknown ``matrix``, or a file without ``user_id``, ``video_id``, ``timestamp`` or
        ``watch_ratio``.
    FileNotFoundError
        No local copy and ``download=False``.
    """
    if matrix not in ("small", "big"):
        raise ValueError(f"matrix={matrix!r}: expected 'small' or 'big'")
    folder = _folder("kuairec", root, download)
    path = _find(folder, f"{matrix}_matrix.csv")
    raw = pd.read_csv(path)
    missing = [c for c in ("user_id", "video_id", "timestamp", "watch_ratio") if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: column(s) {missing} missing (found {list(raw.columns)}); expected "
                         "KuaiRec's user_id,video_id,play_duration,video_duration,time,date,timestamp,"
                         "watch_ratio header; fix: pass the unmodified KuaiRec file")
    bad = raw["timestamp"].isna() | raw["watch_ratio"].isna()
    if bad.any():
        logger.warning("load_kuairec: %d of %d rows without timestamp or watch_ratio dropped",
                       int(bad.sum()), len(raw))
        raw = raw[~bad]
    df = pd.DataFrame({"user_id": raw["user_id"].astype(str).to_numpy(dtype=object),
                       "item_id": raw["video_id"].astype(str).to_numpy(dtype=object),
                       "rating": raw["watch_ratio"].to_numpy(dtype=np.float64),
                       "timestamp": np.floor(raw["timestamp"].to_numpy()).astype(np.int64),
                       "like": raw["watch_ratio"].to_numpy() > float(like_threshold)})
    for c in raw.columns:  # every feedback column of the file, under its own name
        if c not in ("user_id", "video_id", "timestamp"):
            df[c] = raw[c].to_numpy()
    df["unix_time"] = raw["timestamp"].to_numpy(dtype=np.float64)  # sub-second precision kept
    df.attrs["like_rule"] = f"watch_ratio > {float(like_threshold)}"
    return drop_duplicate_interactions(df, source=str(path))


def _find(folder: Path, fname: str) -> Path:
    for cand in (folder / fname, folder / "data" / fname):
        if cand.is_file():
            return cand
    hits = sorted(folder.rglob(fname))
    if not hits:
        raise FileNotFoundError(f"{fname} not found under {str(folder)!r}")
    return hits[0]


def load_kuairec_items(root) -> pd.DataFrame:
    """KuaiRec video side tables joined on ``item_id`` (= video_id, str).

    Reads ``kuairec_caption_category.csv`` (``caption``, ``manual_cover_text``, ``topic_tag``,
    three category levels; ``lineterminator='\\n'`` because captions hold carriage returns) and
    ``item_categories.csv`` (``feat``: list of tag ids, parsed to a list of int as ``tags``).

    Raises
    ------
    FileNotFoundError
        Neither table under ``root``.
    """
    folder = Path(root)
    cap_path = next(iter(sorted(folder.rglob("kuairec_caption_category.csv"))), None)
    cat_path = next(iter(sorted(folder.rglob("item_categories.csv"))), None)
    if cap_path is None and cat_path is None:
        raise FileNotFoundError(f"no kuairec_caption_category.csv or item_categories.csv under "
                                f"{str(folder)!r}")
    out = None
    if cap_path is not None:
        cap = pd.read_csv(cap_path, lineterminator="\n", dtype=str, keep_default_na=False)
        cap = cap.rename(columns={"video_id": "item_id"})
        out = cap
    if cat_path is not None:
        cat = pd.read_csv(cat_path, dtype=str)
        cat["tags"] = [json.loads(v) for v in cat["feat"]]
        cat = cat.rename(columns={"video_id": "item_id"})[["item_id", "tags"]]
        out = cat if out is None else out.merge(cat, on="item_id", how="outer")
    return out.sort_values("item_id", key=lambda s: s.astype(int)).reset_index(drop=True)


def load_kuairand(root, *, variant: str = "pure", download: bool = False) -> pd.DataFrame:
    """KuaiRand standard logs (``data/log_standard_*.csv`` of KuaiRand-Pure/-1K).

    Returns ``user_id, item_id`` (video_id), ``rating`` (= ``is_click``), ``timestamp``
    (``time_ms`` // 1000) and every other column of the logs under its own name, so that
    multi-behaviour labels stay available: ``time_ms``, ``date``, ``hourmin``, the feedback
    signals ``is_click``, ``is_like``, ``is_follow``, ``is_comment``, ``is_forward``,
    ``is_hate``, ``long_view``, ``play_time_ms``, ``duration_ms``, ``profile_stay_time``,
    ``comment_stay_time``, ``is_profile_enter``, and ``is_rand``, ``tab`` (whichever the files
    have; KuaiRand's README lists them). Random-exposure logs (``log_random_*``) are left out:
    load them with :func:`load_log`.

    Raises
    ------
    ValueError
        Unknown ``variant``, or logs without ``user_id``, ``video_id``, ``time_ms`` or
        ``is_click``.
    FileNotFoundError
        No standard log under ``root`` and ``download=False``.
    """
    name = f"kuairand-{variant.lower()}"
    if name not in SOURCES:
        raise ValueError(f"variant={variant!r}: expected 'pure' or '1k'")
    folder = _folder(name, root, download)
    files = sorted(folder.rglob("log_standard_*.csv"))
    if not files:
        raise FileNotFoundError(f"no log_standard_*.csv under {str(folder)!r}")
    parts = []
    for f in files:
        part = pd.read_csv(f)
        missing = [c for c in ("user_id", "video_id", "time_ms", "is_click") if c not in part.columns]
        if missing:
            raise ValueError(f"{f}: column(s) {missing} missing (found {list(part.columns)}); expected "
                             "KuaiRand's log_standard header (user_id,video_id,date,hourmin,time_ms,"
                             "is_click,...); fix: pass the unmodified KuaiRand files")
        parts.append(part)
    raw = pd.concat(parts, ignore_index=True)
    df = pd.DataFrame({"user_id": raw["user_id"].astype(str).to_numpy(dtype=object),
                       "item_id": raw["video_id"].astype(str).to_numpy(dtype=object),
                       "rating": raw["is_click"].to_numpy(dtype=np.float64),
                       "timestamp": (raw["time_ms"].to_numpy(dtype=np.int64) // 1000)})
    for c in raw.columns:  # every feedback column of the logs, under its own name
        if c not in ("user_id", "video_id"):
            df[c] = raw[c].to_numpy()
    return drop_duplicate_interactions(df, source=str(folder))


def load_microlens(root, *, download: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MicroLens pairs plus item side data (titles, cover and video paths where present).

    Pairs: ``MicroLens-*_pairs.csv`` (``user, item, timestamp``; header ``userID,videoID,
    timestamp`` or none) or ``MicroLens-*_pairs.tsv`` (``user<TAB>item item ...`` in time order;
    timestamp = position in the sequence). Titles: ``*title*.csv`` (``item, title``). Covers:
    ``covers/<item>.jpg``; videos: ``videos/<item>.mp4``.

    Returns
    -------
    (interactions, items) : tuple of pandas.DataFrame
        ``items``: ``item_id``, ``title`` (when found), ``cover_path``, ``video_path`` (None when
        the file is absent).

    Raises
    ------
    FileNotFoundError
        No pairs file under ``root`` and ``download=False``.
    """
    folder = _folder("microlens-100k", root, download)
    pairs = sorted(folder.rglob("MicroLens-*_pairs.csv")) + sorted(folder.rglob("*_pairs.tsv"))
    if not pairs:
        raise FileNotFoundError(f"no MicroLens *_pairs.csv/tsv under {str(folder)!r}")
    path = pairs[0]
    if path.suffix == ".csv":
        first = path.open(encoding="utf-8").readline()
        if first.strip().split(",")[0].strip().lower() in ("user", "userid", "user_id"):
            df = load_interactions(path, sep=",")
        else:
            df = load_interactions(path, sep=",", columns=("user_id", "item_id", "timestamp"))
    else:
        users, items, pos = [], [], []
        for line in path.open(encoding="utf-8"):
            if not line.strip():
                continue
            u, _, seq = line.rstrip("\n").partition("\t")
            ids = seq.split()
            users += [u] * len(ids)
            items += ids
            pos += list(range(len(ids)))
        df = drop_duplicate_interactions(pd.DataFrame({
            "user_id": pd.Series(users, dtype=object), "item_id": pd.Series(items, dtype=object),
            "rating": 1.0, "timestamp": np.asarray(pos, dtype=np.int64)}), source=str(path))
    item_ids = pd.unique(df["item_id"])
    items = pd.DataFrame({"item_id": item_ids})
    titles = sorted(folder.rglob("*title*.csv"))
    if titles:
        t = pd.read_csv(titles[0], dtype=str, header=None, names=["item_id", "title"])
        t = t[t["item_id"].str.lower() != "item"]
        items = items.merge(t, on="item_id", how="left")
    for col, sub, ext in (("cover_path", "covers", ".jpg"), ("video_path", "videos", ".mp4")):
        d = next(iter(sorted(p for p in folder.rglob(sub) if p.is_dir())), None)
        items[col] = [str(d / f"{i}{ext}") if d is not None and (d / f"{i}{ext}").is_file()
                      else None for i in items["item_id"]]
    return df, items


def load_log(path, **kwargs) -> pd.DataFrame:
    """Any CSV/TSV/Parquet interaction log: :func:`recsys.data.interactions.load_interactions`."""
    return load_interactions(path, **kwargs)


@dataclass(frozen=True)
class ShortVideoData:
    """A short-video dataset as loaded by :func:`load_dataset`.

    Attributes
    ----------
    name : str
    interactions : pandas.DataFrame
        Canonical frame (``user_id``, ``item_id`` external str ids, ``rating``, ``timestamp``);
        sequence logs add ``position`` (0-based, per user) and copy it to ``timestamp``.
    validation : pandas.DataFrame or None
        A published validation split in the same columns, or None.
    items : pandas.DataFrame
        ``item_id`` (str) for every known item, plus ``title`` where the dataset has titles.
    item_features : dict of str to numpy.ndarray
        Feature matrices (float32, one row per ``items`` row, same order), keyed by modality.
    """

    name: str
    interactions: pd.DataFrame
    validation: pd.DataFrame | None
    items: pd.DataFrame
    item_features: dict


def load_microlens_50k(root) -> ShortVideoData:
    """MicroLens-50K (Ni et al. 2023, arXiv:2309.15379): sequences and English titles.

    ``items`` holds every item of the title file and of the sequences (19,220 in the shared
    copy, 18,975 of them in the sequences); ``title`` is ``""`` for an item without one.

    Reads ``*_pairs*.tsv`` (``user<TAB>item item ...``, chronological, via
    :func:`recsys.data.side.read_sequences`: ``position`` = order) and ``*titles.csv``
    (``item,title``) from ``root`` or ``root/microlens-50k``. The copy in this project's shared
    data has each user's last item removed (the test); no validation split is published, so
    ``validation`` is None (hold out each user's last remaining item yourself).

    Raises
    ------
    FileNotFoundError
        No sequence file under ``root``.
    recsys.data.side.ItemDataError
        A malformed sequence or title file.
    """
    folder = _local(root, "microlens-50k")
    seqs = sorted(folder.glob("*pairs*.tsv"))
    if not seqs:
        raise FileNotFoundError(f"microlens-50k: no *pairs*.tsv under {str(folder)!r}; put "
                                "MicroLens-50k_pairs.tsv there (recsys data download "
                                "microlens-50k says from where)")
    df = read_sequences(seqs[0])
    titles = sorted(folder.glob("*title*.csv"))
    if titles:  # items: every titled item (also those seen only in the removed last position)
        tid, text = load_item_text(titles[0])
        lookup = dict(zip(tid, text, strict=True))
        ids = _sorted_ids(np.concatenate([tid, df["item_id"].to_numpy(dtype=object)]))
        items = pd.DataFrame({"item_id": ids, "title": [lookup.get(i, "") for i in ids]})
    else:
        items = pd.DataFrame({"item_id": _sorted_ids(df["item_id"])})
    return ShortVideoData("microlens-50k", df, None, items, {})


def load_tiktok_mmssl(root) -> ShortVideoData:
    """TikTok as released with MMSSL (Wei et al., WWW 2023) and used by DiffMM (ACM MM 2024).

    ``train.tsv`` / ``val.tsv`` (``user<TAB>item`` with header, 0-based indices, kept as str
    ids) and ``image_feat.npy`` / ``audio_feat.npy`` / ``text_feat.npy`` where present
    (``(n_items, d)``, row = item index; ``n_items`` = rows of the first matrix, 6,710). Every
    item index ``0..n_items-1`` is an item, also those without training interactions, so full
    ranking runs over all of them. ``timestamp`` is absent (the release has none).

    Raises
    ------
    FileNotFoundError
        No ``train.tsv`` under ``root``.
    recsys.data.side.ItemDataError
        A feature matrix with another row count or NaN rows; an interaction naming an item
        index outside the matrices.
    """
    folder = _local(root, "tiktok-mmssl")
    train_path = folder / "train.tsv"
    if not train_path.is_file():
        raise FileNotFoundError(f"tiktok-mmssl: no train.tsv under {str(folder)!r}; get the "
                                "TikTok split of https://github.com/HKUDS/MMSSL and put train.tsv"
                                ", val.tsv and *_feat.npy there")
    train = load_interactions(train_path, sep="\t")
    val_path = folder / "val.tsv"
    val = load_interactions(val_path, sep="\t") if val_path.is_file() else None
    feats: dict[str, np.ndarray] = {}
    n_items = None
    for mod, fname in (("visual", "image_feat.npy"), ("acoustic", "audio_feat.npy"),
                       ("textual", "text_feat.npy")):
        if (folder / fname).is_file():
            _, x = load_item_features(folder / fname, n_items=n_items)
            n_items = x.shape[0]
            feats[mod] = x
    if n_items is None:
        n_items = int(max(int(v) for v in train["item_id"])) + 1
    ids = np.asarray([str(i) for i in range(n_items)], dtype=object)
    known = set(ids)
    for frame, path in ((train, train_path), (val, val_path)):
        if frame is None:
            continue
        bad = ~frame["item_id"].isin(known).to_numpy()
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise ItemDataError(path, r + 2, f"item {frame['item_id'].iat[r]!r} is outside the "
                                f"{n_items} rows of the feature matrices", "use the feature "
                                "files of the same release")
    return ShortVideoData("tiktok-mmssl", train, val, pd.DataFrame({"item_id": ids}), feats)


#: Datasets :func:`load_dataset` knows, with their loader.
DATASETS = {"microlens-50k": load_microlens_50k, "tiktok-mmssl": load_tiktok_mmssl}


def load_dataset(name: str, root) -> ShortVideoData:
    """Load a short-video dataset by name from a local folder.

    Parameters
    ----------
    name : str
        ``"microlens-50k"`` or ``"tiktok-mmssl"``.
    root : path-like
        The dataset folder itself or its parent (e.g. ``../shared/data``).

    Returns
    -------
    ShortVideoData

    Raises
    ------
    ValueError
        Unknown ``name``.
    FileNotFoundError, recsys.data.side.ItemDataError
        See the dataset's loader.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is unknown; known: {sorted(DATASETS)}")
    return DATASETS[name](root)


def _local(root, folder: str) -> Path:
    root = Path(root)
    return root / folder if (root / folder).is_dir() else root


def _sorted_ids(values) -> np.ndarray:
    u = pd.unique(np.asarray(values, dtype=object))
    try:
        return np.asarray(sorted(u, key=int), dtype=object)
    except ValueError:
        return np.asarray(sorted(u), dtype=object)
