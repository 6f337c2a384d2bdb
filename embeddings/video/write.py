"""Encode RGB frames to a video file with PyAV (split out of :mod:`embeddings.video.decode`)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from embeddings._io import atomic_path

__all__ = ["write_video"]

# muxer name for write_video, by suffix (the temp file of atomic_path ends in .tmp)
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
           ".webm": "webm", ".avi": "avi"}

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
