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

import os
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings._io import atomic_path, write_json, write_parquet
from recsys.app import report, stages
from recsys.evaluation.evaluator import FULL_RANKING
from recsys.evaluation.report import (
    _ci_table,
    _metric_cols,
    pairwise_significance,
    plot_bars_with_ci,
    plot_metric_vs_k,
    summary_with_ci,
)
from recsys.evaluation.trec import write_trec_qrels, write_trec_run

__all__ = ["write_evaluation"]


def write_evaluation(df: pd.DataFrame, models: list[str], out: str | os.PathLike, *, protocol: str,
                     k: int = 10, test_ratio: float | None = None, seed: int = 42,
                     source: str | None = None, params: dict | None = None,
                     test_df: pd.DataFrame | None = None, test_source: str | None = None,
                     n_folds: int = 5, n_negatives: int | None = None, metrics=None, ks=None,
                     item_embeddings=None, n_resamples: int = 1000,
                     confidence: float = 0.95, evaluator=None, progress: bool = False,
                     users: str = "all", drop_test_only_items: bool = False,
                     validation_df: pd.DataFrame | None = None, validation_source: str | None = None,
                     item_features=None, item_text=None) -> dict:
    """Run :func:`recsys.app.stages.evaluate_models` and write its report folder (layout above).

    ``users``, ``drop_test_only_items``, ``validation_df`` (tune every model on it),
    ``item_features`` and ``item_text`` are passed to :func:`recsys.app.stages.evaluate_models`;
    ``validation_source`` is recorded.

    Parameters
    ----------
    ks : iterable of int, optional
        Cut-offs for the metric-versus-K curves; default ``(1, 5, 10, 20, 50)`` up to
        ``max(k, 50)`` plus ``k``.
    n_resamples, confidence
        Bootstrap resamples and level of the intervals.
    Other parameters
        As :func:`recsys.app.stages.evaluate_models`.

    Returns
    -------
    dict
        The dict of :func:`recsys.app.stages.evaluate_models` with ``summary`` carrying the CI columns,
        ``significance`` (DataFrame) and ``protocol`` completed with sources.

    Raises
    ------
    ValueError
        What :func:`recsys.app.stages.evaluate_models` raises.
    """
    out = Path(out)
    ks = sorted(set(int(x) for x in (ks or (1, 5, 10, 20, 50))) - {int(k)})
    res = stages.evaluate_models(df, models, protocol=protocol, test_ratio=test_ratio, seed=seed,
                                 k=k, params=params, test_df=test_df, n_folds=n_folds,
                                 n_negatives=n_negatives, metrics=metrics, ks=ks,
                                 item_embeddings=item_embeddings, keep_lists=True, evaluator=evaluator,
                                 progress=progress, users=users,
                                 drop_test_only_items=drop_test_only_items,
                                 validation_df=validation_df, item_features=item_features,
                                 item_text=item_text)
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused evaluation leaves nothing behind
    proto = dict(res["protocol"], source=source, test_source=test_source,
                 validation_source=validation_source,
                 item_feature_sources=[str(f) for f in item_features or () if not isinstance(f, np.ndarray)]
                 or None, item_text_source=str(item_text) if item_text else None,
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
