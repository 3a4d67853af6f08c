"""Prometheus metrics per route, an access log line per request, and response headers saying who
answered and from where.

Under gunicorn each worker is a process: prometheus_client's multiprocess mode (enabled by the
``PROMETHEUS_MULTIPROC_DIR`` environment variable, which ``tutormax-api`` sets up) sums the
workers' samples, so ``/metrics`` reports the whole instance whichever worker answers.

The access line (logger ``tutormax.access``, INFO, switched by ``ACCESS_LOG``) carries the load
balancer's ``X-Request-ID``, so a request in nginx's log can be found in the app's:

    request_id=3f2a... method=GET path=/api/tutors/7 route=/api/tutors/{tutor_id} status=200
    duration_ms=3.1 client=10.0.0.5   (one line)

Every value is one token: the path never includes the query string (it may hold secrets), and
anything a client controls is escaped or replaced, so a request cannot forge or split a line.
"""

from __future__ import annotations

import logging
import os
import re
import string
import time
from urllib.parse import quote

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
from tutormax.logconfig import ACCESS_LOGGER

REQUESTS = Counter("tutormax_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "tutormax_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
WEBSOCKETS = Gauge("tutormax_websocket_connections", "Open WebSocket connections", multiprocess_mode="livesum")

access_log = logging.getLogger(ACCESS_LOGGER)
#: What a request id may be (nginx's $request_id is 32 hex digits); anything else is logged as "-".
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Paths not logged: Prometheus scrapes them every few seconds.
UNLOGGED_PATHS = frozenset({"/metrics"})
#: Longest path logged (longer ones are cut; nginx refuses much longer request lines anyway).
MAX_LOGGED_PATH = 2048
_PRINTABLE = string.punctuation  # kept as they are; letters, digits and "_.-~" always are


def request_id(scope: Scope) -> str | None:
    """The request's ``X-Request-ID`` if it is a plain token (``[A-Za-z0-9._-]``, at most 64), else None."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if REQUEST_ID.fullmatch(text) else None
    return None


def loggable(text: str, limit: int = MAX_LOGGED_PATH) -> str:
    """``text`` as one log token: spaces, control and non-ASCII characters percent-escaped (UTF-8)."""
    return quote(text, safe=_PRINTABLE, errors="backslashreplace")[:limit] or "-"


class ObservabilityMiddleware:
    """Counts and times requests by route template, logs one access line per request (unless
    ``access_log`` is false); adds X-Instance-Id, X-Read-Source and X-Request-ID (the request's own)."""

    def __init__(self, app: ASGIApp, instance_id: str, access_log: bool = True) -> None:
        self.app = app
        self.instance_header = (b"x-instance-id", instance_id.encode("latin-1", "replace"))
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        sources: list[str] = []
        token = read_sources.set(sources)
        rid = request_id(scope)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append(self.instance_header)
                if sources:
                    headers.append((b"x-read-source", ",".join(dict.fromkeys(sources)).encode()))
                if rid is not None:
                    headers.append((b"x-request-id", rid.encode()))
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
            seconds = time.perf_counter() - start
            REQUESTS.labels(method, path, str(status)).inc()
            LATENCY.labels(method, path).observe(seconds)
            if self.access_log and scope["path"] not in UNLOGGED_PATHS:
                client = scope.get("client")
                access_log.info(
                    "request_id=%s method=%s path=%s route=%s status=%d duration_ms=%.1f client=%s",
                    rid or "-",
                    loggable(method, 32),
                    loggable(scope["path"]),  # ASGI's path never holds the query string
                    loggable(path),
                    status,
                    seconds * 1000,
                    loggable(str(client[0]), 64) if client else "-",
                )


async def metrics_endpoint(_request: Request) -> Response:
    """Prometheus exposition of this instance (all workers)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest(REGISTRY)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
