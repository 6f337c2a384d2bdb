"""``recsys bench retrieval``: text-video retrieval quality of encoders on the user's own catalog.

Orchestration only: embeds the catalog per encoder (cached in the output folder, resumable),
encodes the captions, scores them with :mod:`embeddings.retrieval_eval` at video level (mean-pooled
video embedding) and frame level (max over frames), and writes tables, a plot, per-query ranks
and the exact settings. The index sweep (``recsys bench index``) lives in :mod:`recsys.bench.index`.

Output folder layout::

    OUT/settings.json               what was run: encoders, frames, sampling, pooling, precision, ties
    OUT/summary.{md,csv,json}       one row per encoder x level x direction
    OUT/<encoder-slug>/metrics.{md,csv,json}
    OUT/ranks.parquet               encoder, level, direction, query, video_id, caption, rank
    OUT/comparison.png              R@1/R@5/R@10 per encoder, both directions and levels
    OUT/embeddings/<encoder-slug>/  embedding folders (reused by the next run with the same settings)
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from embeddings._io import atomic_path, write_json, write_parquet
from embeddings.retrieval_eval import (
    chance_level,
    max_over_frames,
    retrieval_metrics,
    text_to_video_ranks,
    video_to_text_ranks,
)

log = logging.getLogger(__name__)

__all__ = ["parse_encoder_spec", "load_captions", "bench_retrieval", "METRIC_COLUMNS"]

METRIC_COLUMNS = ["recall@1", "recall@5", "recall@10", "median_rank", "mean_rank"]


def parse_encoder_spec(spec: str) -> tuple[str, str | None]:
    """Split ``MODEL[:PRETRAINED]`` into ``(model, pretrained)``.

    ``hf-hub:ORG/NAME`` keeps its prefix (``hf-hub:ORG/NAME:TAG`` gives the tag); ``PRETRAINED`` is
    an open_clip tag, a local checkpoint path or ``none`` (seeded random weights); absent means
    the model's default (see :func:`recsys.app.stages.resolve_pretrained`).

    Raises
    ------
    ValueError
        On an empty spec or model name.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"encoder spec {spec!r} is empty; expected MODEL:PRETRAINED, e.g. ViT-B-32:openai")
    spec = spec.strip()
    prefix = "hf-hub:" if spec.startswith("hf-hub:") else ""
    model, _, pretrained = spec[len(prefix):].partition(":")
    if not model:
        raise ValueError(f"encoder spec {spec!r} has no model name; expected MODEL:PRETRAINED")
    return prefix + model, (pretrained or None)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "encoder"


