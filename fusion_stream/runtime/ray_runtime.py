"""A Ray runtime for work spread over processes or machines (fleet evaluation, scenario
rendering): a local one started and stopped here, quiet, or an existing cluster joined.

Ray is an optional extra (``fusion-stream[cluster]``), imported only when asked for. Everything
that runs on Ray goes through :func:`ray_runtime`, so start, stop and signals behave the same."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fusion_stream.errors import UsageError

MAX_RESTARTS = 2
"""How often Ray restarts a worker that died (killed, out of memory) and retries its work."""
CLUSTER_EXTRA = "pip install 'fusion-stream[cluster]'"


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def is_local(address: str | None) -> bool:
    """No address (or ``local``): a runtime of our own on this machine."""
    return address in (None, "local")


def check_reachable(address: str) -> None:
    """A ``HOST:PORT`` that does not answer is refused at once: ``ray.init`` would wait forever."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "//" in host:  # "auto", "ray://...": Ray's own checks
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UsageError(f"--ray-address {address}: no Ray cluster answers there ({err})") from err


@contextmanager
def ray_runtime(workers: int, address: str | None = None) -> Iterator[str]:
    """Connect this process to Ray and yield the cluster's GCS address: a local runtime with
    ``workers`` CPUs (no dashboard, workers' output not relayed) started here, or the cluster at
    ``address``. On leaving, however that happens (Ctrl-C included), this process disconnects and
    a local runtime stops with every worker. A runtime this process already joined (``ray.init``
    by the caller, or an enclosing ``ray_runtime``) is used as it is and left running."""
    try:
        import ray
    except ImportError as err:
        raise UsageError(f"running on several workers needs Ray: {CLUSTER_EXTRA}") from err
    if address and not is_local(address):
        check_reachable(address)
    if ray.is_initialized():
        yield str(ray.get_runtime_context().gcs_address)
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    local = is_local(address)
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(
            address=address or "local",
            num_cpus=workers if local else None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.ERROR,
        )
    except ConnectionError as err:  # no cluster there, or one that wants a token (RAY_AUTH_TOKEN)
        raise UsageError(f"--ray-address {address}: {err} ({err.__cause__})") from err
    if on_term is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)  # Ray's core put in one that aborts the process
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()
