"""``recsys bench index``: Recall@K / QPS curves of FAISS factory strings on an embedding folder.

Orchestration of :mod:`embeddings.index.bench`: picks the collection and the queries (held out
from the folder, seeded, or read from a ``.npy`` file), computes exact search once (cached in
``OUT/ground_truth/`` under a hash of the data), sweeps every factory string and writes::

    OUT/curves.json   settings (threads, k, machine, versions), build stats, every sweep point,
                      the Pareto front and the setting chosen for the recall target
    OUT/curves.png    recall vs QPS per factory string (batch and single-query panels)
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

import numpy as np

from embeddings._io import atomic_path, write_json
from embeddings._platform import cpu_model
from embeddings.index.bench import (
    benchmark_factory,
    cached_exact_neighbors,
    choose_setting,
    holdout_split,
    pareto_front,
)

log = logging.getLogger(__name__)

__all__ = ["bench_index", "expand_factories", "machine_info"]


def machine_info() -> dict:
    """CPU model, logical cores, Python/faiss/numpy versions (for the report header)."""
    import faiss

    cpu = cpu_model()
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "python": platform.python_version(),
            "faiss": faiss.__version__, "numpy": np.__version__}


def expand_factories(factories, n_vectors: int, dim: int, metric: str = "ip") -> list[str]:
    """Replace ``"auto"`` by every candidate of :func:`embeddings.index.factory.choose_factory`.

    ``Flat`` (exact) is always included as the reference. Duplicates are dropped, order kept.

    Raises
    ------
    ValueError
        On an empty list.
    """
    from embeddings.index.factory import choose_factory

    if not factories:
        raise ValueError("factories is empty: pass faiss factory strings such as 'HNSW32,Flat' or 'auto'")
    out = []
    for f in factories:
        out += [c for c, _ in choose_factory(n_vectors, dim, metric=metric)] if f == "auto" else [f.strip()]
    return list(dict.fromkeys(["Flat", *out]))


def _qps_label(v: float, _pos=None) -> str:
    return f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}"


def _plot(points, path: Path, k: int, threads: int, random_weights: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from embeddings.plotting import mark_random_weights

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, title in ((axes[0], "qps_batch", "batch"), (axes[1], "qps_single", "single query")):
        for f in dict.fromkeys(p.factory_string for p in points):
            ps = [p for p in points if p.factory_string == f]
            ax.plot([getattr(p, key) for p in ps], [p.recall for p in ps], "o-", label=f, ms=3)
        ax.set_xscale("log")
        # labels at 1, 2, 5 x 10^n only, written 2k / 50k: matplotlib's labelled minor ticks
        # (2x10^3, 3x10^3, ...) overlapped on ranges under a decade
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
        ax.xaxis.set_major_formatter(FuncFormatter(_qps_label))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("queries per second")
        ax.set_title(f"{title}, {threads} thread(s)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{k}-recall@{k}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    mark_random_weights(fig, random_weights, note="RANDOM-WEIGHT ENCODER made these vectors: recall against "
                        "exact search and speed hold, not retrieval quality")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def bench_index(emb_dir, out, factories, *, holdout: int = 100, queries=None, seed: int = 0, k: int = 10,
                metric: str = "ip", threads: int = 1, n_single: int = 100, repeats: int = 3,
                target_recall: float = 0.95, level: str = "video") -> dict:
    """Sweep factory strings over the video embeddings of ``emb_dir`` against exact search.

    Parameters
    ----------
    emb_dir : path-like
        Embedding folder made by ``recsys embed``.
    out : path-like
        Output folder (layout in the module docstring).
    factories : list of str
        faiss factory strings and/or ``"auto"`` (:func:`expand_factories`); ``Flat`` is added.
    holdout : int
        Vectors held out of the collection as queries (seeded by ``seed``); ignored with ``queries``.
    queries : path-like, optional
        ``.npy`` float ``(n_queries, d)`` of queries (e.g. text embeddings); then the whole folder
        is the collection.
    k : int
        Recall@K cut-off.
    metric : {"ip", "l2"}
    threads : int
        faiss OpenMP threads for builds and searches (stated in the output).
    n_single : int
        Queries timed one call at a time per setting.
    repeats : int
        Timings are the fastest of this many runs (shared machines are noisy).
    target_recall : float
        The printed choice is the fastest batch setting with recall >= this.
    level : {"video", "frame"}
        Benchmark the pooled video embeddings (what ``recsys index build`` indexes) or every frame
        embedding (a frame-level index, many more vectors).

    Returns
    -------
    dict
        The content of ``curves.json`` plus ``"points"`` as :class:`SweepPoint` objects under
        ``"_points"``.

    Raises
    ------
    ValueError
        On an empty folder, queries of the wrong dimension, or what the sweep raises.
    """
    from embeddings.store import EmbeddingFolder

    if level not in ("video", "frame"):
        raise ValueError(f"level={level!r}: expected 'video' (pooled embeddings) or 'frame' (every frame)")
    folder = EmbeddingFolder.open(emb_dir)
    _, x = folder.load_videos() if level == "video" else folder.load_frames()
    if len(x) == 0:
        raise ValueError(f"{emb_dir} holds no embedded video; nothing to benchmark")
    if queries is not None:
        q = np.load(queries, allow_pickle=False)
        if q.ndim != 2 or q.shape[1] != x.shape[1]:
            raise ValueError(f"queries {queries}: shape {q.shape}, expected (n_queries, {x.shape[1]}) to match the "
                             "embedding folder; encode the queries with the folder's encoder")
        collection, source = x, f"file {queries}"
    else:
        keep, held = holdout_split(len(x), holdout, seed)
        collection, q, source = x[keep], x[held], f"{len(held)} vectors held out of the collection (seed {seed})"
    out = Path(out)
    truth, gt_path, cached = cached_exact_neighbors(out / "ground_truth", collection, q, k, metric)
    names = expand_factories(factories, len(collection), collection.shape[1], metric)
    builds, points = [], []
    for f in names:
        stats, pts = benchmark_factory(collection, q, truth, f, k=k, metric=metric, threads=threads,
                                       n_single=n_single, repeats=repeats, seed=seed)
        log.info("%s: built in %.2f s, %d bytes", f, stats.build_s, stats.index_bytes)
        builds.append(stats.__dict__)
        points += pts
    front = pareto_front(points)
    choice = choose_setting(points, target_recall)
    result = {
        "settings": {"emb_dir": str(emb_dir), "level": level, "n_collection": len(collection), "dim": int(collection.shape[1]),
                     "n_queries": len(q), "queries": source, "k": k, "metric": metric, "threads": threads,
                     "n_single": n_single, "repeats": repeats, "timing": "fastest of repeats runs",
                     "seed": seed, "target_recall": target_recall,
                     "recall": "k-recall@k = |approximate top-k ∩ exact top-k| / k, mean over queries",
                     "ground_truth": str(gt_path), "ground_truth_cached": cached,
                     "memory": "index_bytes = size of the saved faiss index; rss_delta_bytes = process RSS "
                               "growth during build (0 when memory is reused)",
                     "machine": machine_info(), "note": "timings on a shared machine are noisy"},
        "builds": builds, "points": [p.to_dict() for p in points],
        "pareto_front": [p.to_dict() for p in front], "choice": choice.to_dict() if choice else None,
    }
    write_json(out / "curves.json", result)
    _plot(points, out / "curves.png", k, threads, bool((folder.encoder or {}).get("random_weights")))
    return {**result, "_points": points}