def load_captions(path, *, split: str | None = None, split_column: str = "split") -> pd.DataFrame:
    """Read a captions file: every caption becomes one text query.

    Parameters
    ----------
    path : path-like
        CSV or Parquet with a ``video_id`` column and either ``caption`` (one caption per row; a
        video may repeat over rows) or ``captions`` (a list per row: a Parquet list, or a JSON list
        string in a CSV). Optional ``path`` (the media file) and ``split`` columns.
    split : str, optional
        Keep only rows whose ``split_column`` equals this value.
    split_column : str

    Returns
    -------
    pandas.DataFrame
        ``video_id`` (str), ``caption`` (str, stripped, non-empty), ``path`` (str or None), in file
        order. Rows with an empty caption are dropped (the count is logged and stored in
        ``df.attrs["n_empty_dropped"]``).

    Raises
    ------
    ValueError
        On a missing file or columns, a ``captions`` value that is not a list, ``split`` without a
        split column, or a split name absent from the file.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"captions file {p} does not exist; pass a CSV with columns video_id,caption[,path,split]")
    df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, dtype=str, keep_default_na=False)
    if "video_id" not in df.columns or not ({"caption", "captions"} & set(df.columns)):
        raise ValueError(f"captions file {p} needs columns video_id and caption (or captions, a list); "
                         f"found {list(df.columns)}")
    if split is not None:
        if split_column not in df.columns:
            raise ValueError(f"split={split!r} but captions file {p} has no {split_column!r} column; drop --split "
                             "or add the column")
        names = sorted(df[split_column].astype(str).unique())
        if split not in names:
            raise ValueError(f"split={split!r} is not in column {split_column!r} of {p}; it holds {names[:20]}")
        df = df[df[split_column].astype(str) == split]
    if "captions" in df.columns and "caption" not in df.columns:
        def as_list(v, row):
            if isinstance(v, str):
                try:
                    v = json.loads(v)
                except json.JSONDecodeError:
                    v = None
            if not isinstance(v, (list, tuple, np.ndarray)):
                raise ValueError(f"captions file {p} row {row}: the captions column must hold a list (a JSON "
                                 "list in a CSV, e.g. [\"a dog\", \"a puppy\"])")
            return list(v)
        df = df.assign(caption=[as_list(v, i) for i, v in enumerate(df["captions"])]).explode("caption")
    out = pd.DataFrame({
        "video_id": df["video_id"].astype(str).to_numpy(),
        "caption": [("" if c is None or (isinstance(c, float) and np.isnan(c)) else str(c)).strip()
                    for c in df["caption"]],
        "path": df["path"].astype(str).to_numpy() if "path" in df.columns else None,
    })
    empty = out["caption"] == ""
    if empty.any():
        log.warning("captions file %s: %d row(s) with an empty caption are not queries", p, int(empty.sum()))
    out = out[~empty].reset_index(drop=True)
    out.attrs["n_empty_dropped"] = int(empty.sum())
    return out


def _catalog_csv(captions: pd.DataFrame, videos: Path, captions_path: Path, out: Path) -> Path | None:
    """One row per video with an absolute path, for :func:`embeddings.job.discover_inputs`."""
    if captions["path"].isna().all():
        return None
    first = captions.drop_duplicates("video_id")[["video_id", "path"]].copy()

    def resolve(rel: str) -> str:
        q = Path(rel)
        if q.is_absolute():
            return str(q)
        for base in (videos, captions_path.parent):
            if (base / q).exists():
                return str((base / q).resolve())
        return str(videos / q)
    first["path"] = [resolve(r) for r in first["path"]]
    path = out / "catalog.csv"
    with atomic_path(path) as tmp:
        first.to_csv(tmp, index=False)
    return path


def _settings_of(folder) -> dict:
    """Embedding settings as the folder's manifest records them (both manifest layouts)."""
    s = dict(folder.manifest.get("settings", {}))
    enc = folder.encoder
    sampling = s.get("sampling")
    if isinstance(sampling, dict):  # {"strategy": "uniform", "n_frames": 8, ...}
        frames, strategy = sampling.get("n_frames"), sampling.get("strategy")
    else:  # older folders: {"n_frames": 8, "sampling": "uniform"}
        frames, strategy = s.get("n_frames"), sampling
    return {"frames_per_clip": frames, "sampling": strategy, "sampling_settings": sampling,
            "pooling": f"{s.get('pooling')} of L2-normalised frame embeddings, re-normalised",
            "max_side": s.get("max_side"), "storage_dtype": s.get("storage_dtype", "float32"),
            "precision": enc.get("precision"), "encoder": enc}


def _evaluate(folder, encoder, captions: pd.DataFrame | None, ks, ties) -> tuple[list[dict], pd.DataFrame, dict]:
    meta, video_emb = folder.load_videos()
    frames, frame_emb = folder.load_frames()
    if captions is None:
        c = meta[["video_id", "caption"]].copy()
        c["caption"] = c["caption"].fillna("").astype(str).str.strip()
        captions = c[c["caption"] != ""].reset_index(drop=True)
    embedded = set(meta["video_id"].astype(str))
    missing = sorted(set(captions["video_id"]) - embedded)
    if missing:
        log.warning("%d captioned video(s) have no embedding (see errors.parquet): %s", len(missing), missing[:5])
    caps = captions[captions["video_id"].isin(embedded)].reset_index(drop=True)
    if caps.empty:
        raise ValueError("no caption belongs to an embedded video: check that the captions' video_id match the "
                         "catalog (file stem without extension, or the catalog's video_id column)")
    vids = list(dict.fromkeys(caps["video_id"]))  # candidates: every captioned, embedded video
    row_of = {v: i for i, v in enumerate(vids)}
    meta_row = {v: i for i, v in enumerate(meta["video_id"].astype(str))}
    V = video_emb[[meta_row[v] for v in vids]]
    keep = frames["video_id"].astype(str).isin(row_of).to_numpy()
    fv = np.array([row_of[v] for v in frames["video_id"].astype(str)[keep]], dtype=np.int64)
    cv = np.array([row_of[v] for v in caps["video_id"]], dtype=np.int64)
    T = encoder.encode_text(caps["caption"].tolist())
    sims = {"video": T @ V.T, "frame": max_over_frames(T, frame_emb[keep], fv, len(vids))}
    n_caps = np.bincount(cv, minlength=len(vids))
    chance = {"text_to_video": chance_level(len(vids), 1, ks),
              "video_to_text": chance_level(len(caps), n_caps, ks)}
    rows, ranks = [], []
    for level, sim in sims.items():
        r_t2v = text_to_video_ranks(sim, cv, ties=ties)
        v_rows, r_v2t = video_to_text_ranks(sim, cv, ties=ties)
        for direction, r, n_cand in (("text_to_video", r_t2v, len(vids)), ("video_to_text", r_v2t, len(caps))):
            rows.append({"level": level, "direction": direction, **retrieval_metrics(r, ks),
                         "n_candidates": n_cand})
        ranks.append(pd.DataFrame({"level": level, "direction": "text_to_video", "query": caps["caption"],
                                   "video_id": caps["video_id"], "rank": r_t2v}))
        ranks.append(pd.DataFrame({"level": level, "direction": "video_to_text",
                                   "query": [vids[i] for i in v_rows], "video_id": [vids[i] for i in v_rows],
                                   "rank": r_v2t}))
    info = {"n_videos": len(vids), "n_captions": len(caps), "n_captioned_videos_not_embedded": len(missing),
            "n_embedded_videos_without_caption": len(embedded - set(vids)), "chance_level": chance}
    return rows, pd.concat(ranks, ignore_index=True), info


