"""``recsys serve --engine ray``: the same FastAPI application as a Ray Serve deployment.

Ray Serve's late-bound ingress (``@serve.ingress()`` on a class with ``__serve_build_asgi_app__``)
builds the application inside each replica when it starts, so every replica loads the encoder,
index and ranker once, and every route, the page and the error handlers are those of
:func:`recsys.serve.create_app`. Ray Serve's proxy takes the HTTP connections and passes the ASGI
messages to a replica (least-loaded of two picked at random).

What differs with several replicas (each one a separate process with its own copy):
``/metrics`` counts the replica that answered; generating ``/query`` calls are refused (each
replica would add clips to its own copy of the index, and a job's status would be known only to
the replica that ran it): serve backfill with ``--replicas 1``. ``/feedback`` appends under a file
lock, so replicas on one machine (or a shared file system with working locks) lose no rows.

Refs: Ray Serve docs, "Set Up FastAPI and HTTP" and ``ray.serve.ingress`` (Ray 2.60).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["RayServeUnavailableError", "import_serve", "build_application", "start_ray_serve",
           "check_resources", "replica_device"]

DEPLOYMENT_NAME = "recsys"
APP_NAME = "recsys"
# FastAPI runs sync routes on anyio's thread pool, 40 threads by default: under uvicorn at most 40
# requests run at once; the same bound per replica here (Ray Serve's default is 5).
MAX_ONGOING_REQUESTS = 40


class RayServeUnavailableError(ImportError):
    """Ray Serve (``ray[serve]``) is not installed but ``--engine ray`` was asked for."""


def import_serve():
    """Import and return ``ray.serve``.

    Raises
    ------
    RayServeUnavailableError
        Ray or its Serve extra is missing; the message gives the install command.
    """
    try:
        import ray  # noqa: F401
        from ray import serve
        from ray.serve import config  # noqa: F401  (imports Serve's optional dependencies)
    except ImportError as exc:
        raise RayServeUnavailableError(
            f"--engine ray needs Ray Serve, which is not installed ({exc}); install it with "
            "`pip install -e .[serve-ray]` (pulls ray[serve]), or use the default --engine uvicorn"
        ) from exc
    return serve


class RecsysIngress:
    """The deployment class: keeps :func:`create_app`'s arguments; Serve calls
    ``__serve_build_asgi_app__`` once per replica, after ``__init__``, and routes HTTP to the app."""

    def __init__(self, app_kwargs: dict):
        self.app_kwargs = dict(app_kwargs)

    def __serve_build_asgi_app__(self):
        from recsys.serve.app import create_app

        log.info("replica loading %s", self.app_kwargs.get("index_dir"))
        return create_app(**self.app_kwargs)


def replica_device(device: str, num_gpus: float) -> str:
    """The device each replica loads onto: CUDA exactly when GPUs are reserved for it.

    Parameters
    ----------
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``recsys serve --device``).
    num_gpus : float
        GPUs reserved per replica (``--num-gpus-per-replica``).

    Returns
    -------
    str
        ``cpu`` for ``auto`` without GPUs, ``cuda`` for ``auto`` with GPUs, else ``device``.

    Raises
    ------
    ValueError
        ``cuda`` without reserved GPUs (Ray hides unreserved GPUs from a replica), or ``cpu``
        with GPUs reserved (they would sit idle): never a silent fallback.
    """
    if num_gpus < 0 or not math.isfinite(num_gpus):
        raise ValueError(f"num_gpus_per_replica: got {num_gpus}; expected a number >= 0")
    if device == "auto":
        return "cuda" if num_gpus > 0 else "cpu"
    if device.startswith("cuda") and num_gpus == 0:
        raise ValueError(f"device={device!r} with num_gpus_per_replica=0: Ray gives a replica only the "
                         "GPUs reserved for it; pass --num-gpus-per-replica 1 (or a fraction)")
    if device == "cpu" and num_gpus > 0:
        raise ValueError(f"device='cpu' with num_gpus_per_replica={num_gpus}: the reserved GPUs would "
                         "sit idle; drop --num-gpus-per-replica or use --device auto")
    return device


def check_resources(cluster: dict, *, replicas: int, num_cpus: float, num_gpus: float) -> None:
    """Refuse a deployment the cluster cannot place (Serve would otherwise wait for it forever).

    Parameters
    ----------
    cluster : dict
        ``ray.cluster_resources()``: ``{"CPU": n, "GPU": m, ...}``.
    replicas, num_cpus, num_gpus
        The deployment's replica count and per-replica reservations.

    Raises
    ------
    ValueError
        When ``replicas * num_gpus`` (or ``* num_cpus``) exceeds what the cluster has, naming both
        numbers and the fix.
    """
    if replicas < 1:
        raise ValueError(f"replicas: got {replicas}; expected at least 1")
    if num_cpus < 0:
        raise ValueError(f"num_cpus_per_replica: got {num_cpus}; expected a number >= 0")
    for key, per, flag in (("GPU", num_gpus, "--num-gpus-per-replica"),
                           ("CPU", num_cpus, "--num-cpus-per-replica")):
        need, have = replicas * per, float(cluster.get(key, 0.0))
        if need > have + 1e-9:
            raise ValueError(
                f"{flag} {per:g} x --replicas {replicas} needs {need:g} {key}s but the Ray cluster has "
                f"{have:g}: lower {flag} or --replicas"
                + (", or add GPU nodes (`ray start --num-gpus N`)" if key == "GPU" else ""))


def build_application(app_kwargs: dict, *, replicas: int = 1, num_cpus: float = 1.0,
                      num_gpus: float = 0.0):
    """The Ray Serve application (``Deployment.bind``) serving :func:`create_app`.

    Parameters
    ----------
    app_kwargs : dict
        Keyword arguments of :func:`recsys.serve.create_app` (folders, device, token, limits).
        Paths must exist on every node that hosts a replica.
    replicas : int
        Number of replicas; each loads the encoder, index and ranker once.
    num_cpus, num_gpus : float
        Ray resources reserved per replica (fractions allowed).

    Returns
    -------
    ray.serve.Application
    """
    serve = import_serve()
    kwargs = dict(app_kwargs)
    if replicas > 1:
        kwargs["allow_backfill"] = False
    deployment = serve.deployment(
        serve.ingress()(RecsysIngress), name=DEPLOYMENT_NAME, num_replicas=replicas,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus})
    return deployment.bind(kwargs)


def start_ray_serve(app_kwargs: dict, *, host: str = "127.0.0.1", port: int = 8000,
                    replicas: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
                    address: str | None = None) -> Any:
    """Connect to (or start) Ray, start Serve's HTTP proxy on ``host:port`` and deploy the app.

    Returns once every replica has loaded and answers. Stop with :func:`stop_ray_serve`.

    Parameters
    ----------
    app_kwargs : dict
        :func:`recsys.serve.create_app` keyword arguments; ``device`` is resolved per replica by
        :func:`replica_device`.
    host, port
        Where Serve's proxies listen (``http_options``); ``127.0.0.1`` keeps it on this machine.
    replicas, num_cpus, num_gpus
        See :func:`build_application`.
    address : str, optional
        A running cluster (``HOST:6379``, ``auto``); None starts a local Ray instance.

    Returns
    -------
    ray.serve.handle.DeploymentHandle

    Raises
    ------
    RayServeUnavailableError
        Ray Serve is not installed.
    ValueError
        A configuration the cluster cannot place (see :func:`check_resources`,
        :func:`replica_device`); raised before anything is deployed.
    """
    serve = import_serve()
    import ray

    kwargs = {**app_kwargs, "device": replica_device(app_kwargs.get("device", "auto"), num_gpus)}
    # Serve's driver-side logger says INFO whatever the caller chose: follow the root logger
    logging.getLogger("ray.serve").setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    check_resources(ray.cluster_resources(), replicas=replicas, num_cpus=num_cpus, num_gpus=num_gpus)
    serve.start(http_options={"host": host, "port": int(port)},
                logging_config={"log_level": "WARNING", "enable_access_log": False})
    app = build_application(kwargs, replicas=replicas, num_cpus=num_cpus, num_gpus=num_gpus)
    handle = serve.run(app, name=APP_NAME, route_prefix="/",
                       logging_config={"log_level": "WARNING", "enable_access_log": False})
    log.info("Ray Serve: %d replica(s) of %s (pid %d) on http://%s:%d/", replicas, DEPLOYMENT_NAME,
             os.getpid(), host, port)
    return handle


def stop_ray_serve(shutdown_ray: bool = True) -> None:
    """Delete the application, stop Serve, and (by default) disconnect from Ray."""
    serve = import_serve()
    import ray

    if not ray.is_initialized():
        return
    try:
        serve.shutdown()
    finally:
        if shutdown_ray and ray.is_initialized():
            ray.shutdown()
