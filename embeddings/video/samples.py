"""Procedural sample data: rendered clips with true captions, and interaction logs with
latent structure. Used by tests and the quickstart; no downloads, no OpenCV.

A clip shows one coloured shape (circle, square or triangle) moving across a dark background,
so its caption is exactly right by construction. Interaction logs come from users who each
prefer one colour or one shape and mostly pick items that match it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from embeddings._io import atomic_path
from embeddings.video.write import write_video

logger = logging.getLogger(__name__)

__all__ = ["COLORS", "SHAPES", "DIRECTIONS", "BACKGROUND", "render_clip", "render_frames",
           "make_sample_catalog", "make_sample_interactions"]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30), "green": (30, 200, 50), "blue": (40, 70, 235), "yellow": (240, 220, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: tuple[str, ...] = ("right", "left", "up", "down")
BACKGROUND: tuple[int, int, int] = (18, 18, 26)


def _check_size(size) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) != s or s < 8 for s in size):
        raise ValueError(f"size={size!r} must be (height, width) ints >= 8 pixels")
    return int(size[0]), int(size[1])


def render_frames(*, color=(255, 0, 0), shape: str = "circle", n_frames: int = 24,
                  size: tuple[int, int] = (64, 64), direction: str = "right",
                  seed: int = 0) -> np.ndarray:
    """Draw the frames of a clip: one shape moving in a straight line over ``BACKGROUND``.

    Parameters
    ----------
    color : (r, g, b) ints 0..255
    shape : {"circle", "square", "triangle"}
    n_frames : int >= 1
    size : (height, width) pixels, each >= 8
    direction : {"right", "left", "up", "down"}
        The shape crosses the frame from one side to the other in that direction.
    seed : int
        Jitters the shape's radius and its position across the motion axis.

    Returns
    -------
    uint8 ndarray (n_frames, height, width, 3) RGB

    Raises
    ------
    ValueError
        Unknown ``shape`` or ``direction``, bad ``color``, ``size`` or ``n_frames``.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape={shape!r}; expected one of {SHAPES}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}; expected one of {DIRECTIONS}")
    if len(color) != 3 or any(int(c) != c or not 0 <= c <= 255 for c in color):
        raise ValueError(f"color={color!r} must be three ints in 0..255 (r, g, b)")
    if int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames={n_frames!r} must be an int >= 1")
    h, w = _check_size(size)
    rng = np.random.default_rng(seed)
    r = min(h, w) * rng.uniform(0.16, 0.22)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    frames = np.empty((n_frames, h, w, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    along = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.array([0.5])
    across = rng.uniform(0.4, 0.6)
    for i, a in enumerate(along):
        if direction in ("right", "left"):
            frac = a if direction == "right" else 1.0 - a
            cx, cy = r + frac * (w - 2 * r), across * h
        else:
            frac = a if direction == "down" else 1.0 - a
            cx, cy = across * w, r + frac * (h - 2 * r)
        if shape == "circle":
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif shape == "square":
            mask = (np.abs(xx - cx) <= r * 0.9) & (np.abs(yy - cy) <= r * 0.9)
        else:  # apex up; half-width grows linearly from 0 at the top to r at the base
            depth = yy - (cy - r)
            mask = (depth >= 0) & (depth <= 2 * r) & (np.abs(xx - cx) <= depth / 2)
        frames[i][mask] = color
    return frames


def render_clip(path, *, color=(255, 0, 0), shape: str = "circle", n_frames: int = 24,
                size: tuple[int, int] = (64, 64), fps: float = 12, seed: int = 0,
                direction: str = "right") -> Path:
    """Render a procedural clip (see :func:`render_frames`) and write it with ``write_video``.

    Parameters
    ----------
    path : path-like
        Output video (.mp4 gives H.264, written atomically).
    color, shape, n_frames, size, seed, direction
        As :func:`render_frames`; ``size`` is (height, width).
    fps : float
        Frames per second (> 0).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        Bad arguments (see :func:`render_frames` and ``write_video``).
    """
    frames = render_frames(color=color, shape=shape, n_frames=n_frames, size=size,
                           direction=direction, seed=seed)
    return write_video(path, frames, fps, crf=18)


def _combo(i: int) -> tuple[str, str]:
    colors = list(COLORS)
    return colors[i % len(colors)], SHAPES[(i // len(colors)) % len(SHAPES)]


def make_sample_catalog(folder, n_clips: int = 12, *, seed: int = 0,
                        size: tuple[int, int] = (64, 64), n_frames: int = 24,
                        fps: float = 12) -> pd.DataFrame:
    """Render ``n_clips`` clips into ``folder`` and write ``folder/captions.csv``.

    Clip ``i`` has colour ``list(COLORS)[i % 4]`` and shape ``SHAPES[(i // 4) % 3]``, so the
    default 12 clips cover every colour x shape pair once; the direction of motion is drawn
    from a generator seeded with ``seed``. Captions read e.g.
    ``"a red circle moving right on a dark background"``.

    Parameters
    ----------
    folder : path-like
        Created if needed; existing files of the same names are replaced.
    n_clips : int >= 1
    seed : int
    size : (height, width) pixels
    n_frames : int
    fps : float

    Returns
    -------
    pandas.DataFrame
        Columns ``video_id, path, caption, color, shape, direction``; ``path`` is the absolute
        path of the clip (also valid when joined onto the folder, as manifest paths are).
        The same rows are written to ``captions.csv`` (atomically), with ``path`` relative to
        that file (the clip's name) so the folder stays valid when moved or copied.

    Raises
    ------
    ValueError
        ``n_clips`` < 1, or bad rendering arguments.
    """
    if int(n_clips) != n_clips or n_clips < 1:
        raise ValueError(f"n_clips={n_clips!r} must be an int >= 1")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(int(n_clips)):
        color, shape = _combo(i)
        direction = DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
        video_id = f"sample_{i:03d}_{color}_{shape}"
        path = render_clip(folder / f"{video_id}.mp4", color=COLORS[color], shape=shape,
                           n_frames=n_frames, size=size, fps=fps, seed=seed * 100003 + i,
                           direction=direction)
        rows.append({"video_id": video_id, "path": str(path),
                     "caption": f"a {color} {shape} moving {direction} on a dark background",
                     "color": color, "shape": shape, "direction": direction})
    df = pd.DataFrame(rows)
    # the file stores paths relative to itself (the clip's name), so the folder can be moved or
    # copied and its captions still join (the catalog resolves relative paths against the folder)
    on_disk = df.assign(path=[Path(p).name for p in df["path"]])
    with atomic_path(folder / "captions.csv") as tmp:
        on_disk.to_csv(tmp, index=False)
    return df


def make_sample_interactions(n_users: int, item_ids, *, seed: int = 0,
                             n_per_user: tuple[int, int] = (5, 20),
                             with_timestamps: bool = True, noise: float = 0.1) -> pd.DataFrame:
    """Synthetic interaction log with latent taste groups.

    Each user prefers one colour or one shape (drawn uniformly among the 7 tastes). A user
    interacts with ``n ~ Uniform{n_per_user}`` distinct items (capped at the catalogue size):
    ``round(n * (1 - noise))`` drawn from items matching the taste (all of them if fewer
    match), the rest from the other items. Matching items get ratings 4-5, others 1-3.

    Parameters
    ----------
    n_users : int >= 1
    item_ids : sequence of str, or DataFrame with ``video_id``, ``color``, ``shape`` columns
        (the output of :func:`make_sample_catalog`). Plain ids get the catalogue's attributes
        by position (item ``i`` has the colour and shape of clip ``i``).
    seed : int
        Same seed, same log.
    n_per_user : (low, high) ints, 1 <= low <= high
    with_timestamps : bool
        Add an int64 ``timestamp`` column (unix seconds, increasing within each user).
    noise : float in [0, 1]
        Share of interactions outside the user's taste.

    Returns
    -------
    pandas.DataFrame
        Columns ``user_id`` (str ``"u0000"``...), ``item_id`` (str), ``rating`` (float64),
        and ``timestamp`` (int64) when asked; one row per (user, item) pair.
        ``df.attrs["user_taste"]`` maps user_id to ``"color=red"`` / ``"shape=circle"``.

    Raises
    ------
    ValueError
        Bad ``n_users``, empty or duplicated ``item_ids``, bad ``n_per_user`` or ``noise``.
    """
    if int(n_users) != n_users or n_users < 1:
        raise ValueError(f"n_users={n_users!r} must be an int >= 1")
    if isinstance(item_ids, pd.DataFrame):
        missing = {"video_id", "color", "shape"} - set(item_ids.columns)
        if missing:
            raise ValueError(f"item_ids DataFrame lacks columns {sorted(missing)}; pass the "
                             f"output of make_sample_catalog or a list of ids")
        ids = item_ids["video_id"].astype(str).to_numpy()
        colors = item_ids["color"].astype(str).to_numpy()
        shapes = item_ids["shape"].astype(str).to_numpy()
    else:
        if isinstance(item_ids, str) or not isinstance(item_ids, (Sequence, np.ndarray, pd.Index)):
            raise ValueError(f"item_ids={item_ids!r} must be a sequence of ids or a DataFrame")
        ids = np.asarray([str(x) for x in item_ids], dtype=object)
        combos = [_combo(i) for i in range(len(ids))]
        colors = np.array([c for c, _ in combos])
        shapes = np.array([s for _, s in combos])
    if len(ids) == 0 or len(set(ids)) != len(ids):
        raise ValueError(f"item_ids must be non-empty and unique; got {len(ids)} ids, "
                         f"{len(set(ids))} distinct")
    lo, hi = n_per_user
    if not (int(lo) == lo and int(hi) == hi and 1 <= lo <= hi):
        raise ValueError(f"n_per_user={n_per_user!r} must be (low, high) ints, 1 <= low <= high")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise={noise!r} must be in [0, 1]")
    rng = np.random.default_rng(seed)
    tastes = [("color", c) for c in COLORS] + [("shape", s) for s in SHAPES]
    rows, user_taste = [], {}
    base = 1_700_000_000
    for u in range(int(n_users)):
        user_id = f"u{u:04d}"
        kind, value = tastes[int(rng.integers(len(tastes)))]
        user_taste[user_id] = f"{kind}={value}"
        match = (colors if kind == "color" else shapes) == value
        pool_in, pool_out = np.flatnonzero(match), np.flatnonzero(~match)
        n = min(int(rng.integers(lo, hi + 1)), len(ids))
        n_in = min(len(pool_in), int(round(n * (1.0 - noise))))
        n_out = min(len(pool_out), n - n_in)
        n_in = min(len(pool_in), n - n_out)  # top up from matches if too few others
        chosen = np.concatenate([rng.choice(pool_in, n_in, replace=False),
                                 rng.choice(pool_out, n_out, replace=False)]).astype(int)
        rng.shuffle(chosen)
        times = base + np.sort(rng.integers(0, 30 * 86400, size=len(chosen)))
        for item, t in zip(chosen, times, strict=True):
            rating = float(rng.integers(4, 6) if match[item] else rng.integers(1, 4))
            rows.append((user_id, ids[item], rating, int(t)))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    df["timestamp"] = df["timestamp"].astype(np.int64)
    if not with_timestamps:
        df = df.drop(columns="timestamp")
    df.attrs["user_taste"] = user_taste
    logger.debug("made %d interactions for %d users", len(df), n_users)
    return df
