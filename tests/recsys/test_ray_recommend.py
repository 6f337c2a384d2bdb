"""Batch recommendation over user blocks on Ray equals the single-process table row for row."""

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from embeddings.video.samples import make_sample_interactions  # noqa: E402
from recsys.app.stages import recommend_users, train_model  # noqa: E402
from recsys.distributed import recommend_users_ray  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_ray_blocks_give_the_single_process_table():
    items = [f"i{j}" for j in range(40)]
    df = make_sample_interactions(60, items, seed=1)
    tm = train_model(df, "ease")
    users = list(tm.user_ids[::-1][:45])  # not the training order: order must be kept
    want = recommend_users(tm, users, k=5)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        got = recommend_users_ray(tm, users, k=5, block_size=7, num_actors=2)
        everyone = recommend_users_ray(tm, None, k=3, block_size=16)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(everyone, recommend_users(tm, None, k=3))
    with pytest.raises(ValueError, match="block_size"):
        recommend_users_ray(tm, users, block_size=0)


def test_evaluate_ray_sampled_negatives_and_cli_reports_equal_local(tmp_path, capsys):
    import json

    import numpy as np

    from recsys.cli import main
    from recsys.data.interactions import build_dataset
    from recsys.distributed import evaluate_ray
    from recsys.evaluation.evaluator import evaluate

    items = [f"i{j}" for j in range(40)]
    df = make_sample_interactions(50, items, seed=2)
    last = df.groupby("user_id").tail(2)
    ds = build_dataset(df)
    tm = train_model(df.drop(last.index), "als", {"factors": 8, "iterations": 3}, dataset=ds)
    test = ds.to_user_items(last)
    kw = {"k": 5, "n_negatives": 15, "seed": 7, "metrics": ["ndcg", "recall", "coverage"], "keep_lists": True}
    want = evaluate(tm.model, tm.user_items, test, **kw)
    log_file = tmp_path / "log.csv"
    df.to_csv(log_file, index=False)
    args = ["evaluate", str(log_file), "--protocol", "leave_last_out", "--models", "ease,popularity", "-k", "5",
            "--bootstrap", "50", "--json", "-q"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    capsys.readouterr()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        got = evaluate_ray(tm.model, tm.user_items, test, block_size=9, num_actors=2, **kw)
        # the CLI reuses this connection (one Ray session for every model and fold)
        assert main([*args, "--out", str(tmp_path / "ray"), "--engine", "ray", "--num-actors", "1"]) == 0
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(got.per_user, want.per_user, check_exact=True)  # same negatives drawn
    assert got.summary == want.summary and got.ranking == want.ranking
    assert np.array_equal(got.lists, want.lists)
    loc, rem = tmp_path / "local", tmp_path / "ray"
    pd.testing.assert_frame_equal(pd.read_parquet(rem / "per_user.parquet"), pd.read_parquet(loc / "per_user.parquet"),
                                  check_exact=True)
    timing = ["fit_seconds", "evaluate_seconds"]  # the only columns allowed to differ
    pd.testing.assert_frame_equal(pd.read_csv(rem / "metrics.csv").drop(columns=timing),
                                  pd.read_csv(loc / "metrics.csv").drop(columns=timing), check_exact=True)
    assert (rem / "significance.csv").read_bytes() == (loc / "significance.csv").read_bytes()
    assert json.loads((rem / "metrics.json").read_text())["models"][0]["n_users"] == 50
    assert main([*args, "--out", str(tmp_path / "x"), "--address", "127.0.0.1:1"]) == 2  # needs --engine ray
