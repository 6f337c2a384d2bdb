"""Decode video files and still images into RGB frames with PyAV.

Frame sampling seeks: for each target time the container is positioned on the keyframe
at or before it (``container.seek(..., backward=True, any_frame=False)``) and decoding runs
forward to the first frame whose presentation time reaches the target. When no keyframe lies
between the last decoded frame and the next target, decoding simply continues (a seek would
land on the same keyframe and decode the same frames again). A long clip is therefore never
decoded in full to sample a handful of frames.

Timestamps are seconds from the first frame of the video stream (the stream's ``start_time``
is subtracted), so they run from 0 to ``VideoInfo.duration_s`` for every file.
Rotation metadata (display matrix side data, or the legacy ``rotate`` tag) is applied to the
returned frames with ``np.rot90``; sample-aspect-ratio (non-square pixels) is not corrected.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from embeddings._io import atomic_path

logger = logging.getLogger(__name__)

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "VideoDecodeError",
    "VideoInfo",
    "SampledFrames",
    "list_media",
    "probe_video",
    "sample_frames",
    "read_segment",
    "write_video",
    "rotate_frames",
]

VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts",
    ".flv", ".wmv", ".3gp", ".ogv", ".gif",
})
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

# muxer name for write_video, by suffix (the temp file of atomic_path ends in .tmp)
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
           ".webm": "webm", ".avi": "avi"}
# leading bytes of containers we recognise: a file that starts like one of these but cannot
# be opened is "truncated or corrupt", anything else is "not a video"
_MAGIC = (b"\x1a\x45\xdf\xa3", b"RIFF", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"GIF8",
          b"OggS", b"FLV", b"\x30\x26\xb2\x75", b"\x89PNG", b"\xff\xd8\xff", b"BM",
          b"\x47")
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


class VideoDecodeError(Exception):
    """A media file could not be decoded.

    Attributes
    ----------
    path : str
        The file.
    reason : str
        Short human reason: ``"missing file"``, ``"zero-byte file"``, ``"not a file"``,
        ``"no video stream"``, ``"truncated or corrupt: ..."``, ``"not a video: ..."``.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """Stream facts of one media file.

    ``duration_s`` is seconds from the first video frame; ``fps`` the average frame rate
    (0.0 for still images); ``width``/``height`` the displayed size in pixels (after rotation);
    ``n_frames`` the container's frame count, or ``round(duration_s * fps)`` when the container
    does not store one; ``rotation`` the clockwise rotation in degrees (0, 90, 180, 270) applied
    to decoded frames for display (the convention of the ``rotate`` tag).
    """

    path: str
    duration_s: float
    fps: float
    width: int
    height: int
    n_frames: int
    codec: str
    rotation: int


@dataclass
class SampledFrames:
    """Frames sampled from one file.

    frames : uint8 (N, H, W, 3) RGB, rotation applied.
    timestamps_s : float64 (N,), seconds from the first frame, non-decreasing.
    info : the file's :class:`VideoInfo`.
    n_decoded : frames the decoder produced to obtain the sample (cost diagnostic).
    """

    frames: np.ndarray
    timestamps_s: np.ndarray
    info: VideoInfo
    n_decoded: int = 0


