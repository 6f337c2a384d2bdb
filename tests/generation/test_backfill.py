"""Backfill end to end: tiny random-weight encoder, Flat index over rendered clips, montage backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embeddings.encoders.open_clip import pool_frames
from embeddings.index.video_index import VideoIndex
from embeddings.video.decode import sample_frames
from generation.backends import (
    Backend,
    BudgetExceeded,
    Clip,
    GenerationBudget,
    GenerationCache,
    MontageBackend,
)
from generation.backfill import backfill

GEN = dict(num_frames=8, height=32, width=32, fps=8)
QUERY = "a red circle, then a blue square"


def _index(world):
    cat = world["catalog"]
    return VideoIndex.build(world["video_emb"], list(cat["video_id"]),
                            metadata=cat[["video_id", "caption"]].copy(), factory_string="Flat",
                            encoder=world["encoder"].describe())


def _montage(world):
    return MontageBackend(world["shots"], world["shot_emb"], world["encoder"].encode_text,
                          shot_seconds=0.5)


def test_threshold_one_generates_and_indexes_synthetic_clip(world, tmp_path):
    index = _index(world)
    n0 = index.ntotal
    res = backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
                   out_dir=tmp_path, k=10, threshold=1.0, generate_kwargs=GEN)
    assert res.triggered and res.threshold == 1.0 and 0.0 <= res.confidence <= 1.0
    assert len(res.generated) == 1 and res.generated[0].startswith("synthetic-")
    sid = res.generated[0]
    assert len(sid) == len("synthetic-") + 12
    assert index.ntotal == n0 + 1
    mp4 = tmp_path / "synthetic" / f"{sid}.mp4"
    assert mp4.is_file() and (tmp_path / "synthetic" / f"{sid}.json").is_file()
    # in the index metadata, with its prompt
    meta = index.metadata.set_index("video_id")
    assert bool(meta.loc[sid, "synthetic"]) is True
    assert meta.loc[sid, "prompt"] == QUERY and meta.loc[sid, "backend"] == "montage"
    shots = json.loads(meta.loc[sid, "source_shots"])
    assert [s["phrase"] for s in shots] == ["a red circle", "a blue square"]
    # k=10 > 5 items: everything comes back, marked real/synthetic
    assert len(res.results) == n0 + 1
    assert [r["rank"] for r in res.results] == list(range(1, n0 + 2))
    scores = [r["score"] for r in res.results]
    assert scores == sorted(scores, reverse=True)
    syn = [r for r in res.results if r["synthetic"]]
    assert [r["video_id"] for r in syn] == [sid]
    assert syn[0]["provenance"]["prompt"] == QUERY and syn[0]["provenance"]["seed"] == 0
    real = [r for r in res.results if not r["synthetic"]]
    assert all(r["provenance"] is None and "caption" in r for r in real)
    # the indexed vector is the written mp4 embedded like any other video
    expected = pool_frames(world["encoder"].encode_images(sample_frames(mp4, n_frames=8).frames))
    np.testing.assert_allclose(index.reconstruct([sid])[0], expected, atol=1e-5)
    assert set(res.timings) >= {"encode_query", "search", "generate", "total"}

    # the same request again is recognised, not generated or added twice
    again = backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
                     out_dir=tmp_path, k=10, threshold=1.0, generate_kwargs=GEN)
    assert again.generated == [] and again.reused == [sid] and index.ntotal == n0 + 1


def test_threshold_zero_generates_nothing(world, tmp_path):
    index = _index(world)
    res = backfill(QUERY, encoder=world["encoder"], index=index, backend=_montage(world),
                   out_dir=tmp_path, k=3, threshold=0.0, generate_kwargs=GEN)
    assert not res.triggered and res.generated == [] and index.ntotal == 4
    assert len(res.results) == 3 and not any(r["synthetic"] for r in res.results)
    assert not (tmp_path / "synthetic").exists()


class CountingBackend(Backend):
    name = "counting"

    def __init__(self):
        self.calls = 0

    def _generate(self, prompt, *, num_frames, height, width, fps, seed, **_):
        self.calls += 1
        frames = np.zeros((num_frames, height, width, 3), np.uint8)
        frames[..., seed % 3] = 200
        return Clip(frames=frames, fps=float(fps),
                    provenance={"backend": self.name, "prompt": prompt, "seed": seed})


def test_n_generate_cache_and_budget(world, tmp_path):
    backend, cache = CountingBackend(), GenerationCache(tmp_path / "cache")
    index = _index(world)
    res = backfill("a green star", encoder=world["encoder"], index=index, backend=backend,
                   out_dir=tmp_path / "a", threshold=1.0, n_generate=2, generate_kwargs=GEN,
                   cache=cache)
    assert len(res.generated) == 2 and backend.calls == 2 and index.ntotal == 6
    # a fresh index, same requests: served from the cache, ids identical
    res2 = backfill("a green star", encoder=world["encoder"], index=_index(world), backend=backend,
                    out_dir=tmp_path / "b", threshold=1.0, n_generate=2, generate_kwargs=GEN,
                    cache=cache)
    assert backend.calls == 2 and res2.generated == res.generated
    assert (tmp_path / "b" / "synthetic" / f"{res.generated[0]}.mp4").is_file()
    # budget: skip with a reason, or raise
    skip = GenerationBudget(max_per_query=1, on_exceeded="skip")
    res3 = backfill("a pink moon", encoder=world["encoder"], index=_index(world), backend=backend,
                    out_dir=tmp_path / "c", threshold=1.0, n_generate=2, generate_kwargs=GEN,
                    budget=skip)
    assert len(res3.generated) == 1 and len(res3.skipped) == 1
    # generate_kwargs["seed"] is the first seed: seeds 5, 6
    res4 = backfill("a green star", encoder=world["encoder"], index=_index(world), backend=backend,
                    out_dir=tmp_path / "e", threshold=1.0, n_generate=2,
                    generate_kwargs={**GEN, "seed": 5})
    seeds = sorted(r["provenance"]["seed"] for r in res4.results if r["synthetic"])
    assert seeds == [5, 6] and not set(res4.generated) & set(res.generated)
    assert "max_per_query=1" in res3.skipped[0]
    with pytest.raises(BudgetExceeded):
        backfill("a pink moon", encoder=world["encoder"], index=_index(world), backend=backend,
                 out_dir=tmp_path / "d", threshold=1.0, generate_kwargs=GEN,
                 budget=GenerationBudget(max_per_run=0))


def test_argument_errors(world, tmp_path):
    kw = dict(encoder=world["encoder"], index=_index(world), backend=CountingBackend(),
              out_dir=tmp_path)
    with pytest.raises(ValueError, match="query=''"):
        backfill("", **kw)
    with pytest.raises(ValueError, match="k=0"):
        backfill("x", k=0, **kw)
    with pytest.raises(ValueError, match="threshold=2"):
        backfill("x", threshold=2, **kw)
    with pytest.raises(ValueError, match="seed=-1"):
        backfill("x", generate_kwargs={"seed": -1}, **kw)
    with pytest.raises(ValueError, match="unknown keys"):
        backfill("x", generate_kwargs={"frames": 3}, **kw)
    with pytest.raises(ValueError, match="height=33"):
        backfill("x", threshold=1.0, generate_kwargs={"height": 33}, **kw)
