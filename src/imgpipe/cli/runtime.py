"""Process-level tuning for long-lived workers, done before any work starts."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import tempfile

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas, as MALLOC_ARENA_MAX=2 would.

    glibc gives each thread that allocates under contention an arena of its own and
    rarely returns their memory; libvips' worker threads allocate large, short-lived
    buffers, so a long-lived worker's RSS climbs for hours without any leak (the top
    complaint against sharp, imgproxy and imaginary). Two arenas keep it flat at a cost
    of a little lock contention. Forked Celery children inherit the setting.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return  # the operator chose; glibc already applied it at start-up
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        libc = ctypes.CDLL(libc_name)
        if libc.mallopt(_M_ARENA_MAX, arenas) != 1:
            log.warning("mallopt(M_ARENA_MAX) was refused; RSS may grow with arenas")
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return


def prepare_multiprocess_metrics() -> str:
    """Point prometheus-client at a fresh directory shared by the worker's children.

    Must run before anything imports imgpipe.telemetry.metrics.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="imgpipe-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def serve_multiprocess_metrics(port: int, host: str = "127.0.0.1") -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
