"""The smoke mode of benchmarks/bench_index.py runs end to end (it once died at its budgeted build
when the build plan began counting the id tables against a 16M budget)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.realdata
def test_bench_index_quick_runs_and_writes_its_report(tmp_path):
    pytest.importorskip("hnswlib")
    sift = ROOT.parent / "shared" / "data" / "sift5k"
    if not (sift / "base.npy").is_file():
        pytest.skip(f"SIFT sample not found under {sift}")
    spec = importlib.util.spec_from_file_location("bench_index", ROOT / "benchmarks" / "bench_index.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--out", str(tmp_path)]) in (0, None)
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["checks"]["flat_exact_on_sift"]
    assert report["auto_budget"]["auto"]["recall@10"] >= 0.9
    assert (tmp_path / "recall_qps.png").stat().st_size > 0
