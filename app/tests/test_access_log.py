"""The access log: one line per HTTP request with the load balancer's request id, on stderr under
uvicorn and gunicorn; never a query string, never a line a client can forge; ACCESS_LOG switches it."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Scope

from harness import LOCALHOST, Stack, free_port, stop_process, wait_for_health, wait_until
from tutormax.api.observability import ObservabilityMiddleware, loggable, request_id

LINE = re.compile(
    r"^INFO tutormax\.access: request_id=(?P<rid>\S+) method=(?P<method>\S+) path=(?P<path>\S+) "
    r"route=(?P<route>\S+) status=(?P<status>\d{3}) duration_ms=(?P<ms>\d+\.\d) client=(?P<client>\S+)$"
)


def access_lines(text: str) -> list[dict[str, str]]:
    """The access lines of a log, parsed; fails on an access line of another shape."""
    found = []
    for line in text.splitlines():
        if "tutormax.access" in line:
            match = LINE.match(line)
            assert match, f"malformed access line: {line!r}"
            found.append(match.groupdict())
    return found


def wait_for_line(stack: Stack, log: str, **fields: str) -> dict[str, str]:
    """The first access line of ``log`` with these field values, once it is written."""
    found: list[dict[str, str]] = []

    def written() -> bool:
        found[:] = [line for line in access_lines(stack.log(log)) if fields.items() <= line.items()]
        return bool(found)

    wait_until(written, 10, f"access line {fields}")
    return found[0]


def new_id() -> str:
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- the helpers alone
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"5f0c2e7d9a1b4c3d8e6f0a1b2c3d4e5f", "5f0c2e7d9a1b4c3d8e6f0a1b2c3d4e5f"),
        (b"req-1.2_3", "req-1.2_3"),
        (b"x" * 64, "x" * 64),
        (b"x" * 65, None),
        (b"", None),
        (b"abc def", None),
        (b"abc\nINFO tutormax.access: request_id=forged", None),
        (b"caf\xc3\xa9", None),
        (b"id;rm", None),
    ],
)
def test_request_id_is_a_plain_token_or_nothing(header: bytes, expected: str | None) -> None:
    assert request_id({"type": "http", "headers": [(b"x-request-id", header)]}) == expected


def test_loggable_escapes_what_could_split_or_forge_a_line() -> None:
    assert loggable("/api/tutors/{tutor_id}") == "/api/tutors/{tutor_id}"
    assert loggable("/a b\nINFO x\r\x00é") == "/a%20b%0AINFO%20x%0D%00%C3%A9"
    assert loggable("/" + "a" * 5000) == "/" + "a" * 2047
    assert loggable("") == "-"


def test_middleware_logs_a_header_id_with_a_newline_as_dash_and_does_not_echo_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/items/5", "raw_path": b"/items/5", "query_string": b"token=s3cret", "root_path": "",
        "headers": [(b"x-request-id", b"a\nINFO tutormax.access: request_id=forged")],
        "client": ("10.0.0.5", 4242), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    caplog.set_level(logging.INFO, logger="tutormax.access")
    asyncio.run(ObservabilityMiddleware(app, instance_id="unit")(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert b"x-request-id" not in dict(start["headers"])
    [record] = [r for r in caplog.records if r.name == "tutormax.access"]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith("request_id=- method=GET path=/items/5 route=/items/{item_id} status=200 duration_ms=")
    assert message.endswith(" client=10.0.0.5")
    assert "\n" not in message
    assert "s3cret" not in message


# --------------------------------------------------------------------------- real servers
def test_each_request_is_logged_with_its_id_and_path_but_never_its_query_string(
    api: httpx.Client, stack: Stack
) -> None:
    rid, secret = new_id(), f"s3cret-{new_id()}"
    response = api.get("/api/tutors", params={"limit": 1, "search": secret}, headers={"X-Request-ID": rid})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == rid
    line = wait_for_line(stack, "uvicorn-api-a", rid=rid)
    assert line == {
        "rid": rid, "method": "GET", "path": "/api/tutors", "route": "/api/tutors", "status": "200",
        "ms": line["ms"], "client": "127.0.0.1",
    }  # fmt: skip
    assert float(line["ms"]) > 0
    assert secret not in stack.log("uvicorn-api-a")
    # The route is the template, the path what was asked; a 404 is logged too.
    rid = new_id()
    assert api.get("/api/tutors/987654321", headers={"X-Request-ID": rid}).status_code == 404
    line = wait_for_line(stack, "uvicorn-api-a", rid=rid)
    assert (line["path"], line["route"], line["status"]) == ("/api/tutors/987654321", "/api/tutors/{tutor_id}", "404")


@pytest.mark.parametrize("bad", [b"x" * 65, b"two words", b"id;rm -rf", b"caf\xc3\xa9", b"a=b"])
def test_an_id_that_is_not_a_plain_token_is_logged_as_dash_and_not_echoed(
    api: httpx.Client, stack: Stack, bad: bytes
) -> None:
    marker = str(uuid.uuid4().int % 10**12 + 1)  # a path of this request only
    response = api.get(f"/api/tutors/{marker}", headers={"X-Request-ID": bad})
    assert "x-request-id" not in response.headers
    line = wait_for_line(stack, "uvicorn-api-a", path=f"/api/tutors/{marker}")
    assert line["rid"] == "-"


def test_a_path_cannot_forge_or_split_a_line(api: httpx.Client, stack: Stack) -> None:
    forged = new_id()
    raw = f"/api/x{forged}%0AINFO%20tutormax.access:%20request_id=forged%0D%20"
    assert api.get(raw).status_code == 404
    line = wait_for_line(
        stack, "uvicorn-api-a", path=f"/api/x{forged}%0AINFO%20tutormax.access:%20request_id=forged%0D%20"
    )
    assert line["route"] == "unmatched"
    assert "request_id=forged" not in [
        part for text in stack.log("uvicorn-api-a").splitlines() for part in text.split()
    ]


def test_metrics_scrapes_are_not_logged_health_checks_are(api: httpx.Client, stack: Stack) -> None:
    scrape, health, last = new_id(), new_id(), new_id()
    assert api.get("/metrics", headers={"X-Request-ID": scrape}).status_code == 200
    assert api.get("/health", headers={"X-Request-ID": health}).status_code == 200
    assert api.get("/api/health", headers={"X-Request-ID": last}).status_code == 200
    wait_for_line(stack, "uvicorn-api-a", rid=last, path="/api/health")  # lines come in order
    assert wait_for_line(stack, "uvicorn-api-a", rid=health)["path"] == "/health"
    assert scrape not in stack.log("uvicorn-api-a")


def test_gunicorn_with_the_default_log_level_writes_access_lines_to_stderr(stack: Stack) -> None:
    port = free_port()
    env = stack.env(
        API_INSTANCE_ID="gunicorn-access",
        WORKERS="1",
        BIND=f"{LOCALHOST}:{port}",
        PROMETHEUS_MULTIPROC_DIR=str(stack.base / "prometheus-gunicorn-access"),
    )
    del env["LOG_LEVEL"]  # the default, as the environment file may leave it
    proc = stack.spawn(["-m", "tutormax", "api"], env, "gunicorn-access")
    try:
        url = f"http://{LOCALHOST}:{port}"
        wait_for_health(url, proc)
        rid = new_id()
        assert httpx.get(f"{url}/api/health?token=s3cret", headers={"X-Request-ID": rid}).status_code == 200
        line = wait_for_line(stack, "gunicorn-access", rid=rid)
        assert (line["path"], line["status"]) == ("/api/health", "200")
        assert "s3cret" not in stack.log("gunicorn-access")
    finally:
        stop_process(proc)


def test_access_lines_ignore_log_level_and_access_log_false_silences_them(stack: Stack) -> None:
    quiet_app, loud = stack.start_uvicorn("access-warning", LOG_LEVEL="WARNING")
    off, silent = stack.start_uvicorn("access-off", ACCESS_LOG="false")
    try:
        rid = new_id()
        assert httpx.get(f"{loud}/api/health", headers={"X-Request-ID": rid}).status_code == 200
        wait_for_line(stack, "uvicorn-access-warning", rid=rid)
        assert "INFO tutormax.api.app" not in stack.log("uvicorn-access-warning")  # LOG_LEVEL still applies

        rid = new_id()
        response = httpx.get(f"{silent}/api/health", headers={"X-Request-ID": rid})
        assert response.status_code == 200
        assert response.headers["x-request-id"] == rid  # still echoed
        time.sleep(0.5)
        assert "tutormax.access" not in stack.log("uvicorn-access-off")
        assert "INFO tutormax.api.app" in stack.log("uvicorn-access-off")  # the app logs as before
    finally:
        stop_process(quiet_app)
        stop_process(off)
