"""``recsys embed --engine ray --address`` against a simulated two-node Ray cluster.

ONE host simulates two nodes: ``ray.cluster_utils.Cluster`` starts a head node and a worker node
as separate raylet process groups on this machine. The test proves the address path (the CLI
connects to a running cluster, as it would to ``ray start --head``) and that after a worker node
is killed half way (``cluster.remove_node``) and a replacement node joins, the job finishes (or, if it stays stalled, its driver is killed) and a
rerun leaves exactly one row per input, equal to the local job, without redoing finished shards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from embeddings.encoders.open_clip import TINY_MODEL, load_encoder  # noqa: E402
from embeddings.job import run_embedding_job  # noqa: E402
from embeddings.store import EmbeddingFolder  # noqa: E402
from embeddings.video.catalog import discover_inputs  # noqa: E402
from embeddings.video.samples import make_sample_catalog  # noqa: E402
from embeddings.video.sampling import FrameSampler  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _summary(stdout: str) -> dict:
    """The CLI's --json summary; Ray's raylet may print retry notices to the driver's stdout before it."""
    return json.loads(stdout[stdout.index('{\n  "n_inputs"'):])


def test_embed_on_two_node_cluster_survives_a_lost_node(tmp_path):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    make_sample_catalog(tmp_path / "clips", n_clips=16, size=(32, 32), n_frames=6, fps=6)
    inputs = discover_inputs(tmp_path / "clips", tmp_path / "clips" / "captions.csv")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        out = tmp_path / "emb"
        cmd = [sys.executable, "-m", "recsys", "embed", str(tmp_path / "clips"), "--out", str(out), "--model",
               TINY_MODEL, "--pretrained", "none", "--device", "cpu", "--frames", "2", "--shard-size", "1",
               "--batch-size", "2", "--engine", "ray", "--address", cluster.address, "--num-encoders", "2",
               "--json", "-q"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        deadline = time.time() + 600
        while (proc.poll() is None and time.time() < deadline
               and len(list((out / "shards").glob("*.parquet"))) < 2):
            time.sleep(0.02)
        done_at_kill = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.parquet")}
        cluster.remove_node(worker)  # the worker node dies half way: its actor and tasks are lost
        # the lost actor is restarted on the head, where both actors then hold every CPU and the
        # reader tasks wait: the job stalls until capacity returns. A replacement node joins:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        try:
            first, _ = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:  # still stalled: kill the driver, the rerun resumes
            proc.kill()
            first, _ = proc.communicate()
        again = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=600)
    finally:
        cluster.shutdown()
    assert again.returncode == 0
    rerun = _summary(again.stdout)
    # finished shards are not redone; whatever Ray could not finish after the loss is done now
    assert rerun["n_shards_skipped"] >= len(done_at_kill) and rerun["n_shards_skipped"] + rerun["n_embedded"] == 16
    for name, mtime in done_at_kill.items():
        assert (out / "shards" / name).stat().st_mtime_ns == mtime
    if proc.returncode == 0:  # Ray restarted the lost actor and retried its work within the first run
        assert sum(_summary(first)["encoder_nodes"].values()) == 16 and rerun["n_shards_skipped"] == 16
    folder = EmbeddingFolder.open(out, verify=True)
    meta, vecs = folder.load_videos()
    assert list(meta["video_id"]) == list(inputs["video_id"])  # exactly one row per input, in order
    run_embedding_job(inputs, load_encoder(model=TINY_MODEL, pretrained="none", device="cpu", seed=0),
                      tmp_path / "local", sampler=FrameSampler("uniform", n_frames=2), shard_size=1, batch_size=2,
                      progress=False)
    np.testing.assert_allclose(vecs, EmbeddingFolder.open(tmp_path / "local").load_videos()[1], atol=1e-5)

