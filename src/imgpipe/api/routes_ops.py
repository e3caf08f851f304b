"""Prometheus metrics for operators, and request timing for every route."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgpipe.services import queries
from imgpipe.services.deps import ServiceDeps
from imgpipe.storage.base import Protection
from imgpipe.telemetry import metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
def prometheus_metrics(request: Request) -> Response:
    """This process's counters and histograms, plus queue depth and unfinished images."""
    deps: ServiceDeps = request.app.state.deps
    live = CollectorRegistry(auto_describe=False)
    live.register(_BacklogCollector(deps))
    body = generate_latest(_recorded()) + generate_latest(live)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _recorded() -> CollectorRegistry:
    """This process's metrics, or every process's under `imgpipe api --workers N`.

    With several API processes on one port, a scrape reaches any one of them; in
    prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the command
    before the processes start) each records to files there and any one reports the sum.
    """
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


class _BacklogCollector(Collector):
    """Read at scrape time: the broker's queue length and the database's backlog."""

    def __init__(self, deps: ServiceDeps) -> None:
        self._deps = deps

    def collect(self):  # type: ignore[no-untyped-def]
        unfinished = GaugeMetricFamily(
            "imgpipe_images_unfinished", "Images pending or processing, from the database."
        )
        unfinished.add_metric([], queries.count_unfinished(self._deps))
        yield unfinished
        protection = self._deps.durability.protection
        if protection:
            versioning = GaugeMetricFamily(
                "imgpipe_storage_versioning",
                "1 when the store keeps object versions (S3 versioning enabled), checked at start.",
                labels=["store"],
            )
            lock = GaugeMetricFamily(
                "imgpipe_storage_object_lock",
                "1 when the bucket has object lock enabled, checked at start.",
                labels=["store"],
            )
            for name, value in protection.items():
                known = value if isinstance(value, Protection) else None
                on = known is not None and known.versioning == "enabled"
                versioning.add_metric([name], 1.0 if on else 0.0)
                lock.add_metric([name], 1.0 if known is not None and known.object_lock else 0.0)
            yield versioning
            yield lock
        depth = self._deps.queue.depth()
        if depth is not None:
            queue = GaugeMetricFamily("imgpipe_queue_depth", "Jobs waiting in the broker queue.")
            queue.add_metric([], depth)
            yield queue


class RequestTiming:
    """Pure ASGI middleware timing every request by route template and status.

    Starlette's BaseHTTPMiddleware (``@app.middleware``) runs each request through an extra
    task and stream; as plain ASGI this costs a function call, which matters for cache
    hits served in about a millisecond.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_SECONDS.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )
