"""Training with tuning, content embeddings and two-stage serving (library and CLI)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.app.stages import recommend_users, train_model
from recsys.cli import main
from recsys.ranking.artifacts import load_trained, save_trained
from recsys.ranking.training import UNKNOWN_USER_FALLBACK, recommend_two_stage, train_ranker
from recsys.ranking.two_stage import COLD_START_FALLBACK


def two_group_log(n_users=24, n_items=12) -> pd.DataFrame:
    """Even users watch even items, odd users odd items (times increasing); each user misses a
    different item of its group, so the right recommendation stays inside the group."""
    rows = []
    for u in range(n_users):
        items = [j for j in range(u % 2, n_items, 2) if j != (u // 2) % n_items]
        rows += [(f"u{u}", f"v{j}", 1.0, 1000 + 10 * u + j) for j in items]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def group_embeddings(item_ids) -> np.ndarray:
    e = np.zeros((len(item_ids), 4), np.float32)
    for i, v in enumerate(item_ids):
        e[i, int(v[1:]) % 2] = 1.0
        e[i, 2 + int(v[1:]) % 2] = 0.2
    return e


def test_tuned_two_stage_records_choice_and_serves_with_sources(tmp_path):
    df = two_group_log()
    tm = train_ranker(df, "ease", tune=True, grid={"l2": [1.0, 10.0]}, two_stage=True,
                      two_stage_ranker="fusion")
    assert tm.info["tuning"]["best_params"]["l2"] in (1.0, 10.0)
    assert tm.info["tuning"]["validation"]["carved_from"].startswith("the training split")
    assert len(tm.info["tuning"]["table"]) == 2 and tm.info["two_stage"]["fusion"] in ("collaborative", "rrf", "weighted")
    assert tm.info["two_stage"]["validated"] is True
    save_trained(tmp_path / "m", tm)
    back = load_trained(tmp_path / "m")
    recs = recommend_users(back, ["u0", "stranger"], k=3)  # two_stage from model.json
    assert set(recs.columns) >= {"sources", "fallback", "long_term_interest"}
    u0 = recs[recs.user_id == "u0"]
    assert u0.iloc[0]["item_id"] == "v0"  # the one unseen item of its (even) group
    assert "collaborative" in json.loads(u0.iloc[0]["sources"])
    assert set(recs[recs.user_id == "stranger"]["fallback"]) == {UNKNOWN_USER_FALLBACK}


def test_learned_two_stage_with_validation_data(tmp_path):
    """With validation data the learned stage is tried; when kept it serves with provenance,
    and strangers still get the stated popularity fallback."""
    df = two_group_log()
    tm = train_ranker(df, "ease", tune=True, grid={"l2": [1.0, 10.0]}, two_stage=True,
                      two_stage_ranker="ltr")
    from recsys.models import LTRRecommender

    assert isinstance(tm.model, LTRRecommender) and tm.info["two_stage"]["ranker"] == "ltr"
    assert tm.info["two_stage"]["sources"] == ["ease", "itemknn", "popularity"]
    assert "guard_ndcg@10" in tm.info["two_stage_learned"]
    assert tm.info["two_stage"]["fusion_choice"]["validated"] is True
    save_trained(tmp_path / "m", tm)
    back = load_trained(tmp_path / "m")
    recs = recommend_users(back, ["u0", "u3", "stranger"], k=3)
    for user, want in (("u0", "v0"), ("u3", "v1")):  # the one unseen item of each user's group
        first = recs[recs.user_id == user].iloc[0]
        assert first["item_id"] == want and pd.isna(first["fallback"])
        assert "ease" in json.loads(first["sources"])
    assert set(recs[recs.user_id == "stranger"]["fallback"]) == {UNKNOWN_USER_FALLBACK}
    # "auto" keeps the learned stage only when its guard says it beats every source
    auto = train_ranker(df, "ease", tune=True, grid={"l2": [1.0, 10.0]}, two_stage=True)
    assert auto.info["two_stage"]["ranker"] == (
        "ltr" if auto.info["two_stage_learned"]["beats_sources_on_validation"] else "fusion")
    with pytest.raises(ValueError, match="two_stage_ranker='rank'"):
        train_ranker(df, "ease", two_stage=True, two_stage_ranker="rank")


def test_content_model_with_embeddings_round_trips(tmp_path):
    df = two_group_log()
    tm = train_model(df, "content", item_embeddings=group_embeddings(sorted(df.item_id.unique())))
    save_trained(tmp_path / "c", tm)
    back = load_trained(tmp_path / "c")
    assert back.item_embeddings.shape == (12, 4)
    recs = recommend_two_stage(back, ["u3"], k=2, config={"interest_weight": 1.0})
    assert recs.iloc[0]["item_id"] == "v1"  # u3 (odd) misses only v1 of its group
    assert recs["fallback"].isna().all()
    # a known user with an empty history is a stated cold start
    assert COLD_START_FALLBACK.startswith("popularity")


def test_bad_input_rules():
    df = two_group_log()
    nan = df.copy()
    nan.loc[0, "rating"] = np.nan
    with pytest.raises(ValueError, match="NaN rating"):
        train_ranker(nan, "ease")
    with pytest.raises(ValueError, match="needs item_embeddings"):
        train_model(df, "content")
    dup = pd.concat([df, df.iloc[:3]], ignore_index=True)
    tm = train_ranker(dup, "ease", {"l2": 1.0})
    assert tm.info["n_interactions"] == len(df)  # duplicates count once (stated rule)


def test_cli_train_tune_two_stage(tmp_path, capsys):
    log = tmp_path / "log.csv"
    two_group_log().to_csv(log, index=False)
    assert main(["train", str(log), "--model", "ease", "--out", str(tmp_path / "m"), "--tune",
                 "--two-stage", "--param", "l2=5", "--json"]) == 0
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert info["params"]["l2"] == 5 and "tuning" in info and "two_stage" in info
    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "m"), "--user", "u3", "-k", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 2 and "sources" in out[0]


def test_cli_train_grid_replaces_one_parameters_values_and_reports_edges(tmp_path, capsys):
    """`--grid l2=[...]` is the grid --tune searches (the chosen value is one of them), a choice at
    an end of it is named in the output and model.json; misuse is refused before anything is written."""
    log = tmp_path / "log.csv"
    two_group_log().to_csv(log, index=False)
    out = tmp_path / "m"
    assert main(["train", str(log), "--model", "ease", "--out", str(out), "--tune",
                 "--grid", "l2=[0.5, 7000]", "-q"]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "model.json").read_text())
    tried = [row["params"]["l2"] for row in info["tuning"]["table"]]
    assert tried == [0.5, 7000] and info["params"]["l2"] in (0.5, 7000)
    side = "lowest" if info["params"]["l2"] == 0.5 else "highest"
    assert info["tuning"]["at_grid_edge"] == {"l2": side}
    assert f"At the edge of the grid: l2={info['params']['l2']} ({side} tried)" in printed
    # itemknn: one parameter replaced, the other keeps its default values
    assert main(["train", str(log), "--model", "itemknn", "--out", str(tmp_path / "k"), "--tune",
                 "--grid", "neighbors=[3]", "-q"]) == 0
    rows = json.loads((tmp_path / "k" / "model.json").read_text())["tuning"]["table"]
    assert sorted(r["params"]["weighting"] for r in rows) == ["bm25", "none"]
    assert {r["params"]["neighbors"] for r in rows} == {3}
    capsys.readouterr()
    for bad, says in ((["--grid", "l2=[1]"], "add --tune"),
                      (["--tune", "--grid", "l2=5"], "expected PARAM=[v1, v2, ...]"),
                      (["--tune", "--grid", "lambda=[1, 2]"], "no such parameter"),
                      (["--tune", "--grid", "l2=[1, 2]", "--param", "l2=3"], "both given")):
        assert main(["train", str(log), "--model", "ease", "--out", str(tmp_path / "bad"), *bad]) != 0
        assert says in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
    assert main(["train", str(log), "--model", "ltr", "--out", str(tmp_path / "bad"), "--tune",
                 "--grid", "l2=[1]"]) != 0
    assert "does not apply to --model ltr" in capsys.readouterr().err


def test_learned_two_stage_over_a_next_item_model_uses_leave_last_out():
    """Every user of the log walks items in order; the learned stage over last-item kNN, trained on
    each user's latest item, recommends the successor of the last item."""
    rows = []
    for u in range(30):
        for p in range(6):
            rows.append((f"u{u}", f"v{(u + p) % 12}", 1.0, 1000 + p))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    tm = train_ranker(df, "lastitem", tune=True, grid={"neighbors": [20]}, two_stage=True,
                      two_stage_ranker="ltr")
    assert tm.info["two_stage"]["ranker"] == "ltr"
    assert "st_trans_last1" in tm.model.feature_names_
    recs = recommend_two_stage(tm, ["u0", "u5"], k=1)
    assert list(recs["item_id"]) == ["v6", "v11"]  # u0 saw v0..v5, u5 saw v5..v10


