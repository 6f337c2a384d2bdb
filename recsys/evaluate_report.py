"""``recsys evaluate``: evaluate several models and write the report folder.

Report folder::

    REPORT_DIR/
      metrics.md / metrics.csv / metrics.json   models x metrics (+ fit/evaluate seconds, protocol)
      per_user.parquet                          one row per (model, evaluated user)
      metrics.png                               bar chart of metric@K per model
      report.md                                 all of it, readable, with the protocol beside the numbers
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from embeddings._io import atomic_path, write_json, write_parquet
from recsys import report, stages

__all__ = ["write_evaluation"]


def write_evaluation(df: pd.DataFrame, models: list[str], out: str | os.PathLike, *, protocol: str, k: int = 10,
                     test_ratio: float = 0.2, seed: int = 42, source: str | None = None,
                     params: dict | None = None) -> dict:
    """Run :func:`recsys.stages.evaluate_models` and write its report folder (layout above).

    Returns the dict of :func:`recsys.stages.evaluate_models` (``protocol``, ``summary``,
    ``per_user``, ``trained``). Raises what that function raises.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = stages.evaluate_models(df, models, protocol=protocol, test_ratio=test_ratio, seed=seed, k=k,
                                 params=params)
    proto = dict(res["protocol"], source=source)
    summary = res["summary"]
    write_json(out / "metrics.json", {"protocol": proto, "models": summary.to_dict("records")})
    with atomic_path(out / "metrics.csv") as tmp:
        summary.to_csv(tmp, index=False)
    table = report.markdown_table(summary)
    with atomic_path(out / "metrics.md") as tmp:
        tmp.write_text(table, encoding="utf-8")
    write_parquet(out / "per_user.parquet", res["per_user"])
    report.plot_metrics(summary, out / "metrics.png", k=k,
                        title=f"{Path(source).name if source else 'interactions'}: {protocol}, K={k}")
    proto_lines = "\n".join(f"- {key}: {value}" for key, value in proto.items())
    report.write_report(out / "report.md", [
        ("Protocol", proto_lines + "\n\nUsers without test items are excluded (counted per model below). "
         "Ties are broken by item index (lower first)."),
        ("Results", table + "\n![metrics](metrics.png)\n"),
    ], title="Offline ranking evaluation")
    res["protocol"] = proto
    return res
