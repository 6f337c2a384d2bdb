"""Tests for embeddings.video.decode: clips rendered here encode their frame index in their colour,
so a sampled frame's colour says which frame it is and when it should be shown."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from embeddings.video.decode import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    list_media,
    probe_video,
    rotate_frames,
    sample_frames,
)
from embeddings.video.segment import read_segment
from embeddings.video.write import write_video

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def index_frames(n: int, h: int = 32, w: int = 32) -> np.ndarray:
    """Solid frames whose colour encodes the frame index (16 levels per channel)."""
    i = np.arange(n)
    rgb = np.stack([i % 16, (i // 16) % 16, i // 256], axis=1) * 16 + 8
    return np.broadcast_to(rgb[:, None, None, :].astype(np.uint8), (n, h, w, 3)).copy()


def frame_index(frame: np.ndarray) -> int:
    """Inverse of index_frames, read from the frame's centre."""
    h, w = frame.shape[:2]
    r, g, b = (np.round((frame[h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(-1, 3).mean(0)
                         - 8) / 16)).astype(int)
    return int(r + 16 * g + 256 * b)


@pytest.fixture(scope="module")
def clip48(tmp_path_factory) -> Path:
    """48 frames at 12 fps (4 s), 32x32, frame i coloured by i."""
    return write_video(tmp_path_factory.mktemp("v") / "clip48.mp4", index_frames(48), 12, crf=10)


def test_sample_frames_returns_first_frame_at_or_after_each_target(clip48):
    s = sample_frames(clip48, 8)
    assert s.frames.shape == (8, 32, 32, 3) and s.frames.dtype == np.uint8
    assert s.timestamps_s.dtype == np.float64
    assert s.info.duration_s == pytest.approx(4.0, abs=1e-6)
    assert s.info.fps == pytest.approx(12.0) and s.info.n_frames == 48
    assert s.info.codec == "h264" and s.info.rotation == 0
    targets = [(i + 0.5) * 4.0 / 8 for i in range(8)]
    expected = [math.ceil(t * 12 - 1e-9) for t in targets]  # 3, 9, 15, ...
    got = [frame_index(f) for f in s.frames]
    assert got == expected
    np.testing.assert_allclose(s.timestamps_s, np.array(expected) / 12, atol=1e-6)


def test_seeking_decodes_far_fewer_frames_than_the_clip_holds(tmp_path):
    path = write_video(tmp_path / "long.mp4", index_frames(600, 16, 16), 30, crf=10,
                       keyframe_interval=30)
    s = sample_frames(path, 8)
    assert [frame_index(f) for f in s.frames] == [math.ceil((i + 0.5) * 600 / 8) for i in range(8)]
    # at most one GOP (30 frames) per target, plus the probe's first frame
    assert s.n_decoded <= 8 * 31 + 1
    assert s.n_decoded < 600 // 2


def test_tiny_clip_returns_duplicates_at_real_timestamps(tmp_path):
    path = write_video(tmp_path / "tiny.mp4", index_frames(3), 12, crf=10)
    s = sample_frames(path, 8)
    assert s.frames.shape[0] == 8
    idx = [frame_index(f) for f in s.frames]
    # targets (i + 0.5) * 0.25 / 8: first frame at or after each, the last frame past the end
    assert idx == [min(math.ceil((i + 0.5) * 0.25 / 8 * 12 - 1e-9), 2) for i in range(8)]
    assert idx == [1, 1, 1, 2, 2, 2, 2, 2]
    np.testing.assert_allclose(s.timestamps_s, np.array(idx) / 12, atol=1e-6)


def test_max_side_downscales_keeping_aspect(tmp_path):
    path = write_video(tmp_path / "wide.mp4", index_frames(12, 48, 80), 12)
    s = sample_frames(path, 2, max_side=40)
    assert s.frames.shape == (2, 24, 40, 3)
    assert s.info.width == 80 and s.info.height == 48
    assert sample_frames(path, 1, max_side=500).frames.shape == (1, 48, 80, 3)  # never upscale
    with pytest.raises(ValueError, match="max_side"):
        sample_frames(path, 1, max_side=0)
    with pytest.raises(ValueError, match="n_frames"):
        sample_frames(path, 0)


def test_write_video_pads_odd_sizes_and_validates(tmp_path):
    path = write_video(tmp_path / "odd.mp4", index_frames(6, 33, 47), 12)
    info = probe_video(path)
    assert (info.height, info.width) == (34, 48)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", index_frames(2).astype(np.float32), 12)
    with pytest.raises(ValueError, match="suffix"):
        write_video(tmp_path / "f.xyz", index_frames(2), 12)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "f.mp4", index_frames(2), 0)


