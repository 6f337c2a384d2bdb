"""`recsys evaluate` report folder: CIs, significance, plots, TREC files, protocols, labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.app.evaluate import write_evaluation
from recsys.cli import main
from recsys.evaluation.trec import read_trec_qrels, read_trec_run

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _log(n_users=40, n_items=30, seed=0):
    """Two taste groups: users 0-19 like items 0-14, the rest items 15-29 (+ a little noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        pool = np.arange(15) if u < n_users // 2 else np.arange(15, 30)
        for t, i in enumerate(rng.choice(pool, 8, replace=False)):
            rows.append((str(u), str(i), 1.0, 1000 + t))
        rows.append((str(u), str(rng.integers(0, n_items)), 1.0, 2000))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return df.drop_duplicates(["user_id", "item_id"], keep="last").reset_index(drop=True)


def test_report_folder_holds_everything(tmp_path):
    df = _log()
    res = write_evaluation(df, ["popularity", "itemknn"], tmp_path, protocol="random_holdout", k=5,
                           ks=(1, 3), n_resamples=200, source="log.csv")
    names = {p.name for p in tmp_path.iterdir()}
    assert {"metrics.md", "metrics.csv", "metrics.json", "per_user.parquet", "metrics.png",
            "metric_vs_k.png", "significance.csv", "significance.md", "qrels.trec",
            "run.popularity.trec", "run.itemknn.trec", "protocol.json", "report.md"} <= names
    summary = pd.read_csv(tmp_path / "metrics.csv")
    for m in ("ndcg@5", "recall@3", "precision@1"):
        assert (summary[f"{m}_ci_low"] <= summary[m]).all() and (summary[m] <= summary[f"{m}_ci_high"]).all()
    per_user = pd.read_parquet(tmp_path / "per_user.parquet")
    assert set(per_user["model"]) == {"popularity", "itemknn"}
    # the summary is the mean of the per-user arrays that were kept
    knn = per_user[per_user["model"] == "itemknn"]
    assert summary.set_index("model").loc["itemknn", "ndcg@5"] == pytest.approx(knn["ndcg@5"].mean())
    proto = json.loads((tmp_path / "protocol.json").read_text())
    assert proto["seed"] == 42 and proto["n_train"] + proto["n_test"] == len(df)
    assert proto["ranking"].startswith("full ranking")
    sig = pd.read_csv(tmp_path / "significance.csv")
    assert {"p_t", "p_wilcoxon"} <= set(sig.columns) and set(sig["metric"]) >= {"ndcg@5"}
    run = read_trec_run(tmp_path / "run.itemknn.trec")
    assert run.groupby("qid")["rank"].max().max() <= 5 and (run["q0"] == "Q0").all()
    qrels = read_trec_qrels(tmp_path / "qrels.trec")
    assert len(qrels) == proto["n_test"]
    md = (tmp_path / "metrics.md").read_text()
    assert "full ranking" in md and "[" in md  # values with intervals
    assert "users without test items" in md
    assert res["summary"].shape[0] == 2


@pytest.mark.slow  # three evaluations and reports (~3 s idle, more on a loaded machine)
def test_sampled_predefined_and_kfold_through_the_cli(tmp_path):
    df = _log()
    train, test = df[df["timestamp"] < 1007], df[df["timestamp"] >= 1007]
    train.to_csv(tmp_path / "u1.base", sep="\t", header=False, index=False)
    test.to_csv(tmp_path / "u1.test", sep="\t", header=False, index=False)
    out = tmp_path / "pre"
    assert main(["evaluate", str(tmp_path / "u1.base"), "--protocol", "predefined", "--test",
                 str(tmp_path / "u1.test"), "--models", "popularity", "-k", "5", "--ks", "1,3",
                 "--negatives", "10", "--bootstrap", "50", "--out", str(out), "-q"]) == 0
    proto = json.loads((out / "protocol.json").read_text())
    assert proto["protocol"] == "predefined" and proto["n_test"] == len(test)
    assert proto["ranking"] == "sampled: test items + 10 negatives per user (seed 42)"
    for name in ("metrics.md", "report.md", "significance.md"):
        assert "sampled" in (out / name).read_text()
    assert (pd.read_parquet(out / "per_user.parquet")["ranking"].str.startswith("sampled")).all()
    assert pd.read_csv(out / "metrics.csv")["ranking"].str.startswith("sampled").all()
    assert read_trec_run(out / "run.popularity.trec")["tag"].iloc[0] == "popularity_sampled10"
    assert main(["evaluate", str(tmp_path / "u1.base"), "--protocol", "predefined", "--models",
                 "popularity", "--out", str(tmp_path / "x"), "-q"]) == 2  # --test missing
    out = tmp_path / "kf"
    assert main(["evaluate", str(tmp_path / "u1.base"), "--protocol", "kfold", "--folds", "3",
                 "--models", "popularity", "-k", "3", "--ks", "1", "--bootstrap", "50", "--out",
                 str(out), "-q"]) == 0
    per_user = pd.read_parquet(out / "per_user.parquet")
    assert sorted(per_user["fold"].unique()) == [0, 1, 2]
    qrels = read_trec_qrels(out / "qrels.trec")
    assert len(qrels) == len(train) and qrels["qid"].str.match(r"f\d_").all()


@pytest.mark.slow
@pytest.mark.realdata
def test_movielens_u1_base_u1_test_predefined(tmp_path):
    ml = DATA / "ml-100k"
    if not (ml / "u.data").is_file():
        pytest.skip(f"real data not found at {ml}")
    from recsys.data.datasets import load_movielens
    from recsys.data.splits import random_holdout

    # MovieLens's own u1.base/u1.test are made by its mku.sh; the shared copy has only u.data,
    # so a predefined pair is written from it and read back as files
    df = load_movielens("100k", ml)
    train, test = random_holdout(df, 0.2, seed=0)
    train.to_csv(tmp_path / "u1.base", sep="\t", header=False, index=False)
    test.to_csv(tmp_path / "u1.test", sep="\t", header=False, index=False)
    out = tmp_path / "r"
    assert main(["evaluate", str(tmp_path / "u1.base"), "--protocol", "predefined", "--test",
                 str(tmp_path / "u1.test"), "--models", "popularity,ease", "-k", "10",
                 "--bootstrap", "100", "--out", str(out), "-q"]) == 0
    summary = pd.read_csv(out / "metrics.csv").set_index("model")
    assert summary.loc["ease", "ndcg@10"] > summary.loc["popularity", "ndcg@10"]
    assert summary.loc["ease", "n_users"] == 943
    sig = pd.read_csv(out / "significance.csv").set_index("metric")
    assert sig.loc["ndcg@10", "p_t"] < 1e-6
