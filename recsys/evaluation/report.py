"""Report building blocks of offline evaluation: bootstrap intervals per model and metric,
paired significance tables, and the plots (bars with intervals, metric against K).

:func:`recsys.app.evaluate.write_evaluation` assembles them into the ``recsys evaluate`` folder.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings._io import atomic_path
from recsys.evaluation.significance import bootstrap_ci, paired_test

__all__ = ["markdown_table", "summary_with_ci", "pairwise_significance", "plot_bars_with_ci", "plot_metric_vs_k"]


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


def _metric_cols(per_user: pd.DataFrame) -> list[str]:
    return [c for c in per_user.columns if "@" in c]


def summary_with_ci(summary: pd.DataFrame, per_user: pd.DataFrame, *, confidence: float = 0.95,
                    n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Add ``<metric>_ci_low`` / ``<metric>_ci_high`` bootstrap columns to ``summary``.

    Intervals come from :func:`recsys.evaluation.significance.bootstrap_ci` over each model's per-user rows
    (NaN rows, e.g. diversity of a one-item list, left out). ``coverage@k`` is one number per
    run and gets no interval.

    Returns
    -------
    pandas.DataFrame
        A copy of ``summary`` with the interval columns right after each metric.
    """
    out = summary.copy()
    cols = [c for c in summary.columns if "@" in c]
    for c in cols:
        if c not in per_user.columns:
            continue
        lo, hi = [], []
        for name in out["model"]:
            v = per_user.loc[per_user["model"] == name, c].to_numpy(dtype=float)
            a, b = bootstrap_ci(v[~np.isnan(v)], confidence=confidence, n_resamples=n_resamples,
                                seed=seed)
            lo.append(a)
            hi.append(b)
        pos = out.columns.get_loc(c) + 1
        out.insert(pos, f"{c}_ci_high", hi)
        out.insert(pos, f"{c}_ci_low", lo)
    return out


def pairwise_significance(per_user: pd.DataFrame, metrics, *, tests=("t", "wilcoxon")
                          ) -> pd.DataFrame:
    """Paired tests between every two models on the users both evaluated.

    Rows are aligned on ``(fold, user_index)``; NaN rows are dropped pairwise.

    Returns
    -------
    pandas.DataFrame
        ``model_a, model_b, metric, n, mean_a, mean_b, mean_diff`` and ``p_<test>`` per test.
    """
    rows = []
    models = list(dict.fromkeys(per_user["model"]))
    for a, b in itertools.combinations(models, 2):
        pa = per_user[per_user["model"] == a].set_index(["fold", "user_index"])
        pb = per_user[per_user["model"] == b].set_index(["fold", "user_index"])
        common = pa.index.intersection(pb.index)
        for m in metrics:
            va, vb = pa.loc[common, m].to_numpy(float), pb.loc[common, m].to_numpy(float)
            ok = ~(np.isnan(va) | np.isnan(vb))
            if ok.sum() < 2:
                continue
            row = {"model_a": a, "model_b": b, "metric": m}
            for t in tests:
                r = paired_test(va[ok], vb[ok], test=t)
                row.update(n=r["n"], mean_a=r["mean_a"], mean_b=r["mean_b"],
                           mean_diff=r["mean_diff"])
                row[f"p_{t}"] = r["p_value"]
            rows.append(row)
    return pd.DataFrame(rows)


def _ci_table(summary: pd.DataFrame, k: int) -> pd.DataFrame:
    cols = [c for c in summary.columns if c.endswith(f"@{k}")]
    out = pd.DataFrame({"model": summary["model"]})
    for c in cols:
        if f"{c}_ci_low" in summary:
            out[c] = [f"{v:.4f} [{lo:.4f}, {hi:.4f}]" for v, lo, hi in
                      zip(summary[c], summary[f"{c}_ci_low"], summary[f"{c}_ci_high"], strict=True)]
        else:
            out[c] = [f"{v:.4f}" for v in summary[c]]
    out["users"] = summary["n_users"]
    out["users without test items"] = summary["n_users_without_test_items"]
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


# metrics not bounded by 1 (novelty: mean self-information in bits) get their own panel and axis
UNBOUNDED_METRICS = ("novelty",)


def plot_bars_with_ci(summary: pd.DataFrame, path, *, k: int, title: str) -> Path:
    """Grouped bars of metric@k per model with bootstrap CI error bars (PNG).

    Metrics in [0, 1] share the left panel (axis 0-1); unbounded ones (:data:`UNBOUNDED_METRICS`,
    e.g. novelty in bits) each get a panel with their own axis, so neither flattens the other.
    """
    plt = _plt()
    cols = [c for c in summary.columns if c.endswith(f"@{k}")]
    bounded = [c for c in cols if c.split("@")[0] not in UNBOUNDED_METRICS]
    panels = [p for p in [bounded] + [[c] for c in cols if c not in bounded] if p]
    width = 0.8 / max(1, len(summary))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.3 * len(cols) + 2 + 0.8 * (len(panels) - 1), 3.8),
                             gridspec_kw={"width_ratios": [len(p) + 0.6 for p in panels]}, squeeze=False)
    for ax, pcols in zip(axes[0], panels, strict=True):
        x = np.arange(len(pcols))
        for j, (_, row) in enumerate(summary.iterrows()):
            vals = np.array([row[c] for c in pcols], dtype=float)
            lo = np.array([row.get(f"{c}_ci_low", np.nan) for c in pcols], dtype=float)
            hi = np.array([row.get(f"{c}_ci_high", np.nan) for c in pcols], dtype=float)
            err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
            ax.bar(x + j * width - 0.4 + width / 2, vals, width, capsize=3,
                   yerr=err if np.isfinite(lo).any() else None,  # no CI columns: no error bars
                   label=row["model"], color=f"C{j}")
        ax.set_xticks(x, pcols, rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
        if pcols is bounded:
            ax.set_ylim(0, 1)
            has_ci = any(f"{c}_ci_low" in summary.columns for c in cols)
            ax.set_ylabel("mean over evaluated users" + (" (95% CI)" if has_ci else ""))
        else:
            ax.set_ylabel(f"{pcols[0]} (bits; own axis)" if pcols[0].startswith("novelty") else pcols[0])
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_metric_vs_k(summary: pd.DataFrame, path, *, title: str) -> Path:
    """One panel per metric name: mean value against K, one line per model (PNG)."""
    plt = _plt()
    by_name: dict[str, list[tuple[int, str]]] = {}
    for c in summary.columns:
        if "@" in c and not c.endswith(("_ci_low", "_ci_high")):
            n, kk = c.split("@")
            by_name.setdefault(n, []).append((int(kk), c))
    names = [n for n, v in by_name.items() if len(v) > 1] or list(by_name)
    ncol = min(4, max(1, len(names)))
    nrow = int(np.ceil(len(names) / ncol)) or 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    for ax, n in zip(axes.ravel(), names, strict=False):
        pts = sorted(by_name[n])
        for _, row in summary.iterrows():
            ax.plot([p[0] for p in pts], [row[p[1]] for p in pts], marker="o", label=row["model"])
        ax.set_title(n, fontsize=9)
        ax.set_xlabel("K")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes.ravel()[0].legend(frameon=False, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    plt.close(fig)
    return path