def test_variable_frame_rate_uses_real_presentation_times(tmp_path):
    pts_ms = [0, 100, 150, 600, 700, 1500, 1600, 1990]
    path = tmp_path / "vfr.mkv"
    frames = index_frames(len(pts_ms))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "10", "bf": "0"}
        for image, pts in zip(frames, pts_ms, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    s = sample_frames(path, 5)
    duration = s.info.duration_s
    assert 1.99 <= duration <= 2.1
    times = np.array(pts_ms) / 1000
    for frame, ts, i in zip(s.frames, s.timestamps_s, range(5), strict=True):
        target = (i + 0.5) * duration / 5
        later = np.flatnonzero(times >= target - 1e-6)
        want = int(later[0]) if len(later) else len(times) - 1
        assert frame_index(frame) == want
        assert ts == pytest.approx(times[want], abs=1e-3)


def test_rotate_frames_turns_clockwise():
    img = np.zeros((2, 3, 3), np.uint8)
    img[:, 0] = 255  # left column red
    cw = rotate_frames(img, 90)
    assert cw.shape == (3, 2, 3) and (cw[0, :, 0] == 255).all()  # left went to the top
    ccw = rotate_frames(img, 270)
    assert (ccw[-1, :, 0] == 255).all()
    assert (rotate_frames(img, 180)[:, -1, 0] == 255).all()
    assert rotate_frames(img, 360) is img
    with pytest.raises(ValueError, match="rotation"):
        rotate_frames(img, 45)


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
                    reason="this PyAV cannot write a display matrix")
def test_display_matrix_rotation_is_applied(tmp_path):
    path = tmp_path / "rot.mp4"
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :32] = (220, 20, 20)   # left half red
    img[:, 32:] = (20, 20, 220)   # right half blue
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(-90)  # counter-clockwise -90 = clockwise 90, phone-style
        for _ in range(6):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    s = sample_frames(path, 2)
    assert s.info.rotation == 90
    assert (s.info.width, s.info.height) == (32, 64)
    assert s.frames.shape == (2, 64, 32, 3)
    top, bottom = s.frames[0, 8], s.frames[0, -8]
    assert top[:, 0].mean() > 150 and bottom[:, 2].mean() > 150  # red on top, blue below
    seg, _ = read_segment(path, 0.0, 0.2, size=(20, 10))
    assert seg.shape[1:] == (20, 10, 3)


@pytest.mark.parametrize("suffix,codec", [(".webm", "libvpx"), (".avi", "mpeg4"),
                                          (".mkv", "libx264")])
def test_other_containers_decode(tmp_path, suffix, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"bundled FFmpeg lacks {codec}")
    path = write_video(tmp_path / f"c{suffix}", index_frames(24), 12, codec=codec, crf=10)
    s = sample_frames(path, 4)
    assert s.info.duration_s == pytest.approx(2.0, abs=0.1)
    idx = [frame_index(f) for f in s.frames]
    np.testing.assert_allclose(s.timestamps_s, np.array(idx) / 12, atol=1e-3)
    for i, j in enumerate(idx):
        assert j == math.ceil((i + 0.5) * s.info.duration_s / 4 * 12 - 1e-6)


