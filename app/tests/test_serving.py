"""tutormax-api: gunicorn with uvicorn workers, metrics summed over workers, WebSocket, clean stop."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from harness import LOCALHOST, Stack, free_port, stop_process, wait_for_health, wait_until


@pytest.fixture(scope="module")
def gunicorn(stack: Stack) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``python -m tutormax api`` (what the tutormax-api script runs) with 2 workers."""
    port = free_port()
    metrics_dir = stack.base / "prometheus-gunicorn"
    proc = stack.spawn(
        ["-m", "tutormax", "api"],
        stack.env(
            API_INSTANCE_ID="gunicorn-1",
            WORKERS="2",
            BIND=f"{LOCALHOST}:{port}",
            GRACEFUL_TIMEOUT="5",
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        ),
        "gunicorn",
    )
    url = f"http://{LOCALHOST}:{port}"
    wait_for_health(url, proc)
    yield proc, url, metrics_dir
    stop_process(proc)


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _requests_total(url: str, route: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tutormax_http_requests_total" and sample.labels.get("route") == route:
                total += sample.value
    return total


def test_gunicorn_runs_the_configured_number_of_uvicorn_workers(
    gunicorn: tuple[subprocess.Popen[bytes], str, Path], stack: Stack
) -> None:
    proc, url, _ = gunicorn
    wait_until(lambda: len(_children(proc.pid)) == 2, 30, "2 gunicorn workers")
    assert "uvicorn_worker" in stack.log("gunicorn") or "Booting worker" in stack.log("gunicorn")
    body = httpx.get(f"{url}/api/health").json()
    assert body["instance_id"] == "gunicorn-1"
    assert body["status"] == "healthy"


def test_metrics_count_every_request_whichever_worker_served_it(
    gunicorn: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    _, url, metrics_dir = gunicorn
    before = _requests_total(url, "/api/openapi.json")
    n = 40
    for _ in range(n):  # a new connection each time, so the kernel spreads them over both workers
        assert httpx.get(f"{url}/api/openapi.json", headers={"connection": "close"}).status_code == 200
    assert _requests_total(url, "/api/openapi.json") == before + n
    pids = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(pids) == 2, f"samples from {pids}: one worker served everything"


def test_websocket_works_through_gunicorn(gunicorn: tuple[subprocess.Popen[bytes], str, Path]) -> None:
    _, url, _ = gunicorn
    tutor = httpx.post(f"{url}/api/tutors", json={"name": "G", "email": f"g-{time.time_ns()}@example.test"}).json()
    with connect(url.replace("http", "ws") + f"/ws?tutor_id={tutor['id']}") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        httpx.post(
            f"{url}/api/tutors/{tutor['id']}/sessions",
            json={"student_id": 1, "subject": "x", "started_at": "2026-01-01T00:00:00Z", "duration_minutes": 1},
        )
        assert json.loads(ws.recv(timeout=10))["type"] == "session"


def test_sigterm_stops_gunicorn_gracefully_and_closes_websockets_with_1012(stack: Stack) -> None:
    port = free_port()
    proc = stack.spawn(
        ["-m", "tutormax", "api"],
        stack.env(API_INSTANCE_ID="gunicorn-stop", WORKERS="1", BIND=f"{LOCALHOST}:{port}", GRACEFUL_TIMEOUT="5"),
        "gunicorn-stop",
    )
    url = f"http://{LOCALHOST}:{port}"
    wait_for_health(url, proc)
    with connect(url.replace("http", "ws") + "/ws") as ws:
        proc.send_signal(signal.SIGTERM)
        # Open WebSockets are closed with 1012 (service restart): clients reconnect elsewhere.
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
    assert proc.wait(15) == 0
    assert "Shutting down: Master" in stack.log("gunicorn-stop")
