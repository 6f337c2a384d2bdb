"""``recsys evaluate``: evaluate several models and write the report folder.

Report folder::

    REPORT_DIR/
      metrics.md / metrics.csv / metrics.json   models x metrics@K with bootstrap 95 % intervals
                                                (``<metric>_ci_low`` / ``_ci_high``), counts,
                                                seconds and the ranking label; JSON holds the protocol
      significance.csv / .md                    paired tests between every two models per metric
      per_user.parquet                          one row per (model, fold, evaluated user)
      metrics.png                               bar chart of metric@K per model with CI error bars
      metric_vs_k.png                           each metric against K, one line per model
      run.<model>.trec, qrels.trec              TREC run (6 columns) and qrels (4 columns)
      protocol.json                             seed, split sizes, filters, ranking, dataset
      report.md                                 all of it, readable, the protocol beside the numbers

Sampled-negative ranking, when asked for, is named in every one of these files (the
``ranking`` field/column, the plot titles, the run tag).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings._io import atomic_path, write_json, write_parquet
from recsys import report, stages
from recsys.evaluation import FULL_RANKING
from recsys.significance import bootstrap_ci, paired_test
from recsys.trec import write_trec_qrels, write_trec_run

__all__ = ["write_evaluation", "summary_with_ci", "pairwise_significance"]


def _metric_cols(per_user: pd.DataFrame) -> list[str]:
    return [c for c in per_user.columns if "@" in c]


def summary_with_ci(summary: pd.DataFrame, per_user: pd.DataFrame, *, confidence: float = 0.95,
                    n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Add ``<metric>_ci_low`` / ``<metric>_ci_high`` bootstrap columns to ``summary``.

    Intervals come from :func:`recsys.significance.bootstrap_ci` over each model's per-user rows
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


def write_evaluation(df: pd.DataFrame, models: list[str], out: str | os.PathLike, *, protocol: str,
                     k: int = 10, test_ratio: float | None = None, seed: int = 42,
                     source: str | None = None, params: dict | None = None,
                     test_df: pd.DataFrame | None = None, test_source: str | None = None,
                     n_folds: int = 5, n_negatives: int | None = None, metrics=None, ks=None,
                     item_embeddings=None, n_resamples: int = 1000,
                     confidence: float = 0.95, evaluator=None, progress: bool = False,
                     users: str = "all", drop_test_only_items: bool = False) -> dict:
    """Run :func:`recsys.stages.evaluate_models` and write its report folder (layout above).

    ``users`` and ``drop_test_only_items`` are passed to :func:`recsys.stages.evaluate_models`.

    Parameters
    ----------
    ks : iterable of int, optional
        Cut-offs for the metric-versus-K curves; default ``(1, 5, 10, 20, 50)`` up to
        ``max(k, 50)`` plus ``k``.
    n_resamples, confidence
        Bootstrap resamples and level of the intervals.
    Other parameters
        As :func:`recsys.stages.evaluate_models`.

    Returns
    -------
    dict
        The dict of :func:`recsys.stages.evaluate_models` with ``summary`` carrying the CI columns,
        ``significance`` (DataFrame) and ``protocol`` completed with sources.

    Raises
    ------
    ValueError
        What :func:`recsys.stages.evaluate_models` raises.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ks = sorted(set(int(x) for x in (ks or (1, 5, 10, 20, 50))) - {int(k)})
    res = stages.evaluate_models(df, models, protocol=protocol, test_ratio=test_ratio, seed=seed,
                                 k=k, params=params, test_df=test_df, n_folds=n_folds,
                                 n_negatives=n_negatives, metrics=metrics, ks=ks,
                                 item_embeddings=item_embeddings, keep_lists=True, evaluator=evaluator,
                                 progress=progress, users=users,
                                 drop_test_only_items=drop_test_only_items)
    proto = dict(res["protocol"], source=source, test_source=test_source,
                 bootstrap={"resamples": n_resamples, "confidence": confidence, "seed": 0,
                            "method": "percentile, users resampled"})
    ranking = proto["ranking"]
    sampled = ranking != FULL_RANKING
    per_user = res["per_user"]
    summary = summary_with_ci(res["summary"], per_user, confidence=confidence,
                              n_resamples=n_resamples)
    main_cols = [c for c in _metric_cols(per_user) if c.endswith(f"@{k}")]
    sig = pairwise_significance(per_user, main_cols)
    write_json(out / "protocol.json", proto)
    write_json(out / "metrics.json", {"protocol": proto, "ranking": ranking,
                                      "models": summary.to_dict("records")})
    with atomic_path(out / "metrics.csv") as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_path(out / "significance.csv") as tmp:
        sig.to_csv(tmp, index=False)
    label = f"**Ranking: {ranking}**\n\n"
    table = label + report.markdown_table(_ci_table(summary, k))
    with atomic_path(out / "metrics.md") as tmp:
        tmp.write_text(table, encoding="utf-8")
    sig_md = report.markdown_table(sig)
    with atomic_path(out / "significance.md") as tmp:
        tmp.write_text(label + sig_md, encoding="utf-8")
    write_parquet(out / "per_user.parquet", per_user)
    what = f"{Path(source).name if source else 'interactions'}: {protocol}" + (
        f", SAMPLED ({ranking})" if sampled else ", full ranking")
    plot_bars_with_ci(summary, out / "metrics.png", k=k, title=f"{what}, K={k}")
    plot_metric_vs_k(summary, out / "metric_vs_k.png", title=what)
    ds = res["dataset"]
    qrels = res["test_df"].drop_duplicates(["fold", "user_id", "item_id"]).copy()
    kfold = qrels["fold"].nunique() > 1
    if kfold:  # one qid per (fold, user)
        qrels["user_id"] = "f" + qrels["fold"].astype(str) + "_" + qrels["user_id"].astype(str)
    write_trec_qrels(out / "qrels.trec", qrels)
    tag_suffix = f"_sampled{n_negatives}" if sampled else ""
    for name, parts in res["lists"].items():
        frames_ids = np.vstack([p[2] for p in parts]) if parts else np.empty((0, k), np.int64)
        users = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
        if kfold:
            qids = np.concatenate([np.char.add(f"f{p[0]}_", ds.user_ids[p[1]].astype(str))
                                   for p in parts])
        else:
            qids = ds.user_ids[users]
        write_trec_run(out / f"run.{name}.trec", qids, ds.item_ids, frames_ids,
                       tag=f"{name}{tag_suffix}")
    proto_lines = "\n".join(f"- {key}: {value}" for key, value in proto.items())
    report.write_report(out / "report.md", [
        ("Protocol", proto_lines + "\n\nUsers without test items are excluded (counted per model "
         "below). Ties are broken by score, then by item index (lower first). Intervals: "
         f"{int(confidence * 100)} % percentile bootstrap over users ({n_resamples} resamples)."),
        ("Results", table + "\n![metrics](metrics.png)\n\n![metric vs K](metric_vs_k.png)\n"),
        ("Paired significance tests", label + sig_md),
        ("Files", "per_user.parquet (per-user metrics), run.<model>.trec + qrels.trec (TREC "
         "format; run scores are list positions so every tool keeps our tie order), "
         "metrics.csv/json, significance.csv, protocol.json"),
    ], title="Offline ranking evaluation" + (" (SAMPLED NEGATIVES)" if sampled else ""))
    res["protocol"] = proto
    res["summary"] = summary
    res["significance"] = sig
    return res
