"""The RecBole peer helper of benchmarks/bench_sequential.py (issue 20) and the bench's metrics."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH_DIR = Path(__file__).resolve().parents[3] / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _read(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id_list:token_seq\titem_id:token"
    return [tuple(line.split("\t")) for line in lines[1:]]


def test_write_split_gives_recbole_our_exact_split(tmp_path):
    """train: every target of the training history (prefix truncated to max_length), minus the
    inner-validation users' last item; valid: that item; test: whole history -> our target."""
    rbp = _load("_recbole_peer")
    hist = [np.array([0, 1, 2, 3]), np.array([4, 5]), np.array([6, 7, 8])]
    targets = np.array([10, 11, 12])
    counts = rbp.write_split(tmp_path, "s", hist, targets, val_users=[2], max_length=2)
    d = tmp_path / "s"
    assert _read(d / "s.train.inter") == [("0", "0", "1"), ("0", "0 1", "2"), ("0", "1 2", "3"),
                                          ("1", "4", "5"), ("2", "6", "7")]
    assert _read(d / "s.valid.inter") == [("2", "6 7", "8")]
    assert _read(d / "s.test.inter") == [("0", "2 3", "10"), ("1", "4 5", "11"),
                                         ("2", "7 8", "12")]
    assert counts == {"train": 5, "valid": 1, "test": 3}
    assert not list(d.glob("*.tmp"))


def test_inner_validation_users_are_eligible_and_seeded():
    rbp = _load("_recbole_peer")
    hist = [np.arange(n) for n in (2, 3, 5, 1, 4, 3)]
    a = rbp.inner_validation_users(hist, 2, seed=0)
    assert a.size == 2 and set(a) <= {1, 2, 4, 5} and np.all(np.diff(a) > 0)
    assert np.array_equal(a, rbp.inner_validation_users(hist, 2, seed=0))
    assert set(rbp.inner_validation_users(hist, 99, seed=0)) == {1, 2, 4, 5}


def test_pandas_agg_len_shim_is_scoped():
    rbp = _load("_recbole_peer")
    s = pd.Series([np.array([1, 2]), np.array([3])])
    original = pd.Series.agg
    with rbp.pandas_agg_len_shim():
        assert list(s.agg(len)) == [2, 1]
        assert list(s.agg(np.concatenate)) == [1, 2, 3]
    assert pd.Series.agg is original


def test_bench_sampled_and_full_metrics_count_ties_against_the_model():
    bench = _load("bench_sequential")
    hist = [np.array([0, 1]), np.array([2])]
    targets = np.array([5, 6])
    perfect = np.zeros((2, 30), np.float32)
    perfect[[0, 1], targets] = 1.0
    rng = np.random.default_rng(0)
    assert bench.sampled_metrics(perfect, hist, targets, 10, rng)["hr"].tolist() == [1.0, 1.0]
    ties = np.zeros((2, 30), np.float32)
    assert bench.sampled_metrics(ties, hist, targets, 10, rng)["hr"].tolist() == [0.0, 0.0]
    # full ranking: one unseen item above the target -> rank 2
    s = perfect.copy()
    s[0, 7] = 2.0
    full = bench.leave_one_out_metrics(s, hist, targets)
    assert full["ndcg"][0] == pytest.approx(1 / np.log2(3))
    # history items never count as negatives: a history item above the target does not hurt
    s2 = perfect.copy()
    s2[0, [0, 1]] = 5.0
    assert bench.sampled_metrics(s2, hist, targets, 27, rng)["ndcg"][0] == 1.0


@pytest.mark.slow
def test_recbole_sasrec_learns_a_cycle_and_scores_in_our_item_order(tmp_path):
    """RecBole (if installed) on a toy where the next item is (last + 1) mod 30: after training,
    the top item of every history is that item, in OUR item indices (column mapping right)."""
    rbp = _load("_recbole_peer")
    if rbp.recbole_version() is None:
        pytest.skip("RecBole not installed: pip install recbole==1.2.1 --no-deps && "
                    "pip install -e .[peers]")
    rng = np.random.default_rng(0)
    hist = [(rng.integers(30) + np.arange(rng.integers(4, 12))) % 30 for _ in range(300)]
    targets = np.array([(h[-1] + 1) % 30 for h in hist])
    peer = rbp.RecBolePeer("SASRec", hist, targets, 30, tmp_path, epochs=8, time_budget_s=120,
                           validation_users=50, batch_size=256, learning_rate=0.01)
    info = peer.fit()
    assert info["rows"]["valid"] == 50 and info["epochs_run"] >= 1
    scores = peer.score_sequences(hist)
    assert scores.shape == (300, 30)
    assert (scores.argmax(axis=1) == targets).mean() > 0.9
