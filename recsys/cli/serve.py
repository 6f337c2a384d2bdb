"""``recsys serve``: arguments and handler (registered in :mod:`recsys.cli`)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_folders(path, ranker=None, embeddings=None, frames=None) -> dict:
    """Folders to serve from ``path``: an index folder, or a pipeline run folder (``recsys run``).

    A run folder holds ``index/``, ``embeddings/`` and ``models/<name>/``; its first model (by
    name) is the ranker unless ``ranker`` is given.

    Raises
    ------
    FileNotFoundError
        When ``path`` is neither an index folder nor a run folder.
    """
    p = Path(path)
    if (p / "index").is_dir() and not (p / "manifest.json").is_file():
        models = sorted(d for d in (p / "models").glob("*") if d.is_dir()) if (p / "models").is_dir() else []
        return {"index_dir": p / "index",
                "ranker_dir": ranker or (models[0] if models else None),
                "embeddings_dir": embeddings or ((p / "embeddings") if (p / "embeddings").is_dir() else None),
                "frames_dir": frames}
    if not p.is_dir():
        raise FileNotFoundError(f"INDEX_DIR {p} does not exist: pass a folder written by `recsys index "
                                "build` or a run folder written by `recsys run`")
    return {"index_dir": p, "ranker_dir": ranker, "embeddings_dir": embeddings, "frames_dir": frames}


def add_parser(sub, common: argparse.ArgumentParser, fmt) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``recsys`` subcommands."""
    s = sub.add_parser(
        "serve", parents=[common], formatter_class=fmt,
        help="HTTP service + browser page over an index (search, recommend, feedback, media, metrics).",
        description="Serve an index (or a `recsys run` folder) over HTTP: the encoder, index and ranker "
                    "load once. Page at /, OpenAPI docs at /docs, Prometheus metrics at /metrics.",
        epilog="Example:\n  recsys serve runs/qs --port 8000   # then open http://127.0.0.1:8000/")
    s.add_argument("index_dir", metavar="INDEX_DIR", help="index folder or pipeline run folder")
    s.add_argument("--ranker", metavar="MODEL_DIR", help="model folder from `recsys train` (/recommend)")
    s.add_argument("--embeddings", metavar="EMB_DIR", help="embedding folder (montage backfill in /query)")
    s.add_argument("--frames", metavar="FRAME_INDEX_DIR", help="frame index for level=frame searches")
    s.add_argument("--feedback-log", metavar="CSV", help="where /feedback appends (default "
                   "INDEX_DIR/../feedback.csv)")
    s.add_argument("--host", default="127.0.0.1",
                   help="bind address (default %(default)s: this machine only); any other needs --token")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--token", help="bearer token for the write endpoints (/feedback, generating /query)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto; with "
                   "--engine ray: cuda exactly when --num-gpus-per-replica > 0)")
    r = s.add_argument_group("engine", "uvicorn (one process) or a Ray Serve deployment of the same app")
    r.add_argument("--engine", choices=("uvicorn", "ray"), default="uvicorn",
                   help="default %(default)s; ray needs `pip install -e .[serve-ray]`")
    r.add_argument("--replicas", type=int, default=None,
                   help="Ray Serve replicas, each loading the index and encoder once (default 1)")
    r.add_argument("--num-cpus-per-replica", type=float, default=None, help="Ray CPUs per replica "
                   "(default 1)")
    r.add_argument("--num-gpus-per-replica", type=float, default=None, help="Ray GPUs per replica "
                   "(default 0; refused when the cluster has fewer)")
    r.add_argument("--address", help="running Ray cluster (HOST:6379 or auto); default: a local Ray "
                   "instance for the server's lifetime")
    s.set_defaults(func=cmd_serve)
    return s


RAY_FLAGS = ("replicas", "num_cpus_per_replica", "num_gpus_per_replica", "address")


def cmd_serve(args) -> int:
    """Load everything, then run uvicorn (or Ray Serve) until interrupted."""
    from recsys.cli import UsageError

    if not is_loopback(args.host) and not args.token:
        raise UsageError(f"--host {args.host} exposes the service beyond this machine: pass --token "
                         "SECRET so that /feedback and generating /query calls need it")
    if args.engine == "uvicorn":
        given = [f"--{f.replace('_', '-')}" for f in RAY_FLAGS if getattr(args, f) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} need --engine ray")
    try:
        folders = resolve_folders(args.index_dir, args.ranker, args.embeddings, args.frames)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    if args.engine == "ray":
        return _serve_ray(args, folders)
    import uvicorn

    from recsys.serve import create_app

    app = create_app(**folders, feedback_log=args.feedback_log, device=args.device, token=args.token)
    log.info("serving %s on http://%s:%d/ (docs at /docs)", folders["index_dir"], args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _serve_ray(args, folders: dict) -> int:
    """Deploy on Ray Serve, then block until Ctrl-C or SIGTERM; shut Serve and Ray down after."""
    import signal
    import threading

    from recsys.cli import UsageError
    from recsys.serve.ray_serve import (
        RayServeUnavailableError,
        import_serve,
        start_ray_serve,
        stop_ray_serve,
    )

    app_kwargs = {**{k: (str(v) if v is not None else None) for k, v in folders.items()},
                  "feedback_log": args.feedback_log, "device": args.device, "token": args.token}
    stop = threading.Event()

    def on_term(signum, frame):  # SIGTERM ends the local Ray processes too, like Ctrl-C
        stop.set()

    try:
        import_serve()
    except RayServeUnavailableError as e:
        raise UsageError(str(e)) from None
    previous = signal.getsignal(signal.SIGTERM)
    try:
        start_ray_serve(app_kwargs, host=args.host, port=args.port, replicas=args.replicas or 1,
                        num_cpus=1.0 if args.num_cpus_per_replica is None else args.num_cpus_per_replica,
                        num_gpus=args.num_gpus_per_replica or 0.0, address=args.address)
        # after ray.init, which installs its own handler that ends the driver without cleaning up
        signal.signal(signal.SIGTERM, on_term)
        log.info("serving %s with Ray Serve on http://%s:%d/ (docs at /docs)", folders["index_dir"],
                 args.host, args.port)
        while not stop.wait(0.5):
            pass
    except ValueError as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        pass
    finally:
        stop_ray_serve()
        signal.signal(signal.SIGTERM, previous)
    return 0
