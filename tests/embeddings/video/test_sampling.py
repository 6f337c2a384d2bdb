"""Frame sampling strategies on clips rendered here, whose frame colour encodes the frame index."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from embeddings.video.decode import VideoDecodeError, sample_frames
from embeddings.video.sampling import SAMPLING_STRATEGIES, FrameSampler
from embeddings.video.write import write_video
from tests.embeddings.video.test_decode import frame_index, index_frames


@pytest.fixture(scope="module")
def clip48(tmp_path_factory):
    """48 frames at 12 fps (4 s), a keyframe every 12 frames."""
    return write_video(tmp_path_factory.mktemp("s") / "clip48.mp4", index_frames(48), 12, crf=10,
                       keyframe_interval=12)


def test_fps_strategy_takes_one_frame_every_period(clip48):
    s = FrameSampler("fps", fps=2.0).sample(clip48)
    # targets 0, 0.5, ..., 3.5 s -> frames 0, 6, ..., 42
    assert [frame_index(f) for f in s.frames] == list(range(0, 48, 6))
    np.testing.assert_allclose(s.timestamps_s, np.arange(0, 4, 0.5), atol=1e-6)


def test_fps_above_native_rate_keeps_each_frame_once(tmp_path):
    path = write_video(tmp_path / "slow.mp4", index_frames(6), 3, crf=10)  # 2 s at 3 fps
    s = FrameSampler("fps", fps=10.0).sample(path)
    assert [frame_index(f) for f in s.frames] == list(range(6))
    assert np.all(np.diff(s.timestamps_s) > 0)


def test_max_frames_keeps_an_evenly_spaced_subset(clip48):
    s = FrameSampler("fps", fps=12.0, max_frames=4).sample(clip48)
    # 48 targets thinned to round(linspace(0, 47, 4)) = 0, 16, 31, 47
    assert [frame_index(f) for f in s.frames] == [0, 16, 31, 47]


def test_keyframes_strategy_returns_exactly_the_coded_keyframes(clip48):
    with av.open(str(clip48)) as c:  # ground truth: decode everything, read the key flags
        truth = [round(float(f.time), 6) for f in c.decode(video=0) if f.key_frame]
    s = FrameSampler("keyframes").sample(clip48)
    assert len(truth) >= 4
    np.testing.assert_allclose(s.timestamps_s, truth, atol=1e-6)
    assert [frame_index(f) for f in s.frames] == [round(t * 12) for t in truth]


def shots_clip(path, lengths=(10, 14, 8), fps=8):
    """Solid red, green and blue shots with mild noise; returns (path, shot start seconds)."""
    rng = np.random.default_rng(0)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    parts = []
    for n, c in zip(lengths, colours, strict=True):
        base = np.broadcast_to(np.array(c, np.uint8), (n, 32, 48, 3)).astype(np.int16)
        parts.append(np.clip(base + rng.integers(-10, 11, base.shape), 0, 255).astype(np.uint8))
    write_video(path, np.concatenate(parts), fps, crf=10)
    return path, np.cumsum((0,) + tuple(lengths))[:-1] / fps


def test_shots_strategy_returns_one_frame_per_shot_from_its_middle(tmp_path):
    path, starts = shots_clip(tmp_path / "shots.mp4")
    s = FrameSampler("shots").sample(path)
    assert len(s.frames) == 3
    dominant = [int(np.argmax(f.reshape(-1, 3).mean(0))) for f in s.frames]
    assert dominant == [0, 1, 2]  # red, green, blue
    ends = np.append(starts[1:], 32 / 8)
    middles = (starts + ends) / 2
    assert np.all(s.timestamps_s >= middles - 1e-6) and np.all(s.timestamps_s < middles + 1 / 8 + 1e-6)


def test_shots_min_length_and_threshold_suppress_cuts(tmp_path):
    path, _ = shots_clip(tmp_path / "shots.mp4")
    assert len(FrameSampler("shots", min_shot_s=2.0).sample(path).frames) == 2  # 1.25 s shot merged
    # a change of the left half only moves half the histogram mass: distance 0.5
    frames = np.full((16, 32, 32, 3), 40, np.uint8)
    frames[8:, :, :16] = 220
    half = write_video(tmp_path / "half.mp4", frames, 8, crf=10)
    assert len(FrameSampler("shots", shot_threshold=0.4).sample(half).frames) == 2
    assert len(FrameSampler("shots", shot_threshold=0.6).sample(half).frames) == 1


def test_every_strategy_takes_still_images_as_one_frame(tmp_path):
    img = tmp_path / "cover.png"
    Image.fromarray(np.full((20, 30, 3), 77, np.uint8)).save(img)
    for strategy in SAMPLING_STRATEGIES:
        s = FrameSampler(strategy).sample(img, max_side=15)
        assert s.frames.shape == (1, 10, 15, 3) and s.timestamps_s.tolist() == [0.0]


def test_uniform_is_sample_frames(clip48):
    a = FrameSampler("uniform", n_frames=5).sample(clip48, max_side=16)
    b = sample_frames(clip48, 5, max_side=16)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.timestamps_s, b.timestamps_s)


def test_bad_settings_and_inputs(tmp_path):
    for kwargs, word in (({"strategy": "scenes"}, "strategy"), ({"fps": 0}, "fps"), ({"n_frames": 0}, "n_frames"),
                         ({"max_frames": 0}, "max_frames"), ({"shot_threshold": 1.5}, "shot_threshold"),
                         ({"min_shot_s": -1}, "min_shot_s")):
        with pytest.raises(ValueError, match=word):
            FrameSampler(**kwargs)
    empty = tmp_path / "e.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="zero-byte"):
        FrameSampler("shots").sample(empty)
    assert FrameSampler("keyframes").describe() == {"strategy": "keyframes", "max_frames": None}


def test_decode_downscale_never_takes_the_short_side_below_the_encoders_resize():
    from embeddings.video.decode import _scaled_size

    assert _scaled_size(1280, 720, 256) == (256, 144)  # no floor: the longer side rules
    assert _scaled_size(1280, 720, 256, 224) == (398, 224)  # floor: stop at the encoder's 224
    assert _scaled_size(720, 1280, 256, 224) == (224, 398)  # vertical short video
    assert _scaled_size(340, 256, 256, 224) == (298, 224)
    assert _scaled_size(320, 180, 256, 224) == (320, 180)  # never an upscale
    assert _scaled_size(200, 100, 256, 224) == (200, 100)  # already within max_side
    assert _scaled_size(1280, 720, None, 224) == (1280, 720)


@pytest.mark.parametrize("bad", [0, -224, 22.4, "224"])
def test_min_short_is_checked(bad, tmp_path):
    from embeddings.video.decode import sample_frames
    from embeddings.video.sampling import FrameSampler

    with pytest.raises(ValueError, match="min_short"):
        sample_frames(tmp_path / "any.mp4", 2, max_side=256, min_short=bad)
    with pytest.raises(ValueError, match="min_short"):
        FrameSampler("keyframes").sample(tmp_path / "any.mp4", max_side=256, min_short=bad)


def test_job_readers_decode_at_the_encoders_resize_size(tmp_path, monkeypatch):
    """The reader hands the encoder frames whose shorter side is the encoder's resize size,
    so open_clip's Resize is a no-op instead of an upscale of a 40-pixel-long frame."""
    from embeddings.encoders.open_clip import TINY_MODEL, load_encoder
    from embeddings.encoders.preprocess import FrameTransform
    from embeddings.job import read_input
    from embeddings.video.samples import render_clip
    from embeddings.video.sampling import FrameSampler

    enc = load_encoder(TINY_MODEL, "none", device="cpu")
    ft = FrameTransform(enc.transform)
    assert ft.input_short_side == 32
    clip = render_clip(tmp_path / "tall.mp4", n_frames=6, size=(160, 64), fps=6, seed=0)  # (H, W)
    seen = []
    original = FrameSampler.sample

    def spy(self, path, **kw):
        out = original(self, path, **kw)
        seen.append(out.frames.shape)
        return out

    monkeypatch.setattr(FrameSampler, "sample", spy)
    sampled, batch, _ = read_input(str(clip), FrameSampler("uniform", n_frames=2), 40, ft)
    assert seen == [(2, 80, 32, 3)]  # 64 wide x 160 tall -> short side 32 (not 16x40, then upscaled)
    assert tuple(batch.shape) == (2, 3, 32, 32)
