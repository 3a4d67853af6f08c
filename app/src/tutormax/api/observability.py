"""Prometheus metrics per route, and response headers saying who answered and from where.

Under gunicorn each worker is a process: prometheus_client's multiprocess mode (enabled by the
``PROMETHEUS_MULTIPROC_DIR`` environment variable, which ``tutormax-api`` sets up) sums the
workers' samples, so ``/metrics`` reports the whole instance whichever worker answers.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tutormax.data.db import read_sources

REQUESTS = Counter("tutormax_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "tutormax_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
WEBSOCKETS = Gauge("tutormax_websocket_connections", "Open WebSocket connections", multiprocess_mode="livesum")


class ObservabilityMiddleware:
    """Counts and times requests by route template; adds X-Instance-Id and X-Read-Source."""

    def __init__(self, app: ASGIApp, instance_id: str) -> None:
        self.app = app
        self.instance_header = (b"x-instance-id", instance_id.encode("latin-1", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        sources: list[str] = []
        token = read_sources.set(sources)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append(self.instance_header)
                if sources:
                    headers.append((b"x-read-source", ",".join(dict.fromkeys(sources)).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            read_sources.reset(token)
            # FastAPI routes leave their template in the scope. The few plain routes (openapi.json,
            # docs, /metrics) have fixed paths; anything else unrouted is "unmatched", so random
            # URLs never create label values.
            route = scope.get("route")
            path = getattr(route, "path", None) or (scope["path"] if status < 400 else "unmatched")
            method = scope.get("method", "GET")
            REQUESTS.labels(method, path, str(status)).inc()
            LATENCY.labels(method, path).observe(time.perf_counter() - start)


async def metrics_endpoint(_request: Request) -> Response:
    """Prometheus exposition of this instance (all workers)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest(REGISTRY)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
