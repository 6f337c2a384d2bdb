"""Decode one time segment of a video at its native or a chosen frame rate (uses the private
helpers of :mod:`embeddings.video.decode`; :mod:`embeddings.video` re-exports :func:`read_segment`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from embeddings.video.decode import (
    IMAGE_EXTENSIONS,
    VideoDecodeError,
    _probe_open,
    _read_image,
    _to_rgb,
)

__all__ = ["read_segment"]


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
