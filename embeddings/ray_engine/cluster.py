"""Connecting to Ray: an existing cluster by address, or a local one for the duration of a call."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["RayUnavailableError", "import_ray", "ray_session"]

log = logging.getLogger(__name__)


class RayUnavailableError(ImportError):
    """Ray (``ray[data]``) is not installed but the Ray engine was asked for."""


def import_ray():
    """Import and return the ``ray`` module.

    Raises
    ------
    RayUnavailableError
        If Ray is not installed; the message gives the install command.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailableError(
            f"engine='ray' needs Ray Data, which is not installed ({exc}); install the extra with "
            "`pip install -e '.[distributed]'` (it pulls ray[data]) or use engine='local'") from exc
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                progress: bool = False) -> Iterator:
    """Yield the ``ray`` module connected to a cluster; disconnect afterwards if this call connected.

    Parameters
    ----------
    address : str or None
        ``"HOST:6379"`` (or ``"ray://HOST:10001"``, ``"auto"``) of a running cluster
        (``ray start --head``); None starts a local Ray instance on this machine for the call.
        If Ray is already initialised in this process, that connection is used as it is and
        ``address``/``num_cpus`` are ignored (logged).
    num_cpus : int or None
        CPUs of a local instance (None: all cores); not allowed with ``address``.
    progress : bool
        Ray Data progress bars.

    Raises
    ------
    RayUnavailableError
        Ray is not installed.
    ValueError
        ``num_cpus`` given together with ``address`` (a cluster's CPUs are set by ``ray start``).
    ConnectionError
        Nothing answers at ``address`` (Ray's own error, re-raised with the fix).
    """
    ray = import_ray()
    if address is not None and num_cpus is not None:
        raise ValueError(f"num_cpus={num_cpus!r} with address={address!r}: a running cluster's CPUs are "
                         "set by `ray start --num-cpus`; drop num_cpus")
    ray.data.DataContext.get_current().enable_progress_bars = bool(progress)
    if ray.is_initialized():
        if address is not None:
            log.info("Ray is already initialised in this process; using that connection, not %s", address)
        yield ray
        return
    try:
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False)
    except ConnectionError as exc:
        raise ConnectionError(f"no Ray cluster answers at address={address!r} ({exc}); start one with "
                              "`ray start --head` and pass the address it prints") from exc
    try:
        yield ray
    finally:
        ray.shutdown()
