"""TREC run/qrels files: exact format, and other tools reproduce our numbers from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.evaluation.metrics import ndcg_at_k, precision_at_k
from recsys.evaluation.trec import read_trec_qrels, read_trec_run, write_trec_qrels, write_trec_run


def test_run_and_qrels_format(tmp_path):
    ids = np.array([[2, 0, -1], [1, 2, 0]])
    scores = np.array([[0.5, 0.5, -np.inf], [3.0, 2.0, 1.0]], dtype=np.float32)
    run = write_trec_run(tmp_path / "r.trec", ["u1", "u2"], ["a", "b", "c"], ids, scores, tag="ease")
    lines = run.read_text().splitlines()
    assert lines[0] == "u1 Q0 c 1 2 ease" and lines[1] == "u1 Q0 a 2 1 ease"
    assert len(lines) == 5 and all(len(x.split()) == 6 for x in lines)
    model = write_trec_run(tmp_path / "m.trec", ["u1", "u2"], ["a", "b", "c"], ids, scores,
                           score_mode="model")
    assert model.read_text().splitlines()[0] == "u1 Q0 c 1 0.5 recsys"
    q = write_trec_qrels(tmp_path / "q.trec", pd.DataFrame({"user_id": ["u1"], "item_id": ["c"],
                                                            "rating": [4.0]}), graded=True)
    assert q.read_text() == "u1 0 c 4\n"
    assert read_trec_run(run)["docid"].tolist()[:2] == ["c", "a"]
    assert read_trec_qrels(q)["relevance"].tolist() == [4]
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_run(tmp_path / "x", ["a b"], ["a"], np.array([[0]]))
    with pytest.raises(ValueError, match="whole-number"):
        write_trec_qrels(tmp_path / "x", pd.DataFrame({"user_id": ["u"], "item_id": ["i"],
                                                       "rating": [0.5]}), graded=True)


def test_trec_eval_reads_our_order(tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pip install pytrec_eval-terrier")
    rng = np.random.default_rng(0)
    n_users, n_items, k = 30, 20, 5
    rel = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(float))
    rel[0, 0] = 1.0
    ids = np.array([rng.permutation(n_items)[:k] for _ in range(n_users)])
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    item_ids = np.array([f"i{i}" for i in range(n_items)], dtype=object)
    user_ids = np.array([f"u{u}" for u in range(n_users)], dtype=object)
    write_trec_run(tmp_path / "run", user_ids[users], item_ids, ids[users])
    r, c = rel.nonzero()
    write_trec_qrels(tmp_path / "qrels", pd.DataFrame({"user_id": user_ids[r], "item_id": item_ids[c]}))
    run_df, q_df = read_trec_run(tmp_path / "run"), read_trec_qrels(tmp_path / "qrels")
    run = {u: dict(zip(g["docid"], g["score"], strict=True)) for u, g in run_df.groupby("qid")}
    qrels = {u: dict(zip(g["docid"], g["relevance"].astype(int), strict=True))
             for u, g in q_df.groupby("qid")}
    res = pytrec_eval.RelevanceEvaluator(qrels, {f"P.{k}", f"ndcg_cut.{k}"}).evaluate(run)
    np.testing.assert_allclose([res[f"u{u}"][f"P_{k}"] for u in users],
                               precision_at_k(ids, rel, k)[users], atol=1e-12)
    np.testing.assert_allclose([res[f"u{u}"][f"ndcg_cut_{k}"] for u in users],
                               ndcg_at_k(ids, rel, k)[users], atol=1e-12)