def list_media(folder, extensions: Iterable[str] = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS,
               recursive: bool = True) -> list[Path]:
    """List media files under ``folder``, sorted by path.

    Parameters
    ----------
    folder : path-like
        Folder to scan.
    extensions : iterable of str or str
        Suffixes to keep, matched case-insensitively (``".mp4"`` or ``"mp4"``). A single string
        is one suffix.
    recursive : bool
        Descend into sub-folders. Hidden files and folders (name starting with ``.``, such as
        the temporary files of atomic writes) are skipped.

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    ValueError
        ``folder`` is not an existing folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"folder={str(folder)!r} is not an existing folder; pass the folder "
                         f"that holds the media files")
    if isinstance(extensions, str):
        extensions = (extensions,)
    wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    found = root.rglob("*") if recursive else root.glob("*")
    out = []
    for p in found:
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel):
            continue
        if p.suffix.lower() in wanted and p.is_file():
            out.append(p)
    return sorted(out)


def rotate_frames(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate frames clockwise by ``rotation`` degrees (a multiple of 90).

    Parameters
    ----------
    frames : ndarray (..., H, W, C)
    rotation : int
        Clockwise degrees, as :attr:`VideoInfo.rotation`.

    Returns
    -------
    ndarray (..., H, W, C) or (..., W, H, C) for 90/270; a view when possible.

    Raises
    ------
    ValueError
        ``rotation`` is not a multiple of 90.
    """
    if rotation % 90:
        raise ValueError(f"rotation={rotation!r} is not a multiple of 90 degrees")
    k = (rotation // 90) % 4
    # np.rot90 with positive k turns counter-clockwise, so clockwise is -k
    return np.rot90(frames, k=-k, axes=(-3, -2)) if k else frames


# ---------------------------------------------------------------- opening and probing


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoDecodeError(path, "missing file")
    if not path.is_file():
        raise VideoDecodeError(path, "not a file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "zero-byte file")


def _short(exc) -> str:
    """FFmpeg's message without the errno and path PyAV adds."""
    return getattr(exc, "strerror", None) or str(exc)


def _open_failure_reason(path: Path, exc) -> str:
    with open(path, "rb") as f:
        head = f.read(64)
    looks_known = head[4:8] in _MP4_BOXES or any(head.startswith(m) for m in _MAGIC[:-1]) or (
        head[:1] == _MAGIC[-1] and len(head) > 1)  # MPEG-TS sync byte
    if looks_known:
        return f"truncated or corrupt: {_short(exc)}"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "not a video: the file is text"
    return f"not a video: unrecognised format ({_short(exc)})"


def _open(path: Path):
    _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(path, _open_failure_reason(path, exc)) from exc
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoDecodeError(path, "no video stream" + (f" (streams: {', '.join(kinds)})"))
    return container


def _rotation_from(frame, stream) -> int:
    """Clockwise display rotation in degrees from frame side data or stream metadata."""
    ccw = getattr(frame, "rotation", None)  # PyAV >= 13: display matrix, counter-clockwise
    if ccw:
        return int(round(-float(ccw) / 90.0)) * 90 % 360
    tag = stream.metadata.get("rotate")
    if tag:
        try:
            return int(round(float(tag) / 90.0)) * 90 % 360
        except ValueError:
            logger.warning("ignoring unparsable rotate tag %r", tag)
    return 0


def _stream_start(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time else 0.0


def _duration(reader: _Reader, fps: float) -> float:
    """Seconds from the first frame: stream duration, else container duration, else a scan."""
    stream, container = reader.stream, reader.container
    if stream.duration and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / 1e6  # container.duration is in AV_TIME_BASE (microseconds)
    # Last resort, for streams that store no duration anywhere (raw elementary streams,
    # live-muxed files): one demux pass reads packet headers only, nothing is decoded.
    # Without timestamps the packets are counted and divided by the frame rate.
    logger.info("%s stores no duration; scanning packets", reader.path)
    end, count = None, 0
    for packet in container.demux(stream):
        if packet.size:
            count += 1
        if packet.pts is not None:
            t = float((packet.pts + (packet.duration or 0)) * stream.time_base)
            end = t if end is None else max(end, t)
    if end is not None:
        return max(0.0, end - reader.start)
    return count / fps if fps else 0.0


def _probe_open(path: Path):
    """Open, validate and describe; returns (reader, info, first_frame)."""
    reader = _Reader(_open(path), path)
    try:
        stream = reader.stream
        frames = reader.frames()
        first = next(frames, None)
        frames.close()
        if first is None:
            raise VideoDecodeError(path, "truncated or corrupt: no decodable video frame")
        rotation = _rotation_from(first, stream)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration = _duration(reader, fps)
        n = int(stream.frames or 0) or (max(1, round(duration * fps)) if fps else 1)
        if not fps and duration > 0:
            fps = n / duration
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        info = VideoInfo(str(path), duration, fps, int(w), int(h), n,
                         stream.codec_context.name, rotation)
        reader.n_decoded = 0
        return reader, info, first
    except BaseException:
        reader.close()
        raise


def probe_video(path) -> VideoInfo:
    """Describe a video or still image (decodes one frame to prove the file is readable).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    VideoInfo

    Raises
    ------
    VideoDecodeError
        Missing, zero-byte, non-media, audio-only, truncated or corrupt file.
    """
    path = Path(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return _read_image(path, None)[1]
    reader, info, _ = _probe_open(path)
    reader.close()
    return info


# ---------------------------------------------------------------- decoding


class _Reader:
    """Forward decoder over one video stream that survives seeks and decode errors."""

    def __init__(self, container, path: Path):
        self.container, self.stream, self.path = container, container.streams.video[0], path
        stream = self.stream
        self.n_decoded = 0
        self.start = _stream_start(stream)
        tb = stream.time_base
        self.keyframes = sorted(float(e.timestamp * tb) - self.start
                                for e in _index_entries(stream) if e.is_keyframe)

    def frames(self) -> Iterator:
        """Decode forward from the current position; stops quietly on a damaged tail."""
        try:
            for packet in self.container.demux(self.stream):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError as exc:
                    logger.warning("%s: skipping undecodable packet (%s)", self.path, exc)
                    continue
                for frame in decoded:
                    self.n_decoded += 1
                    yield frame
        except av.error.FFmpegError as exc:
            logger.warning("%s: decoding stopped early (%s)", self.path, exc)

    def time(self, frame, previous: float | None) -> float:
        if frame.time is None:  # no pts: assume constant rate after the previous frame
            rate = float(self.stream.average_rate or 25)
            return 0.0 if previous is None else previous + 1.0 / rate
        return float(frame.time) - self.start

    def seek(self, t: float) -> Iterator:
        """Position at or before ``t`` (seconds from the first frame); frames from there on.

        Unseekable inputs (raw elementary streams) are reopened and read from the start."""
        offset = int(math.floor((t + self.start) / float(self.stream.time_base)))
        try:
            self.container.seek(max(offset, 0), stream=self.stream, backward=True,
                                any_frame=False)
        except av.error.FFmpegError as exc:
            logger.info("%s: cannot seek (%s); reading from the start", self.path, _short(exc))
            self.container.close()
            self.container = _open(self.path)
            self.stream = self.container.streams.video[0]
        return self.frames()

    def close(self) -> None:
        self.container.close()

    def keyframe_between(self, a: float, b: float) -> bool:
        """True when a keyframe lies in (a, b]; unknown index => True if b - a > 0.5 s."""
        if not self.keyframes:
            return b - a > 0.5
        i = bisect.bisect_right(self.keyframes, a)  # first keyframe after a
        return i < len(self.keyframes) and self.keyframes[i] <= b


def _index_entries(stream):
    try:
        return list(stream.index_entries)
    except (AttributeError, av.error.FFmpegError):  # PyAV < 14 has no index_entries
        return []


def _sample(reader: _Reader, targets: list[float], tol: float):
    """Return [(frame, t)] with the first frame at or after each target (sorted targets)."""
    out = []
    it, last, last_t = None, None, None
    eof_frame = None  # (frame, t) of the stream's last frame once known
    for target in targets:
        if eof_frame is not None and target > eof_frame[1]:
            out.append(eof_frame)
            continue
        hit = None
        if last_t is not None and last_t >= target - tol:  # previous hit is also this one's
            hit = (last, last_t)
        elif it is not None and last_t is not None and last_t <= target and \
                not reader.keyframe_between(last_t, target):
            for frame in it:
                t = reader.time(frame, last_t)
                last, last_t = frame, t
                if t >= target - tol:
                    hit = (frame, t)
                    break
            else:
                it = None
                eof_frame = (last, last_t)
                hit = eof_frame
        if hit is None:
            hit, it, last, last_t, eof = _seek_to(reader, target, tol)
            if eof:
                eof_frame = hit
        out.append(hit)
    return out


def _seek_to(reader: _Reader, target: float, tol: float):
    """Seek to the keyframe before ``target`` and decode forward; back off when the seek
    lands after the target or past the end (then the last decodable frame is returned)."""
    tried = set()
    for backoff in (0.0, 1.0, 4.0, 16.0, None):
        seek_t = 0.0 if backoff is None else max(0.0, target - backoff)
        if seek_t in tried:
            continue
        tried.add(seek_t)
        it = reader.seek(seek_t)
        first_t, last, last_t = None, None, None
        for frame in it:
            t = reader.time(frame, last_t)
            if first_t is None:
                first_t = t
                if t > target + tol and seek_t > 0.0:
                    break  # landed after the target: seek earlier
            last, last_t = frame, t
            if t >= target - tol:
                return (frame, t), it, last, last_t, False
        else:
            if last is not None:  # stream ended before the target: last decodable frame
                return (last, last_t), None, last, last_t, True
    raise VideoDecodeError(reader.path, "truncated or corrupt: no decodable video frame")


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _check_max_side(max_side) -> None:
    if max_side is not None and (not isinstance(max_side, (int, np.integer)) or max_side < 1):
        raise ValueError(f"max_side={max_side!r} must be a positive int (pixels) or None")


def _to_rgb(frame, width: int, height: int, rotation: int) -> np.ndarray:
    arr = frame.to_ndarray(format="rgb24", width=width, height=height)
    return np.ascontiguousarray(rotate_frames(arr, rotation))


def _read_image(path: Path, max_side: int | None) -> tuple[np.ndarray, VideoInfo]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    _check_file(path)
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation tag
            img.load()
            rgb = ImageOps.exif_transpose(img).convert("RGB")
            codec = (img.format or "image").lower()
    except UnidentifiedImageError as exc:
        reason = _open_failure_reason(path, "unidentified image data")
        raise VideoDecodeError(path, reason.replace("not a video", "not a video or image")) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise VideoDecodeError(path, f"truncated or corrupt: {exc}") from exc
    w, h = _scaled_size(rgb.width, rgb.height, max_side)
    if (w, h) != rgb.size:
        rgb = rgb.resize((w, h), Image.BILINEAR)
    rotation = {3: 180, 6: 90, 8: 270}.get(orientation, 0)
    info = VideoInfo(str(path), 0.0, 0.0, rgb.width, rgb.height, 1, codec, rotation)
    return np.asarray(rgb, dtype=np.uint8).copy(), info


def sample_frames(path, n_frames: int = 8, *, max_side: int | None = None) -> SampledFrames:
    """Sample ``n_frames`` frames uniformly in time, by seeking.

    Target times are ``(i + 0.5) * duration_s / n_frames`` for ``i = 0..n_frames-1``
    (centres of equal slices); each returns the first frame whose presentation time is at or
    after the target. Clips with fewer frames than requested return duplicates of the
    available frames, each with its real timestamp. When a target lies past the last
    decodable frame (stated duration longer than the data, truncated tail) the last
    decodable frame is returned.

    Parameters
    ----------
    path : path-like
        Video file, or a still image (IMAGE_EXTENSIONS: one frame, timestamp 0).
    n_frames : int
        Number of frames, >= 1.
    max_side : int or None
        Downscale (aspect kept, never upscale) so the longer side is at most this many pixels;
        done by FFmpeg's scaler during the RGB conversion.

    Returns
    -------
    SampledFrames
        ``frames`` uint8 (n_frames, H, W, 3) RGB with rotation applied (1 frame for images),
        ``timestamps_s`` float64 (n_frames,) seconds from the first frame.

    Raises
    ------
    ValueError
        ``n_frames`` < 1 or ``max_side`` not a positive int.
    VideoDecodeError
        Missing, zero-byte, non-media, audio-only, truncated or corrupt file.
    """
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames={n_frames!r} must be an int >= 1")
    _check_max_side(max_side)
    path = Path(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        image, info = _read_image(path, max_side)
        return SampledFrames(image[None], np.zeros(1), info, 1)
    reader, info, first = _probe_open(path)
    try:
        reader.n_decoded = 1  # the probe decoded the first frame
        tol = 1e-6
        targets = [(i + 0.5) * info.duration_s / n_frames for i in range(n_frames)]
        hits = _sample(reader, targets, tol)
        late = [tg for (_, t), tg in zip(hits, targets, strict=True) if tg - t > 2.0 / (info.fps or 1)]
        if late:
            logger.warning("%s: decodable frames end at %.3f s but the stated duration is "
                           "%.3f s; %d sample(s) use the last decodable frame", path,
                           hits[-1][1], info.duration_s, len(late))
        w, h = _scaled_size(first.width, first.height, max_side)
        frames = np.stack([_to_rgb(f, w, h, info.rotation) for f, _ in hits])
        times = np.array([t for _, t in hits], dtype=np.float64)
        return SampledFrames(frames, times, info, reader.n_decoded)
    finally:
        reader.close()


def read_segment(path, start_s: float, duration_s: float, *, fps: float | None = None,
                 size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Decode the frames of ``[start_s, start_s + duration_s)``.

    Parameters
    ----------
    path : path-like
        Video file; a still image yields copies of itself.
    start_s, duration_s : float
        Seconds from the first frame; ``duration_s > 0``. The segment is cut at the end of
        the stream.
    fps : float or None
        Output rate. None keeps the native frames (and returns the stream's average rate).
        Otherwise output frame ``j`` shows the latest frame at or before
        ``start_s + j / fps`` (frames are dropped or repeated, as FFmpeg's ``fps`` filter).
        For a still image None means a single frame at rate ``1 / duration_s``.
    size : (height, width) or None
        Output size in pixels after rotation; None keeps the displayed size.

    Returns
    -------
    frames : uint8 ndarray (F, H, W, 3) RGB, F >= 1
    fps : float
        Frames per second of ``frames``.

    Raises
    ------
    ValueError
        Negative ``start_s``, non-positive ``duration_s``/``fps``, bad ``size``, or
        ``start_s`` at or after the end of the video.
    VideoDecodeError
        The file cannot be decoded.
    """
    if not start_s >= 0:
        raise ValueError(f"start_s={start_s!r} must be >= 0 seconds")
    if not duration_s > 0:
        raise ValueError(f"duration_s={duration_s!r} must be > 0 seconds")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps={fps!r} must be > 0 frames per second, or None for native")
    if size is not None and (len(size) != 2 or any(int(s) != s or s < 1 for s in size)):
        raise ValueError(f"size={size!r} must be (height, width) positive ints, or None")
    path = Path(path)
    end_s = start_s + duration_s
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        image, _ = _read_image(path, None)
        if size is not None:
            from PIL import Image
            image = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
        n = 1 if fps is None else max(1, math.ceil(duration_s * fps - 1e-9))
        return np.repeat(image[None], n, axis=0), (1.0 / duration_s if fps is None else float(fps))
    reader, info, first = _probe_open(path)
    try:
        if start_s >= info.duration_s:
            raise ValueError(f"start_s={start_s!r} is at or after the end of {path} "
                             f"({info.duration_s:.3f} s); pass a start before the end")
        if size is None:
            w, h = first.width, first.height
        else:
            h, w = size if info.rotation in (0, 180) else size[::-1]
        it = reader.seek(start_s)
        kept, prev, prev_t = [], None, None  # prev: latest frame before start_s
        for frame in it:
            t = reader.time(frame, prev_t)
            if t >= end_s:
                break
            if t < start_s - 1e-6:
                prev, prev_t = frame, t
                continue
            kept.append((frame, t))
            prev_t = t
        if fps is None:
            if not kept and prev is not None:
                kept = [(prev, prev_t)]
            out = [f for f, _ in kept]
            rate = info.fps
        else:
            pool = ([(prev, prev_t)] if prev is not None else []) + kept
            last_t = pool[-1][1] if pool else start_s
            frame_len = 1.0 / info.fps if info.fps else 0.0
            stop = min(end_s, last_t + frame_len) if pool else start_s
            n = max(1, math.ceil((stop - start_s) * fps - 1e-9))
            times = [f_t for _, f_t in pool]
            out = []
            for j in range(n):
                tj = start_s + j / fps
                idx = max(0, int(np.searchsorted(times, tj + 1e-6, side="right")) - 1)
                out.append(pool[idx][0])
            rate = float(fps)
        if not out:
            raise VideoDecodeError(path, "truncated or corrupt: no frame in the segment")
        return np.stack([_to_rgb(f, w, h, info.rotation) for f in out]), rate
    finally:
        reader.close()


# ---------------------------------------------------------------- encoding


def write_video(path, frames, fps: float, *, codec: str = "libx264", crf: int = 23,
                keyframe_interval: int | None = None) -> Path:
    """Encode RGB frames to a video file, atomically (temporary name, then rename).

    Parameters
    ----------
    path : path-like
        Output file; its suffix picks the container (.mp4/.m4v/.mov/.mkv/.webm/.avi).
    frames : uint8 array-like (F, H, W, 3), RGB, F >= 1
        Odd heights/widths are padded to even by repeating the last row/column (yuv420p
        needs even sizes); the output is then one pixel larger in that dimension.
    fps : float
        Frames per second (> 0); stored as a fraction (29.97 -> 2997/100).
    codec : str
        FFmpeg encoder name: ``"libx264"`` (H.264, default), ``"libvpx"``/``"libvpx-vp9"``
        (for .webm), ``"mpeg4"`` and others the bundled FFmpeg provides.
    crf : int
        Constant rate factor for libx264/libx265/libvpx*, lower is better quality
        (x264 range 0-51, 23 its default). Other encoders ignore it and get a high bit rate.
    keyframe_interval : int or None
        Maximum frames between keyframes (GOP size); None keeps the encoder default.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        Bad ``frames`` (dtype, shape, empty), ``fps``, ``crf``, suffix or ``codec``.
    """
    path = Path(path)
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1:
        raise ValueError(f"frames has dtype {arr.dtype} and shape {arr.shape}; expected uint8 "
                         f"(F>=1, H, W, 3) RGB (convert floats with (x*255).round().astype(np.uint8))")
    if not fps > 0:
        raise ValueError(f"fps={fps!r} must be > 0 frames per second")
    if not (isinstance(crf, (int, np.integer)) and 0 <= crf <= 63):
        raise ValueError(f"crf={crf!r} must be an int in 0..63 (x264: 0..51, default 23)")
    muxer = _MUXERS.get(path.suffix.lower())
    if muxer is None:
        raise ValueError(f"path={str(path)!r} has suffix {path.suffix!r}; expected one of "
                         f"{sorted(_MUXERS)}")
    if codec not in av.codecs_available:
        raise ValueError(f"codec={codec!r} is not available in PyAV's FFmpeg; try 'libx264'")
    pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(float(fps)).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format=muxer) as out:
            stream = out.add_stream(codec, rate=rate)
            stream.width, stream.height = arr.shape[2], arr.shape[1]
            stream.pix_fmt = "yuv420p"
            if keyframe_interval is not None:
                stream.codec_context.gop_size = int(keyframe_interval)
            if codec in ("libx264", "libx265"):
                stream.options = {"crf": str(int(crf))}
            elif codec.startswith("libvpx"):
                stream.options = {"crf": str(int(crf)), "b:v": "0" if codec != "libvpx" else "4M"}
            else:
                stream.bit_rate = int(max(1e6, arr.shape[1] * arr.shape[2] * float(fps) * 2))
            for image in arr:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        os.chmod(tmp, 0o644)
    return path
