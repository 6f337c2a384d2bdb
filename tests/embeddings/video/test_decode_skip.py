"""Non-reference frames before a target are not decoded, and the sampled frames stay bit-identical
to a plain decode (embeddings.video.decode._Reader.skip_before)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from embeddings.video.decode import _probe_open, _sample, list_media, sample_frames
from embeddings.video.sampling import FrameSampler
from embeddings.video.write import write_video

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _moving(n=96, h=48, w=64) -> np.ndarray:
    """Textured frames that shift every frame: B-frames predict from their neighbours, so a wrongly
    skipped reference frame would show in the pixels."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (h, w * 4, 3), dtype=np.uint8)
    return np.stack([np.roll(texture, -3 * i, axis=1)[:, :w] for i in range(n)])


@pytest.fixture(scope="module")
def bclip(tmp_path_factory) -> Path:
    """One GOP of 96 frames at 24 fps with libx264's default B-frames (some non-reference)."""
    path = write_video(tmp_path_factory.mktemp("skip") / "b.mp4", _moving(), 24, crf=18, keyframe_interval=250)
    with av.open(str(path)) as c:
        types = {str(f.pict_type) for f in c.decode(video=0)}
    assert any("B" in t or t == "3" for t in types), types  # the clip really has B-frames
    return path


def _plain(path, targets):
    """First frame at or after each target by decoding every frame (the reference answer)."""
    with av.open(str(path)) as c:
        frames = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in c.decode(video=0)]
    out = []
    for tg in targets:
        hit = next(((a, t) for a, t in frames if t >= tg - 1e-6), frames[-1])
        out.append(hit)
    return out


def _run(path, targets, skip):
    reader, info, first = _probe_open(Path(path))
    try:
        reader.n_decoded = 1
        hits = _sample(reader, targets, 1e-6, skip_nonref=skip)
        return [(f.to_ndarray(format="rgb24"), t) for f, t in hits], reader.n_decoded
    finally:
        reader.close()


@pytest.mark.parametrize("n", [3, 8, 13])
def test_uniform_samples_are_bit_identical_and_cheaper(bclip, n):
    s = sample_frames(bclip, n)
    targets = [(i + 0.5) * s.info.duration_s / n for i in range(n)]
    want = _plain(bclip, targets)
    np.testing.assert_array_equal(s.frames, np.stack([a for a, _ in want]))
    np.testing.assert_allclose(s.timestamps_s, [t for _, t in want], atol=1e-9)
    _, plain_decoded = _run(bclip, targets, skip=False)
    assert s.n_decoded < plain_decoded


def test_targets_past_the_end_and_repeated_targets_match_plain_decode(bclip):
    targets = [0.0, 0.5, 0.5, 1.99, 3.9, 10.0, 20.0]
    got, _ = _run(bclip, targets, skip=True)
    want = _plain(bclip, targets)
    for (a, t), (b, u) in zip(got, want, strict=True):
        assert t == pytest.approx(u, abs=1e-9)
        np.testing.assert_array_equal(a, b)


def test_fps_sampling_matches_plain_decode(bclip):
    s = FrameSampler("fps", fps=5.0).sample(bclip)
    want = _plain(bclip, list(np.arange(0.0, s.info.duration_s, 0.2)))
    np.testing.assert_array_equal(s.frames, np.stack([a for a, _ in want]))


def test_skipping_is_off_after_sampling(bclip):
    """read_segment and the keyframes strategy reuse readers: skipping must not leak."""
    reader, info, _ = _probe_open(bclip)
    try:
        _sample(reader, [1.0, 2.0], 1e-6)
        assert reader.skip_before is None
        n0 = reader.n_decoded
        assert sum(1 for _ in reader.seek(0.0)) == 96
        assert reader.n_decoded - n0 == 96
    finally:
        reader.close()


@pytest.mark.realdata
@pytest.mark.slow
def test_real_clips_bit_identical_with_fewer_decoded_frames():
    folder = DATA / "videos"
    if not folder.is_dir():
        pytest.skip(f"real data not found at {folder}")
    fewer = 0
    for path in list_media(folder):
        s = sample_frames(path, 8)
        targets = [(i + 0.5) * s.info.duration_s / 8 for i in range(8)]
        plain, n_plain = _run(path, targets, skip=False)
        np.testing.assert_array_equal(s.frames, np.stack([a for a, _ in plain]), err_msg=path.name)
        np.testing.assert_allclose(s.timestamps_s, [t for _, t in plain], atol=1e-9)
        assert s.n_decoded <= n_plain, path.name
        fewer += s.n_decoded < n_plain
    assert fewer >= 10
