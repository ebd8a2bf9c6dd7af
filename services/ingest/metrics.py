"""Ingest's Prometheus metrics (default registry, exposed by the runner's /metrics)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "replyline_ingest_requests_total",
    "HTTP requests answered by ingest, by route and status code.",
    ["route", "status"],
)
LATENCY = Histogram(
    "replyline_ingest_request_seconds",
    "Time to answer an ingest HTTP request, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def _route(request: web.Request) -> str:
    # The route template (/api/drafts/{draft}/approve), never the raw path: bounded labels.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route(request)
        REQUESTS.labels(route, str(status)).inc()
        LATENCY.labels(route).observe(time.perf_counter() - started)
