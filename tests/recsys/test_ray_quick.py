"""The Ray engine in the default test run: one local Ray (``ray.init(num_cpus=2)``) for the module.

Each stage run on Ray gives what the single-process path gives on the same tiny inputs:
(a) the embedding job (3 rendered clips, tiny random-weight CLIP), (b) the sharded IVF build,
(c) batch recommendation and offline evaluation over user blocks. The heavier Ray tests (resume
after a kill, the CLI, several encoders, a simulated two-node cluster) are marked slow in
``tests/embeddings/test_ray_engine.py`` and ``tests/recsys/test_ray_recommend.py``.
Skipped where Ray is not installed (it comes with the ``dev`` and ``distributed`` extras).
"""

from __future__ import annotations

import logging
import shutil
import tempfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

ray = pytest.importorskip("ray")

from embeddings.encoders.open_clip import TINY_MODEL, load_encoder  # noqa: E402
from embeddings.job import check_job_folder, finish_job, run_embedding_job, write_shard  # noqa: E402
from embeddings.ray_engine.embed import run_embedding_job_ray  # noqa: E402
from embeddings.ray_engine.index_build import build_ivf_index_ray  # noqa: E402
from embeddings.store import EmbeddingFolder  # noqa: E402
from embeddings.video.catalog import discover_inputs  # noqa: E402
from embeddings.video.samples import make_sample_catalog, make_sample_interactions  # noqa: E402
from embeddings.video.sampling import FrameSampler  # noqa: E402
from recsys.app import stages  # noqa: E402
from recsys.data.interactions import build_dataset  # noqa: E402
from recsys.distributed import evaluate_ray, recommend_users_ray  # noqa: E402
from recsys.evaluation.evaluator import evaluate  # noqa: E402

pytestmark = pytest.mark.ray

