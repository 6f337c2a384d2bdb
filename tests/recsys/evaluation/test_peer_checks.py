"""Same-run peer checks of issue 19: EASE against cornac's EASE, bench_ranking's paired verdict."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.models import EASE

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_ranking.py"


def _bench():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_ranking", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ease_weights_equal_cornac_ease_at_same_lambda():
    """Our EASE and cornac's (posB=False: cornac clips negative weights by default) give the
    same B and the same top-10 lists on the same matrix."""
    pytest.importorskip("cornac")
    bench = _bench()
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((60, 40)) < 0.2).astype(np.float32) * rng.integers(1, 6, (60, 40)))
    x.eliminate_zeros()
    ours = EASE(l2=5.0).fit(x)
    cds = bench.cornac_dataset(x)
    from cornac.models import EASE as CornacEASE

    theirs = CornacEASE(lamb=5.0, posB=False, verbose=False).fit(cds)
    peer = bench.ScoreTable(bench.to_our_order(cds, *x.shape, theirs.score))
    seen = np.flatnonzero(np.diff(x.tocsc().indptr) > 0)  # items cornac knows
    np.testing.assert_allclose(peer.scores[:, seen], ours.score(x)[:, seen], atol=1e-4)
    users = np.arange(60)
    ids_ours, _ = ours.recommend(users, x, k=10, filter_items=np.setdiff1d(np.arange(40), seen))
    ids_peer, _ = peer.recommend(users, x, k=10)
    np.testing.assert_array_equal(ids_ours, ids_peer)


def test_paired_verdict_says_tie_when_the_interval_contains_zero():
    bench = _bench()
    rng = np.random.default_rng(1)
    base = pd.DataFrame({"user_index": np.arange(400), "ndcg@10": rng.random(400)})
    noisy = base.assign(**{"ndcg@10": base["ndcg@10"] + rng.normal(0, 0.01, 400)})
    better = base.assign(**{"ndcg@10": base["ndcg@10"] + 0.05 + rng.normal(0, 0.005, 400)})
    assert bench.paired_vs_peer(noisy, base, ["ndcg@10"])["ndcg@10"]["verdict"] == "tie"
    res = bench.paired_vs_peer(better, base, ["ndcg@10"])["ndcg@10"]
    assert res["verdict"] == "better" and res["diff"] == pytest.approx(0.05, abs=2e-3)
    assert bench.paired_vs_peer(base, better, ["ndcg@10"])["ndcg@10"]["verdict"] == "worse"
    # rows in another user order are aligned by user_index, not by position
    shuffled = better.sample(frac=1.0, random_state=0)
    again = bench.paired_vs_peer(shuffled, base, ["ndcg@10"])["ndcg@10"]
    assert again["diff"] == pytest.approx(res["diff"])