def _table_md(df: pd.DataFrame) -> str:
    cols = ["encoder", "level", "direction", "R@1 (%)", "R@5 (%)", "R@10 (%)", "MdR", "MnR", "queries", "candidates"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples(index=False):
        d = r._asdict()
        lines.append("| " + " | ".join([
            str(d["encoder"]), d["level"], d["direction"].replace("_", " "),
            *(f"{100 * d[f'recall_{k}']:.1f}" for k in (1, 5, 10)), f"{d['median_rank']:.1f}",
            f"{d['mean_rank']:.2f}", str(d["n_queries"]), str(d["n_candidates"])]) + " |")
    return "\n".join(lines) + "\n"


def _write_tables(df: pd.DataFrame, stem: Path, extra: dict) -> None:
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        df.to_csv(tmp, index=False)
    flat = df.rename(columns=lambda c: c.replace("recall_", "recall@"))
    write_json(stem.with_suffix(".json"), {**extra, "rows": flat.to_dict("records")})
    note = ("R@K in percent; MdR/MnR = median/mean rank (1-based, ties pessimistic). "
            "video = mean-pooled video embedding; frame = max over frames.\n\n")
    with atomic_path(stem.with_suffix(".md")) as tmp:
        tmp.write_text(note + _table_md(df), encoding="utf-8")


def _plot(df: pd.DataFrame, path: Path, chance: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embeddings.plotting import mark_random_weights

    groups = [(lv, d) for lv in ("video", "frame") for d in ("text_to_video", "video_to_text")]
    encoders = list(dict.fromkeys(df["encoder"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.6), sharey=True)
    width = 0.8 / max(1, len(encoders))
    for ax, (lv, d) in zip(axes, groups, strict=True):
        for j, enc in enumerate(encoders):
            row = df[(df["encoder"] == enc) & (df["level"] == lv) & (df["direction"] == d)]
            if row.empty:
                continue
            vals = [100 * float(row[f"recall_{k}"].iloc[0]) for k in (1, 5, 10)]
            ax.bar(np.arange(3) + j * width, vals, width, label=enc)
        if chance:
            ax.plot(np.arange(3) + width * (len(encoders) - 1) / 2,
                    [100 * chance[d][f"recall@{k}"] for k in (1, 5, 10)], "k_", ms=30, mew=2,
                    label="chance" if d == "text_to_video" and lv == "video" else None)
        ax.set_xticks(np.arange(3) + width * (len(encoders) - 1) / 2, ["R@1", "R@5", "R@10"])
        ax.set_title(f"{d.replace('_', ' ')} ({lv})", fontsize=9)
    axes[0].set_ylabel("recall (%)")
    # one legend below the panels: inside a panel it covered the chance marks and bars
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 4),
               fontsize=8, frameon=False)
    fig.tight_layout()
    random = sorted(df.loc[df["random_weights"].astype(bool), "encoder"].unique()) \
        if "random_weights" in df.columns else []
    mark_random_weights(fig, bool(random), what=", ".join(map(str, random)))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def bench_retrieval(out, encoders=None, *, videos=None, captions=None, embeddings=None, split=None,
                    frames: int = 8, device: str = "auto", precision: str = "fp32", seed: int = 0,
                    ks=(1, 5, 10), ties: str = "pessimistic", batch_size: int = 64, num_workers: int = 2,
                    max_side: int = 256, progress: bool = False) -> dict:
    """Text-to-video and video-to-text retrieval metrics of one or more encoders on a catalog.

    Parameters
    ----------
    out : path-like
        Output folder (layout in the module docstring); embedding folders are cached under it.
    encoders : list of str, optional
        ``MODEL[:PRETRAINED]`` specs (:func:`parse_encoder_spec`); required with ``videos``. With
        ``embeddings`` it must be None: the folder's own encoder (from its manifest) is used.
    videos : path-like, optional
        Catalog folder of videos/images. Exactly one of ``videos`` and ``embeddings``.
    captions : path-like, optional
        Captions file (:func:`load_captions`); default: the ``caption`` column the embedding folder
        stores (one caption per video). Required for ``split``.
    embeddings : path-like, optional
        Embedding folder made by ``recsys embed``.
    split : str, optional
        Evaluate only captions of this split; only videos with a caption in it are candidates.
    frames, device, precision, seed, batch_size, num_workers, max_side, progress
        Embedding settings (:func:`recsys.app.stages.embed_catalog`); ``seed`` seeds random weights.
    ks : sequence of int
        R@K cut-offs (the tables show 1, 5 and 10).
    ties : {"pessimistic", "optimistic"}
        Tie policy of :mod:`embeddings.retrieval_eval`.

    Returns
    -------
    dict
        ``{"summary": DataFrame (encoder, level, direction, recall_1.., median_rank, mean_rank,
        n_queries, n_candidates, random_weights), "ranks": DataFrame, "settings": dict,
        "out": Path}``.

    Raises
    ------
    ValueError
        On a bad combination of inputs, captions that match no embedded video, or an encoder that
        cannot be loaded (what :func:`embeddings.encoders.open_clip.load_encoder` raises).
    """
    from embeddings.store import EmbeddingFolder
    from recsys.app import stages

    if (videos is None) == (embeddings is None):
        raise ValueError("pass exactly one of videos (a catalog folder) and embeddings (a `recsys embed` folder)")
    if videos is not None and not encoders:
        raise ValueError("encoders is empty: name at least one, e.g. ['ViT-B-32:openai'] or ['tiny-clip:none']")
    if embeddings is not None and encoders:
        raise ValueError("with an embedding folder the encoder is the one its manifest records; drop encoders")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    caps = load_captions(captions, split=split) if captions is not None else None
    if split is not None and caps is None:
        raise ValueError(f"split={split!r} needs a captions file with a split column (captions=...)")
    runs = []
    if embeddings is not None:
        folder = EmbeddingFolder.open(embeddings)
        enc = stages.open_encoder_for_index(SimpleNamespace(encoder=folder.encoder), device=device)
        runs.append((f"{folder.encoder['model']}:{folder.encoder['pretrained']}", folder, enc))
    else:
        catalog = _catalog_csv(caps, Path(videos), Path(captions), out) if caps is not None else None
        for spec in encoders:
            model, pretrained = parse_encoder_spec(spec)
            emb_dir = out / "embeddings" / _slug(spec)
            enc, _ = stages.embed_catalog(videos, emb_dir, captions=catalog, model=model, pretrained=pretrained,
                                          device=device, precision=precision, seed=seed, frames=frames,
                                          batch_size=batch_size, max_side=max_side, num_workers=num_workers,
                                          progress=progress)
            runs.append((spec, EmbeddingFolder.open(emb_dir), enc))
    rows, ranks, per_encoder = [], [], {}
    for spec, folder, enc in runs:
        r, rk, info = _evaluate(folder, enc, caps, ks, ties)
        df = pd.DataFrame(r)
        df.insert(0, "encoder", spec)
        df["random_weights"] = bool(enc.random_weights)
        df = df.rename(columns=lambda c: c.replace("recall@", "recall_"))
        settings = {**_settings_of(folder), **info, "embedding_folder": str(folder.path)}
        per_encoder[spec] = settings
        _write_tables(df, out / _slug(spec) / "metrics", {"encoder": spec, "settings": settings})
        rk.insert(0, "encoder", spec)
        rows.append(df)
        ranks.append(rk)
    summary = pd.concat(rows, ignore_index=True)
    ranks_df = pd.concat(ranks, ignore_index=True)
    settings = {"ties": ties, "ks": list(ks), "split": split, "captions": str(captions) if captions else None,
                "videos": str(videos) if videos else None, "device": device, "precision": precision,
                "seed": seed, "candidates": "every embedded video with at least one caption (in the split)",
                "n_empty_captions_dropped": caps.attrs.get("n_empty_dropped", 0) if caps is not None else 0,
                "encoders": per_encoder}
    write_json(out / "settings.json", settings)
    _write_tables(summary, out / "summary", {"settings": settings})
    write_parquet(out / "ranks.parquet", ranks_df)
    _plot(summary, out / "comparison.png", next(iter(per_encoder.values()))["chance_level"])
    return {"summary": summary, "ranks": ranks_df, "settings": settings, "out": out}