KW = {"model": TINY_MODEL, "pretrained": "none", "device": "cpu", "precision": "fp32", "seed": 0}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module, its session files in a private temporary folder removed afterwards."""
    if ray.is_initialized():  # a connection left over by another module would be reused silently
        ray.shutdown()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             _temp_dir=temp)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_embed_on_ray_equals_local(tmp_path):
    make_sample_catalog(tmp_path / "clips", n_clips=3, size=(32, 32), n_frames=6, fps=6)
    inputs = discover_inputs(tmp_path / "clips", tmp_path / "clips" / "captions.csv")
    sampler = FrameSampler("uniform", n_frames=2)
    run_embedding_job(inputs, load_encoder(**KW), tmp_path / "local", sampler=sampler, shard_size=2,
                      batch_size=4, progress=False)
    summary = run_embedding_job_ray(inputs, KW, tmp_path / "ray", sampler=sampler, shard_size=2, batch_size=4,
                                    num_encoders=1, progress=False)
    assert summary.n_embedded == 3 and summary.n_frames == 6 and len(summary.errors) == 0
    local, remote = EmbeddingFolder.open(tmp_path / "local"), EmbeddingFolder.open(tmp_path / "ray", verify=True)
    (m1, v1), (m2, v2) = local.load_videos(), remote.load_videos()
    assert list(m2["video_id"]) == list(m1["video_id"]) == list(inputs["video_id"])
    np.testing.assert_allclose(v2, v1, atol=1e-5)
    np.testing.assert_allclose(remote.load_frames()[1], local.load_frames()[1], atol=1e-5)
    assert not np.allclose(v1[0], v1[1])  # distinct clips, distinct vectors: the comparison means something


class _Enc:
    def describe(self):
        return {"model": TINY_MODEL, "pretrained": "none", "device": "cpu", "precision": "fp32",
                "embed_dim": 16, "random_weights": True, "seed": 0}


def _vector_folder(out, n=600, shard=200):
    """An embedding folder of ``n`` clustered unit vectors (d=16) in shards, written by the job's writer."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16))[rng.integers(0, 8, n)] + 0.3 * rng.standard_normal((n, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    inputs = pd.DataFrame({"video_id": [f"v{i:04d}" for i in range(n)], "path": [f"/x/{i}.mp4" for i in range(n)],
                           "caption": None})
    settings = check_job_folder(out, inputs, _Enc().describe(), FrameSampler("uniform", n_frames=1), shard, 256,
                                "float32")
    cols = {"model": TINY_MODEL, "pretrained": "none", "precision": "fp32", "sampling": "uniform"}
    n_shards = -(-n // shard)
    for s in range(n_shards):
        recs = [{"video_id": inputs.video_id[i], "path": inputs.path[i], "caption": None, "duration_s": 1.0,
                 "fps": 1.0, "width": 8, "height": 8, "n_frames": 1, "frame_offset": r, "frame_timestamps_s": [0.0],
                 "row": r, "error": None, **cols} for r, i in enumerate(range(s * shard, min(n, (s + 1) * shard)))]
        write_shard(out, s, recs, x[s * shard:(s + 1) * shard], "float32")
    finish_job(out, n_shards, _Enc().describe(), settings, n, "float32")
    return x


def test_index_build_on_ray_equals_local(tmp_path):
    x = _vector_folder(tmp_path / "emb")
    local = stages.build_index(tmp_path / "emb", tmp_path / "local", factory="IVF8,Flat")
    md = stages.index_metadata(stages.video_metadata(EmbeddingFolder.open(tmp_path / "emb")))
    vi, info = build_ivf_index_ray(tmp_path / "emb", tmp_path / "ray", factory_string="IVF8,Flat", metadata=md,
                                   rows_per_task=200, on_disk=False)
    assert info["n_tasks"] == 3 and vi.ntotal == local.ntotal == len(x)
    q = x[::29] + 0.05
    want, got = local.search(q, 10), vi.search(q, 10)
    assert np.array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    assert got.ids[0, 0] == "v0000"  # the nearest neighbour of a shifted row is that row


@pytest.fixture(scope="module")
def fitted():
    df = make_sample_interactions(70, [f"i{j}" for j in range(40)], seed=1)
    last = df.groupby("user_id").tail(2)
    train_df, test_df = df.drop(last.index), last
    ds = build_dataset(df)
    tm = stages.train_model(train_df, "ease", dataset=ds)
    test = ds.to_user_items(test_df).tolil()
    test[::5] = 0  # every 5th user has no test item: skipped and counted by both paths
    return tm, sp.csr_matrix(test), np.random.default_rng(0).standard_normal((len(ds.item_ids), 6))


def test_recommend_and_evaluate_on_ray_equal_single_process(fitted):
    tm, test, emb = fitted
    users = list(tm.user_ids[::-1][:45])  # not the training order: the order must be kept
    pd.testing.assert_frame_equal(recommend_users_ray(tm, users, k=5, block_size=7, num_actors=1),
                                  stages.recommend_users(tm, users, k=5))

    kw = {"k": 5, "metrics": ["ndcg", "recall@3", "map", "mrr", "hit_rate", "coverage@10", "novelty", "diversity"],
          "item_embeddings": emb, "keep_lists": True, "batch_size": 6}
    want = evaluate(tm.model, tm.user_items, test, **kw)
    got = evaluate_ray(tm.model, tm.user_items, test, block_size=11, num_actors=1, **kw)
    assert want.n_users_skipped_no_test == 14 and want.n_users_evaluated == 56
    pd.testing.assert_frame_equal(got.per_user, want.per_user, check_exact=True)  # same users, same values
    assert got.summary == want.summary and list(got.summary) == list(want.summary)
    assert np.array_equal(got.lists, want.lists) and np.array_equal(got.list_scores, want.list_scores)
    for attr in ("n_users_evaluated", "n_users_skipped_no_test", "k", "metrics", "ranking"):
        assert getattr(got, attr) == getattr(want, attr)
    with pytest.raises(ValueError, match="block_size"):
        evaluate_ray(tm.model, tm.user_items, test, block_size=0)
    with pytest.raises(ValueError, match="k=0"):  # evaluate()'s own checks, on the driver
        evaluate_ray(tm.model, tm.user_items, test, k=0)
