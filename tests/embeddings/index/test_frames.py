"""Frame-level retrieval: videos ranked by their best frame, with its timestamp."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embeddings.index.frames import FrameIndex, frame_id


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture()
def frames():
    # video a: frames along e0 (ts 0.0) and e1 (ts 2.5); video b: e1+e2 mix; video c: e3
    e = np.eye(4, dtype=np.float32)
    emb = _unit([e[0], e[1], e[1] + e[2], e[2], e[3]])
    df = pd.DataFrame({"video_id": ["a", "a", "b", "b", "c"],
                       "timestamp_s": [0.0, 2.5, 1.0, 3.0, 0.5], "frame_rank": [0, 1, 0, 1, 0]})
    return emb, df


def test_max_over_frames_with_timestamp(frames, tmp_path):
    emb, df = frames
    fi = FrameIndex.build(emb, df, factory_string="Flat")
    q = _unit([[0, 1, 0.1, 0]])
    res = fi.search(q, k=3)
    assert list(res.ids[0]) == ["a", "b", "c"]  # a's frame 1 (e1) is the best match
    assert res.timestamps_s[0, 0] == 2.5 and res.frame_ranks[0, 0] == 1
    assert res.scores[0, 0] == pytest.approx(float(q[0] @ emb[1]), abs=1e-6)
    assert res.timestamps_s[0, 1] == 1.0  # b's best frame is the e1+e2 mix
    assert np.all(np.diff(res.scores[0]) <= 0)
    # exclusion removes every frame of a video; padding when too few videos
    res = fi.search(q, k=3, exclude_ids=["a"])
    assert list(res.ids[0][:2]) == ["b", "c"] and res.ids[0][2] is None
    assert np.isneginf(res.scores[0, 2]) and np.isnan(res.timestamps_s[0, 2])
    fi.save(tmp_path / "f")
    back = FrameIndex.load(tmp_path / "f")
    assert list(back.search(q, k=1).ids[0]) == ["a"] and back.max_frames_per_video == 2
    assert frame_id("a", 1) in back.frames


def test_dimension_mismatch_and_missing_columns(frames):
    emb, df = frames
    fi = FrameIndex.build(emb, df)
    with pytest.raises(ValueError, match="dimension 5.*dimension 4"):
        fi.search(np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="timestamp_s"):
        FrameIndex.build(emb, df.drop(columns="timestamp_s"))