def test_every_next_item_model_is_tuned_on_each_users_latest_item():
    """WindowKNN (like SASRec, GRU4Rec, last-item kNN) is validated leave-last-out; EASE on a
    stratified holdout. The registry's class decides, not a list of names."""
    from recsys.models import MODELS, is_next_item
    from recsys.models.sequential import SequentialRecommender

    assert {n for n in MODELS if is_next_item(n)} == {
        n for n, c in MODELS.items() if issubclass(c, SequentialRecommender)} >= {
        "sasrec", "gru4rec", "lastitem", "windowknn"}
    assert is_next_item("WindowKNN") and not is_next_item("ease") and not is_next_item("nope")
    rows = [(f"u{u}", f"v{(u + p) % 12}", 1.0, 1000 + p) for u in range(30) for p in range(6)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    wk = train_ranker(df, "windowknn", tune=True, grid={"window": [1, 3]})
    assert wk.info["tuning"]["validation"]["protocol"] == "leave_last_out"
    assert wk.info["tuning"]["validation"]["n_valid"] == 30  # one latest item per user
    ease = train_ranker(df, "ease", tune=True, grid={"l2": [1.0]})
    assert ease.info["tuning"]["validation"]["protocol"] == "stratified"


def test_learned_two_stage_learns_from_a_predefined_validation_file():
    """A validation frame of interactions outside the training log (each user's missing
    same-group item) labels the learned stage directly (it used to find no label there)."""
    df = two_group_log()
    val = pd.DataFrame([(f"u{u}", f"v{(u // 2) % 12}") for u in range(24) if (u // 2) % 12 % 2 == u % 2],
                       columns=["user_id", "item_id"])
    tm = train_ranker(df, "ease", tune=True, grid={"l2": [1.0, 10.0]}, two_stage=True,
                      two_stage_ranker="ltr", validation=val)
    assert tm.info["two_stage"]["ranker"] == "ltr"
    assert "label-popularity" in tm.info["two_stage_learned"]["recall_at_budget"]
    recs = recommend_two_stage(tm, ["u0", "u3"], k=1)
    assert list(recs["item_id"]) == ["v0", "v1"]  # the one unseen item of each user's group
