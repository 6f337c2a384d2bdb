"""Batch recommendation over user blocks on Ray equals the single-process table row for row."""

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from embeddings.samples import make_sample_interactions  # noqa: E402
from recsys.distributed import recommend_users_ray  # noqa: E402
from recsys.stages import recommend_users, train_model  # noqa: E402

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
