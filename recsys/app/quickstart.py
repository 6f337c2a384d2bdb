"""``recsys quickstart``: the whole pipeline on a sample it generates itself, offline.

It renders a dozen short clips of coloured shapes with captions that describe them (PyAV),
adds one deliberately truncated file to show how bad input is reported and skipped, makes a
synthetic interaction log with latent taste groups over those clips, and runs
:func:`recsys.app.pipeline.run_pipeline` with a tiny random-weight open_clip model and the offline
montage backfill backend. Nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from recsys.app.config import resolve_pipeline
from recsys.app.pipeline import RunResult, run_pipeline

log = logging.getLogger(__name__)

__all__ = ["make_quickstart_inputs", "run_quickstart", "QUICKSTART_QUERIES"]

QUICKSTART_QUERIES = ["a red circle moving on a dark background", "a blue square, then a green triangle"]


def make_quickstart_inputs(folder: str | os.PathLike, *, n_clips: int = 12, n_users: int = 80, seed: int = 0) -> dict:
    """Generate the sample catalog and interaction log under ``folder``; return pipeline settings for them.

    Returns
    -------
    dict
        A raw pipeline table dict (``catalog``, ``encoder``, ``interactions``, ``rank``,
        ``evaluate``, ``query``) ready for :func:`recsys.app.config.resolve_pipeline`; its paths are
        absolute, so any ``base_dir`` resolves them to the generated files.
    """
    from embeddings.video.samples import make_sample_catalog, make_sample_interactions

    # absolute paths: the returned settings are resolved against the run folder, so a relative
    # ``folder`` would be joined to it a second time (out/out/inputs/clips)
    folder = Path(folder).resolve()
    clips = folder / "clips"
    catalog = make_sample_catalog(clips, n_clips=n_clips, seed=seed)
    # one bad file, to show that it is reported and skipped while the rest completes
    good = Path(catalog["path"].iloc[0])
    good = good if good.is_absolute() else clips / good
    data = good.read_bytes()
    (clips / "truncated_upload.mp4").write_bytes(data[: len(data) // 3])
    # few interactions per user over 12 clips, so that taste groups, not popularity, explain the held-out items
    log_df = make_sample_interactions(n_users, catalog["video_id"].tolist(), seed=seed, n_per_user=(3, 6))
    log_path = folder / "interactions.csv"
    log_df.to_csv(log_path, index=False)
    return {
        "catalog": {"videos": str(clips), "captions": str(clips / "captions.csv"), "frames": 4, "max_side": 64},
        "encoder": {"model": "tiny-clip", "pretrained": "none", "batch_size": 32},
        "index": {"factory": "Flat"},
        "interactions": {"path": str(log_path)},
        "rank": {"models": ["ease", "popularity"], "k": 5, "params": {"ease": {"l2": 1.0}}},
        "evaluate": {"protocol": "random_holdout", "test_ratio": 0.2, "seed": 42, "k": 5},
        "query": {"texts": list(QUICKSTART_QUERIES), "k": 5, "backfill": "montage", "threshold": 1.0,
                  "num_frames": 16, "height": 64, "width": 64, "fps": 8},
    }


def run_quickstart(out: str | os.PathLike = "recsys-quickstart", *, model: str = "tiny-clip",
                   pretrained: str = "none", progress: bool = True) -> RunResult:
    """Generate the sample under ``out/inputs`` and run the pipeline into ``out``.

    Parameters
    ----------
    out : path-like
        Output folder; the report is ``out/report.md``. An earlier quickstart run there is
        replaced (the sample is regenerated each time).
    model, pretrained : str
        Encoder; by default the tiny random-weight ``tiny-clip`` (stated in the report). With a
        real model and tag (or checkpoint path) the sample is encoded with real weights.
    progress : bool
        Progress bars.

    Returns
    -------
    recsys.app.pipeline.RunResult

    Raises
    ------
    FileExistsError
        If ``out`` is a non-empty folder that does not hold an earlier quickstart run.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not ((out / "inputs").is_dir() and (out / "run.json").is_file()):
            raise FileExistsError(f"{out} exists and is not a quickstart folder; pass another --out")
        log.info("replacing the earlier quickstart run in %s", out)
        shutil.rmtree(out)  # the sample is regenerated each time: start from a clean folder
    raw = make_quickstart_inputs(out / "inputs")
    raw["encoder"].update(model=model, pretrained=pretrained)
    if model != "tiny-clip":
        raw["catalog"]["max_side"] = 256
    cfg = resolve_pipeline(raw, out)
    return run_pipeline(cfg, out, progress=progress)
