"""The catalog of an embedding job: which files, under which stable ids, with which captions."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from embeddings.video.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, list_media

__all__ = ["CatalogError", "discover_inputs", "inputs_fingerprint"]


class CatalogError(ValueError):
    """A catalog folder or captions file cannot be used as given."""


def discover_inputs(video_dir: str | os.PathLike, captions: str | os.PathLike | None = None) -> pd.DataFrame:
    """List the media of a catalog and join their captions.

    Parameters
    ----------
    video_dir : path-like
        Folder searched recursively for videos and still images (extensions in
        ``embeddings.video.decode.VIDEO_EXTENSIONS`` and ``IMAGE_EXTENSIONS``).
    captions : path-like, optional
        CSV with columns ``video_id,path,caption`` (``caption`` optional); ``path`` is absolute or
        relative to ``video_dir`` (else to the CSV's folder). Extra columns are kept as metadata.
        Rows whose file does not exist are kept, so that the job records them as missing.

    Returns
    -------
    pandas.DataFrame
        One row per input: ``video_id`` (str, unique), ``path`` (str), ``caption`` (str or None),
        then the extra caption columns. Files without a caption row get ``video_id`` = their
        path relative to ``video_dir`` without extension (with it, if two files share a stem).
        Sorted by ``video_id`` so shards are stable across runs.

    Raises
    ------
    CatalogError
        If ``video_dir`` is not a folder, the captions file lacks ``video_id`` or ``path``,
        repeats a ``video_id``, or the catalog holds no media at all.
    """
    root = Path(video_dir)
    if not root.is_dir():
        raise CatalogError(f"video folder {root} does not exist or is not a folder; pass the folder holding the clips")
    files = list_media(root, VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)
    rows: dict[str, dict] = {}
    by_path: dict[str, str] = {}
    if captions is not None:
        cpath = Path(captions)
        if not cpath.is_file():
            raise CatalogError(f"captions file {cpath} does not exist; pass a CSV with columns video_id,path,caption")
        df = pd.read_csv(cpath, dtype=str, keep_default_na=False)
        missing = [c for c in ("video_id", "path") if c not in df.columns]
        if missing:
            raise CatalogError(
                f"captions file {cpath} lacks column(s) {missing}; expected video_id,path,caption "
                f"(found {list(df.columns)})")
        dup = df["video_id"][df["video_id"].duplicated()].tolist()
        if dup:
            raise CatalogError(f"captions file {cpath} repeats video_id {dup[:5]}; ids must be unique")
        for rec in df.to_dict("records"):
            p = Path(rec["path"])
            if not p.is_absolute():
                p = root / p if (root / p).exists() or not (cpath.parent / p).exists() else cpath.parent / p
            rec["path"] = str(p.resolve()) if p.exists() else str(p)
            rec["caption"] = rec.get("caption") or None
            rows[rec["video_id"]] = rec
            by_path[rec["path"]] = rec["video_id"]
    stems: dict[str, int] = {}
    for f in files:
        rel = f.relative_to(root).with_suffix("").as_posix()
        stems[rel] = stems.get(rel, 0) + 1
    for f in files:
        key = str(f.resolve())
        if key in by_path:
            continue
        rel = f.relative_to(root)
        vid = rel.with_suffix("").as_posix()
        if stems[vid] > 1 or vid in rows:
            vid = rel.as_posix()
        rows[vid] = {"video_id": vid, "path": key, "caption": None}
    if not rows:
        raise CatalogError(
            f"no videos or images found under {root} (looked for {sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)})")
    out = pd.DataFrame(list(rows.values()))
    cols = ["video_id", "path", "caption"] + [c for c in out.columns if c not in ("video_id", "path", "caption")]
    return out[cols].sort_values("video_id", kind="stable").reset_index(drop=True)


def inputs_fingerprint(inputs: pd.DataFrame) -> str:
    """SHA-256 (hex) over the ``video_id``/``path`` pairs, in order: a resumed job must match it."""
    h = hashlib.sha256()
    for vid, path in zip(inputs["video_id"], inputs["path"], strict=True):
        h.update(f"{vid}\0{path}\n".encode())
    return h.hexdigest()
