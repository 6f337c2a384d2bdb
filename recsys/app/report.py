"""The run report: Markdown with tables, PNG plots, and the JSON numbers beside them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings._io import atomic_path
from recsys.evaluation.report import markdown_table  # re-exported: the pipeline report uses it

log = logging.getLogger(__name__)

__all__ = ["markdown_table", "plot_metrics", "plot_query_confidence", "write_report"]


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_metrics(summary: pd.DataFrame, path: str | Path, *, k: int, title: str = "") -> Path:
    """Grouped bar chart of metric@k per model (one group per metric); writes a PNG and returns its path.

    The layout of :func:`recsys.evaluation.report.plot_bars_with_ci`: metrics in [0, 1] on one axis,
    novelty (bits) on its own.
    """
    from recsys.evaluation.report import plot_bars_with_ci

    return plot_bars_with_ci(summary, path, k=k, title=title or f"Ranking quality at K={k}")


def plot_query_confidence(outcomes: list, path: str | Path, threshold: float | None, *,
                          random_weights: bool = False) -> Path:
    """Each query's retrieval confidence as a dot on a stem from 0, the backfill threshold as a line.

    Dots stay visible at confidence 0 (bars would have zero width); the legend lists only the
    outcomes present (backfill triggered / not triggered) and the threshold. ``random_weights``
    writes :data:`embeddings.plotting.RANDOM_WEIGHTS_NOTE` on the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embeddings.plotting import mark_random_weights

    path = Path(path)
    labels = [o.query[:40] for o in outcomes]
    conf = np.array([o.confidence for o in outcomes], dtype=float)
    triggered = np.array([bool(o.triggered) for o in outcomes])
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(outcomes) + 1.6))
    y = np.arange(len(outcomes))
    ax.hlines(y, 0, conf, color="0.75", linewidth=2, zorder=1)
    for mask, colour, name in ((triggered, "tab:orange", "backfill triggered"),
                               (~triggered, "tab:blue", "not triggered")):
        if mask.any():
            ax.scatter(conf[mask], y[mask], s=45, color=colour, zorder=3, label=name)
    for yi, c in zip(y, conf, strict=True):
        ax.text(c + 0.02, yi, f"{c:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_xlim(-0.02, 1.12)
    ax.set_ylim(len(outcomes) - 0.5, -0.5)
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8)
    ax.set_xlabel("retrieval confidence")
    ax.grid(axis="x", alpha=0.3)
    mark_random_weights(fig, random_weights)
    _savefig(fig, path)
    plt.close(fig)
    return path


def write_report(path: str | Path, sections: list[tuple[str, str]], *, title: str) -> Path:
    """Write a Markdown report of ``(heading, body)`` sections atomically; returns its path."""
    path = Path(path)
    text = f"# {title}\n\n" + "\n".join(f"## {h}\n\n{b.rstrip()}\n" for h, b in sections)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
