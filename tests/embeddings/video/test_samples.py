"""Tests for embeddings.video.samples: captions must describe what the clips show, and interaction
logs must be reproducible and carry the taste structure they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embeddings.video.decode import probe_video
from embeddings.video.samples import (
    BACKGROUND,
    COLORS,
    SHAPES,
    make_sample_catalog,
    make_sample_interactions,
    render_clip,
    render_frames,
)
from embeddings.video.segment import read_segment


def _foreground(frame: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - np.array(BACKGROUND)).sum(-1) > 60


def _describe(frames: np.ndarray) -> tuple[str, str, str]:
    """(colour, shape, direction) read back from decoded pixels."""
    mid = frames[len(frames) // 2]
    mask = _foreground(mid)
    mean = mid[mask].mean(0)
    color = min(COLORS, key=lambda c: np.abs(np.array(COLORS[c]) - mean).sum())
    ys, xs = np.nonzero(mask)
    fill = mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))  # circle pi/4, square 1, triangle 1/2
    shape = "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"
    (y0, x0), (y1, x1) = (np.argwhere(_foreground(f)).mean(0) for f in (frames[0], frames[-1]))
    if abs(x1 - x0) > abs(y1 - y0):
        direction = "right" if x1 > x0 else "left"
    else:
        direction = "down" if y1 > y0 else "up"
    return color, shape, direction


@pytest.mark.parametrize("shape", SHAPES)
def test_render_frames_draws_the_named_shape_and_motion(shape):
    frames = render_frames(color=COLORS["blue"], shape=shape, n_frames=10, size=(48, 64),
                           direction="left", seed=3)
    assert frames.shape == (10, 48, 64, 3) and frames.dtype == np.uint8
    assert _describe(frames) == ("blue", shape, "left")
    np.testing.assert_array_equal(frames, render_frames(color=COLORS["blue"], shape=shape,
                                                        n_frames=10, size=(48, 64),
                                                        direction="left", seed=3))
    with pytest.raises(ValueError, match="shape"):
        render_frames(shape="hexagon")
    with pytest.raises(ValueError, match="color"):
        render_frames(color=(300, 0, 0))


def test_render_clip_writes_a_decodable_video(tmp_path):
    path = render_clip(tmp_path / "c.mp4", color=(0, 255, 0), n_frames=12, size=(32, 48), fps=6)
    info = probe_video(path)
    assert (info.height, info.width, info.n_frames) == (32, 48, 12)
    assert info.duration_s == pytest.approx(2.0)


def test_catalog_captions_describe_the_clips(tmp_path):
    df = make_sample_catalog(tmp_path / "cat", n_clips=12, seed=1, n_frames=12)
    assert list(df.columns[:5]) == ["video_id", "path", "caption", "color", "shape"]
    assert len(df) == 12 and df["video_id"].is_unique
    assert set(zip(df["color"], df["shape"], strict=True)) == {(c, s) for c in COLORS for s in SHAPES}
    on_disk = pd.read_csv(tmp_path / "cat" / "captions.csv")
    pd.testing.assert_frame_equal(on_disk.drop(columns="path"), df.drop(columns="path"))
    assert list(on_disk["path"]) == [Path(p).name for p in df["path"]]  # relative to the file

    for row in df.itertuples():
        assert row.caption == f"a {row.color} {row.shape} moving {row.direction} on a dark background"
        frames, _ = read_segment(row.path, 0.0, 1.0)
        assert _describe(frames) == (row.color, row.shape, row.direction), row.video_id
    again = make_sample_catalog(tmp_path / "cat2", n_clips=12, seed=1, n_frames=12)
    pd.testing.assert_frame_equal(again.drop(columns="path"), df.drop(columns="path"))
    with pytest.raises(ValueError, match="n_clips"):
        make_sample_catalog(tmp_path / "x", n_clips=0)


def test_a_copied_catalog_folder_still_joins_its_captions(tmp_path):
    """The captions file names clips relative to itself: a copy pairs each clip with its caption
    (absolute paths pointed at the original and left every copied clip uncaptioned, twice listed)."""
    import shutil

    from embeddings.video.catalog import discover_inputs

    make_sample_catalog(tmp_path / "cat", n_clips=3, seed=1, n_frames=6)
    shutil.copytree(tmp_path / "cat", tmp_path / "copy")
    shutil.rmtree(tmp_path / "cat")
    inputs = discover_inputs(tmp_path / "copy", tmp_path / "copy" / "captions.csv")
    assert len(inputs) == 3 and inputs["caption"].notna().all()
    assert all(str(tmp_path / "copy") in p for p in inputs["path"])


def test_interactions_are_deterministic_for_a_seed():
    ids = [f"v{i:03d}" for i in range(120)]
    a = make_sample_interactions(50, ids, seed=7)
    b = make_sample_interactions(50, ids, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["user_taste"] == b.attrs["user_taste"]
    c = make_sample_interactions(50, ids, seed=8)
    assert not a.equals(c)
    assert list(a.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert a["timestamp"].dtype == np.int64 and a["rating"].dtype == np.float64
    assert not a.duplicated(["user_id", "item_id"]).any()
    sizes = a.groupby("user_id").size()
    assert sizes.min() >= 5 and sizes.max() <= 20 and len(sizes) == 50
    assert (a.groupby("user_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing)).all()
    no_time = make_sample_interactions(5, ids, seed=7, with_timestamps=False)
    assert list(no_time.columns) == ["user_id", "item_id", "rating"]


def test_interactions_follow_user_taste(tmp_path):
    catalog = pd.DataFrame({"video_id": [f"v{i}" for i in range(120)],
                            "color": [list(COLORS)[i % 4] for i in range(120)],
                            "shape": [SHAPES[(i // 7) % 3] for i in range(120)]})
    log = make_sample_interactions(200, catalog, seed=0, noise=0.1)
    attrs = catalog.set_index("video_id")
    taste = log["user_id"].map(log.attrs["user_taste"])
    kind, value = taste.str.split("=", expand=True).T.values
    item_value = np.where(kind == "color", attrs.loc[log["item_id"], "color"],
                          attrs.loc[log["item_id"], "shape"])
    match = item_value == value
    per_user = pd.Series(match).groupby(log["user_id"].to_numpy()).mean()
    assert per_user.min() >= 0.75 and 0.85 <= match.mean() < 1.0  # mostly matching, some noise
    assert (log.loc[match, "rating"] >= 4).all() and (log.loc[~match, "rating"] <= 3).all()
    # plain ids get the catalogue's attributes by position
    plain = make_sample_interactions(20, list(catalog["video_id"]), seed=0, noise=0.0)
    assert len(plain) > 0
    with pytest.raises(ValueError, match="unique"):
        make_sample_interactions(3, ["a", "a"])
    with pytest.raises(ValueError, match="n_per_user"):
        make_sample_interactions(3, ["a", "b"], n_per_user=(4, 2))
