"""Prometheus metrics for operators, and request timing for every route."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from imgpipe.services import queries
from imgpipe.services.deps import ServiceDeps
from imgpipe.telemetry import metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
def prometheus_metrics(request: Request) -> Response:
    """This process's counters and histograms, plus queue depth and unfinished images."""
    deps: ServiceDeps = request.app.state.deps
    live = CollectorRegistry(auto_describe=False)
    live.register(_BacklogCollector(deps))
    body = generate_latest(REGISTRY) + generate_latest(live)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


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
        depth = self._deps.queue.depth()
        if depth is not None:
            queue = GaugeMetricFamily("imgpipe_queue_depth", "Jobs waiting in the broker queue.")
            queue.add_metric([], depth)
            yield queue


async def time_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "unmatched")
    metrics.HTTP_SECONDS.labels(request.method, template, str(response.status_code)).observe(
        time.perf_counter() - started
    )
    return response