def _audio_only(path: Path) -> Path:
    codec = "aac" if "aac" in av.codecs_available else "mp2"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=44100)
        stream.layout = "mono"
        samples = (np.sin(np.arange(44100) / 10) * 0.3).astype(np.float32)[None]
        fmt = "fltp" if codec == "aac" else "s16"
        data = samples if fmt == "fltp" else (samples * 32000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_bad_inputs_raise_with_reason(tmp_path, clip48):
    cases = {}
    cases["missing file"] = tmp_path / "nope.mp4"
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases["zero-byte file"] = tmp_path / "empty.mp4"
    data = clip48.read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    cases["truncated or corrupt"] = tmp_path / "half.mp4"
    (tmp_path / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    cases["not a video"] = tmp_path / "notes.mp4"
    cases["no video stream"] = _audio_only(tmp_path / "sound.mka")
    (tmp_path / "dir.mp4").mkdir()
    cases["not a file"] = tmp_path / "dir.mp4"
    Image.fromarray(index_frames(1, 64, 64)[0]).save(tmp_path / "full.png")
    png = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(png[: len(png) // 2])
    cases["truncated or corrupt "] = tmp_path / "half.png"
    (tmp_path / "notes.jpg").write_text("not a picture either\n")
    cases["not a video or image"] = tmp_path / "notes.jpg"
    for reason, path in cases.items():
        for fn in (probe_video, sample_frames):
            with pytest.raises(VideoDecodeError) as err:
                fn(path)
            assert err.value.reason.startswith(reason.strip()), (path.name, err.value.reason)
            assert err.value.path == str(path) and path.name in str(err.value)


def test_still_images_are_one_frame_at_time_zero(tmp_path):
    img = np.zeros((30, 50, 3), np.uint8)
    img[:, :25] = (200, 10, 10)
    Image.fromarray(img).save(tmp_path / "a.png")
    s = sample_frames(tmp_path / "a.png", 8)
    assert s.frames.shape == (1, 30, 50, 3) and s.timestamps_s.tolist() == [0.0]
    np.testing.assert_array_equal(s.frames[0], img)
    assert s.info.n_frames == 1 and s.info.codec == "png"
    assert sample_frames(tmp_path / "a.png", max_side=25).frames.shape == (1, 15, 25, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 clockwise to display
    Image.fromarray(img).save(tmp_path / "b.jpg", exif=exif, quality=95)
    s = sample_frames(tmp_path / "b.jpg")
    assert s.frames.shape == (1, 50, 30, 3) and s.info.rotation == 90
    assert s.frames[0, :20, :, 0].mean() > 150  # the red left half is now on top
    frames, fps = read_segment(tmp_path / "a.png", 0, 2.0, fps=3)
    assert frames.shape == (6, 30, 50, 3) and fps == 3.0


def test_read_segment_native_resampled_and_resized(clip48):
    frames, fps = read_segment(clip48, 1.0, 1.0)
    assert fps == pytest.approx(12.0)
    assert [frame_index(f) for f in frames] == list(range(12, 24))
    frames, fps = read_segment(clip48, 1.0, 1.0, fps=6, size=(16, 24))
    assert fps == 6.0 and frames.shape == (6, 16, 24, 3)
    assert [frame_index(f) for f in frames] == list(range(12, 24, 2))
    frames, _ = read_segment(clip48, 3.5, 2.0)  # cut at the end of the stream
    assert [frame_index(f) for f in frames] == list(range(42, 48))
    frames, _ = read_segment(clip48, 3.5, 2.0, fps=12)
    assert [frame_index(f) for f in frames] == list(range(42, 48))
    with pytest.raises(ValueError, match="start_s"):
        read_segment(clip48, 4.0, 1.0)
    with pytest.raises(ValueError, match="duration_s"):
        read_segment(clip48, 0.0, 0.0)
    with pytest.raises(ValueError, match="size"):
        read_segment(clip48, 0.0, 1.0, size=(0, 3))


def test_list_media_sorted_filtered(tmp_path):
    for name in ["b.mp4", "a.JPG", "c.txt", ".hidden.mp4", "sub/d.webm", ".cache/e.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_media(tmp_path)]
    assert found == ["a.JPG", "b.mp4", "sub/d.webm"]
    assert [p.name for p in list_media(tmp_path, recursive=False)] == ["a.JPG", "b.mp4"]
    assert [p.name for p in list_media(tmp_path, "webm")] == ["d.webm"]
    assert ".gif" in VIDEO_EXTENSIONS and ".webp" in IMAGE_EXTENSIONS
    with pytest.raises(ValueError, match="folder"):
        list_media(tmp_path / "absent")


@pytest.mark.realdata
def test_real_clips_sample_within_duration():
    folder = DATA / "videos"
    if not folder.is_dir():
        pytest.skip(f"real data not found at {folder}")
    clips = list_media(folder)
    assert len(clips) == 16
    for path in clips:
        s = sample_frames(path, 8, max_side=160)
        info = s.info
        assert s.frames.shape[0] == 8 and s.frames.shape[-1] == 3, path.name
        assert max(s.frames.shape[1:3]) == min(160, max(info.width, info.height)), path.name
        assert 1.5 < info.duration_s < 31 and info.fps > 10 and info.codec == "h264", path.name
        ts = s.timestamps_s
        assert (ts >= 0).all() and (ts <= info.duration_s + 1e-6).all(), (path.name, ts)
        assert (np.diff(ts) > 0).all(), (path.name, ts)
        # each sample lands within two frame periods after its target
        targets = (np.arange(8) + 0.5) * info.duration_s / 8
        assert ((ts - targets) >= -1e-6).all() and ((ts - targets) <= 2 / info.fps).all(), path.name
        assert s.frames.std() > 5, path.name  # real picture content, not a blank frame


def test_unseekable_stream_without_duration_still_samples(tmp_path):
    """A raw H.264 elementary stream stores no duration and refuses to seek: the duration
    comes from a packet scan and sampling reads forward from the start."""
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for image in index_frames(50):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    s = sample_frames(path, 4)
    assert 1.0 < s.info.duration_s <= 2.1
    idx = [frame_index(f) for f in s.frames]
    assert idx == sorted(idx) and len(set(idx)) == 4
    np.testing.assert_allclose(s.timestamps_s, np.array(idx) / s.info.fps, atol=1e-6)


def test_animated_gif_decodes_as_video(tmp_path):
    images = [Image.fromarray(f) for f in index_frames(20, 40, 60)]
    images[0].save(tmp_path / "a.gif", save_all=True, append_images=images[1:], duration=100)
    s = sample_frames(tmp_path / "a.gif", 4)
    assert s.info.codec == "gif" and s.info.duration_s == pytest.approx(2.0)
    assert [frame_index(f) for f in s.frames] == [3, 8, 13, 18]
