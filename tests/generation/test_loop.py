"""The loop back into the index: calibrated gate, synthetic limits, collaborative score hook, timeout."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.index.video_index import VideoIndex
from generation.backends import GenerationBudget, MontageBackend
from generation.backfill import backfill
from generation.confidence import Calibrator, confidence_features

GEN = dict(num_frames=8, height=32, width=32, fps=8)
QUERY = "a red circle, then a blue square"


def _index(world):
    cat = world["catalog"]
    meta = cat[["video_id", "caption"]].copy()
    meta["synthetic"] = False
    return VideoIndex.build(world["video_emb"], list(cat["video_id"]), metadata=meta,
                            factory_string="Flat", encoder=world["encoder"].describe())


def _montage(world):
    return MontageBackend(world["shots"], world["shot_emb"], world["encoder"].encode_text,
                          shot_seconds=0.5)


def test_collab_score_hook_and_synthetic_limits(world, tmp_path):
    index = _index(world)
    seen = []

    def score_synthetic(emb):  # stands in for recsys' hybrid cold-start mapping
        seen.append(emb.shape)
        return emb[:, :1] * 0 + 0.75

    res = backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
                   out_dir=tmp_path, k=10, threshold=1.0, n_generate=2, generate_kwargs=GEN,
                   score_synthetic=score_synthetic, max_synthetic=1)
    assert seen == [(1, world["video_emb"].shape[1])] * 2 and len(res.generated) == 2
    syn = [r for r in res.results if r["synthetic"]]
    assert len(syn) == 1 and syn[0]["provenance"]["collab_score"] == 0.75  # capped at 1 of 2
    assert len(res.results) == 5 and [r["rank"] for r in res.results] == [1, 2, 3, 4, 5]
    meta = index.metadata.set_index("video_id")
    assert meta.loc[res.generated, "collab_score"].tolist() == [0.75, 0.75]
    again = backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
                     out_dir=tmp_path, k=10, threshold=1.0, n_generate=2, generate_kwargs=GEN,
                     exclude_synthetic=True)
    assert again.reused == res.generated and not any(r["synthetic"] for r in again.results)
    assert len(again.results) == 4


def test_confidence_ignores_synthetic_items_and_uses_the_calibrator(world, tmp_path):
    index = _index(world)
    first = backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
                     out_dir=tmp_path, k=3, threshold=0.0, generate_kwargs=GEN)
    backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
             out_dir=tmp_path, k=3, threshold=1.0, generate_kwargs=GEN)
    # a synthetic clip made for this very query does not raise the confidence of the catalog
    later = backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
                     out_dir=tmp_path, k=3, threshold=0.0, generate_kwargs=GEN)
    assert later.confidence == pytest.approx(first.confidence, abs=1e-6)
    # a calibrator that maps every top-1 to 0.9 (isotonic fitted on two points) drives the gate
    feats = confidence_features(np.array([[0.0, -1.0], [1.0, 0.0]]))
    cal = Calibrator("isotonic").fit(feats, [0, 1])
    cal.y_ = np.array([0.9, 0.9])
    res = backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
                   out_dir=tmp_path, k=3, threshold=0.5, generate_kwargs=GEN, calibrator=cal)
    assert res.confidence == pytest.approx(0.9) and not res.triggered


def test_timeout_in_the_loop_is_reported_not_indexed(world, tmp_path):
    index = _index(world)
    n0 = index.ntotal
    budget = GenerationBudget(timeout_s=1e-9, on_exceeded="skip")
    res = backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
                   out_dir=tmp_path, k=3, threshold=1.0, generate_kwargs=GEN, budget=budget)
    assert res.triggered and res.generated == [] and "timeout_s" in res.skipped[0]
    assert index.ntotal == n0 and budget.n_run == 1


@pytest.mark.slow
def test_diffusers_clip_joins_the_index(world, tmp_path):
    pytest.importorskip("diffusers")
    from generation.backends import DiffusersBackend
    from generation.backends.diffusers_tiny import tiny_pipeline

    index = _index(world)
    backend = DiffusersBackend("wan", pipe=tiny_pipeline("wan"), device="cpu", max_sequence_length=16)
    res = backfill("a red dog", encoder=world["encoder"], index=index, backend=backend, out_dir=tmp_path,
                   k=10, threshold=1.0, generate_kwargs=dict(num_frames=9, height=16, width=16, fps=8,
                                                             num_inference_steps=2))
    (sid,) = res.generated
    rec = next(r for r in res.results if r["video_id"] == sid)
    assert rec["synthetic"] and rec["provenance"]["backend"] == "diffusers"
    assert (tmp_path / "synthetic" / f"{sid}.mp4").is_file()
