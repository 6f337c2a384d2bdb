"""Decode video files and still images into RGB frames with PyAV.

Frame sampling seeks: for each target time the container is positioned on the keyframe
at or before it (``container.seek(..., backward=True, any_frame=False)``) and decoding runs
forward to the first frame whose presentation time reaches the target. When no keyframe lies
between the last decoded frame and the next target, decoding simply continues (a seek would
land on the same keyframe and decode the same frames again). A long clip is therefore never
decoded in full to sample a handful of frames. While decoding toward a target, packets shown
before it are sent with ``skip_frame = NONREF``: non-reference frames (most B-frames) there are
never decoded, since no other frame is predicted from them and none of them is the answer, so the
sampled frames are bit-identical to a plain decode (tests/embeddings/video/test_decode_skip.py); on the 16
shared clips this cut the frames decoded for 8 samples each from 3288 to 1948.

Timestamps are seconds from the first frame of the video stream (the stream's ``start_time``
is subtracted), so they run from 0 to ``VideoInfo.duration_s`` for every file.
Rotation metadata (display matrix side data, or the legacy ``rotate`` tag) is applied to the
returned frames with ``np.rot90``; sample-aspect-ratio (non-square pixels) is not corrected.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

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
    "rotate_frames",
]

VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts",
    ".flv", ".wmv", ".3gp", ".ogv", ".gif",
})
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

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
        # Non-reference frames shown before ``skip_before`` (seconds from the first frame) are
        # not decoded: no later frame is predicted from them, so every frame that is decoded is
        # bit-identical to a plain decode. None decodes everything.
        self.skip_before: float | None = None
        self.nonref_until = -math.inf  # latest time of a packet sent while skipping was on
        self._tb = float(tb)
        self._skipping = False

    def frames(self) -> Iterator:
        """Decode forward from the current position; stops quietly on a damaged tail.

        Packets whose presentation time lies more than ``_SKIP_MARGIN_S`` before
        ``self.skip_before`` (read anew for every packet) are sent with
        ``AVCodecContext.skip_frame = NONREF``: the decoder drops them when they are
        non-reference frames (H.264/HEVC ``nal_ref_idc == 0``, MPEG B-frames)."""
        ctx = self.stream.codec_context
        try:
            for packet in self.container.demux(self.stream):
                skip = False
                if self.skip_before is not None and packet.pts is not None:
                    t = packet.pts * self._tb - self.start
                    skip = t < self.skip_before - _SKIP_MARGIN_S
                    if skip:
                        self.nonref_until = max(self.nonref_until, t)
                if skip != self._skipping:
                    ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                    self._skipping = skip
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
            self._skipping = False  # a fresh codec context decodes everything
        return self.frames()

    def close(self) -> None:
        self.container.close()

    def keyframe_between(self, a: float, b: float) -> bool:
        """True when a keyframe lies in (a, b]; unknown index => True if b - a > 0.5 s."""
        if not self.keyframes:
            return b - a > 0.5
        i = bisect.bisect_right(self.keyframes, a)  # first keyframe after a
        return i < len(self.keyframes) and self.keyframes[i] <= b


# frames shown this close before a target are decoded even when nothing references them: the
# packet time computed here and PyAV's frame.time may differ in the last bits
_SKIP_MARGIN_S = 1e-3


def _index_entries(stream):
    try:
        return list(stream.index_entries)
    except (AttributeError, av.error.FFmpegError):  # PyAV < 14 has no index_entries
        return []


def _sample(reader: _Reader, targets: list[float], tol: float, skip_nonref: bool = True):
    """Return [(frame, t)] with the first frame at or after each target (sorted targets).

    With ``skip_nonref`` the decoder skips non-reference frames shown before the current target
    (:attr:`_Reader.skip_before`); the returned frames are those of a plain decode. When the
    stream ends before a target (its last decodable frame is returned) and a skipped frame may
    have been that last frame, the target is decoded again without skipping."""
    out = []
    it, last, last_t = None, None, None
    eof_frame = None  # (frame, t) of the stream's last frame once known
    try:
        for target in targets:
            if eof_frame is not None and target > eof_frame[1]:
                out.append(eof_frame)
                continue
            reader.skip_before = target - tol if skip_nonref else None
            hit, eof = None, False
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
                    it, eof, hit = None, True, (last, last_t)
            if hit is None:
                hit, it, last, last_t, eof = _seek_to(reader, target, tol)
            if eof and reader.nonref_until > hit[1]:
                # a skipped non-reference frame may have been the stream's last frame
                reader.skip_before = None
                hit, it, last, last_t, eof = _seek_to(reader, target, tol)
            if eof:
                eof_frame = hit
            out.append(hit)
    finally:
        reader.skip_before = None
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


def _scaled_size(width: int, height: int, max_side: int | None,
                 min_short: int | None = None) -> tuple[int, int]:
    """``(width, height)`` after the decode-time downscale (aspect kept, never an upscale).

    The longer side is brought down to ``max_side``, but never so far that the shorter side
    falls below ``min_short`` (the encoder's resize size): a 1280x720 clip with
    ``max_side=256, min_short=224`` decodes at 398x224, not 256x144, which the encoder's
    resize would then have to upscale (blurring the frames it embeds).
    """
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    if min_short is not None and min(width, height) * scale < min_short:
        scale = min(1.0, min_short / min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _check_max_side(max_side, min_short=None) -> None:
    for name, value in (("max_side", max_side), ("min_short", min_short)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name}={value!r} must be a positive int (pixels) or None")


def _to_rgb(frame, width: int, height: int, rotation: int) -> np.ndarray:
    arr = frame.to_ndarray(format="rgb24", width=width, height=height)
    return np.ascontiguousarray(rotate_frames(arr, rotation))


def _read_image(path: Path, max_side: int | None,
                min_short: int | None = None) -> tuple[np.ndarray, VideoInfo]:
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
    w, h = _scaled_size(rgb.width, rgb.height, max_side, min_short)
    if (w, h) != rgb.size:
        rgb = rgb.resize((w, h), Image.BILINEAR)
    rotation = {3: 180, 6: 90, 8: 270}.get(orientation, 0)
    info = VideoInfo(str(path), 0.0, 0.0, rgb.width, rgb.height, 1, codec, rotation)
    return np.asarray(rgb, dtype=np.uint8).copy(), info


def sample_frames(path, n_frames: int = 8, *, max_side: int | None = None,
                  min_short: int | None = None) -> SampledFrames:
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
    min_short : int or None
        Stop that downscale where the shorter side reaches this many pixels (pass the encoder's
        resize size so that its resize never upscales); None: no floor.

    Returns
    -------
    SampledFrames
        ``frames`` uint8 (n_frames, H, W, 3) RGB with rotation applied (1 frame for images),
        ``timestamps_s`` float64 (n_frames,) seconds from the first frame.

    Raises
    ------
    ValueError
        ``n_frames`` < 1, or ``max_side`` / ``min_short`` not a positive int or None.
    VideoDecodeError
        Missing, zero-byte, non-media, audio-only, truncated or corrupt file.
    """
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames={n_frames!r} must be an int >= 1")
    _check_max_side(max_side, min_short)
    path = Path(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        image, info = _read_image(path, max_side, min_short)
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
        w, h = _scaled_size(first.width, first.height, max_side, min_short)
        frames = np.stack([_to_rgb(f, w, h, info.rotation) for f, _ in hits])
        times = np.array([t for _, t in hits], dtype=np.float64)
        return SampledFrames(frames, times, info, reader.n_decoded)
    finally:
        reader.close()
