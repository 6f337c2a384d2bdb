"""The run report: Markdown with tables, PNG plots, and the JSON numbers beside them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings._io import atomic_path

log = logging.getLogger(__name__)

__all__ = ["markdown_table", "plot_metrics", "plot_query_confidence", "write_report"]


def markdown_table(df: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    """Render ``df`` as a GitHub Markdown table (floats with ``floatfmt``; no tabulate dependency)."""
    if df is None or len(df) == 0:
        return "_(none)_\n"

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else floatfmt.format(v)
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_metrics(summary: pd.DataFrame, path: str | Path, *, k: int, title: str = "") -> Path:
    """Grouped bar chart of metric@k per model (one group per metric); writes a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    metric_cols = [c for c in summary.columns if c.endswith(f"@{k}")]
    models = summary["model"].tolist()
    x = np.arange(len(metric_cols))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(1.4 * len(metric_cols) + 2, 3.6))
    for j, (_, row) in enumerate(summary.iterrows()):
        ax.bar(x + j * width - 0.4 + width / 2, [row[c] for c in metric_cols], width, label=row["model"])
    ax.set_xticks(x, metric_cols)
    ax.set_ylabel("mean over evaluated users")
    ax.set_ylim(0, max(1e-6, float(np.nanmax(summary[metric_cols].to_numpy(dtype=float)))) * 1.15)
    ax.set_title(title or f"Ranking quality at K={k}")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    _savefig(fig, path)
    plt.close(fig)
    return path


def plot_query_confidence(outcomes: list, path: str | Path, threshold: float | None) -> Path:
    """Horizontal bars of each query's retrieval confidence, with the backfill threshold as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    labels = [o.query[:40] for o in outcomes]
    conf = [o.confidence for o in outcomes]
    colors = ["tab:orange" if o.triggered else "tab:blue" for o in outcomes]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(outcomes) + 1.4))
    y = np.arange(len(outcomes))
    ax.barh(y, conf, color=colors)
    for yi, c in zip(y, conf, strict=True):  # values stay readable when a bar is (near) zero
        ax.text(c + 0.01, yi, f"{c:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 1.05)
    ax.invert_yaxis()
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    ax.set_xlabel("retrieval confidence (orange: backfill triggered)")
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
