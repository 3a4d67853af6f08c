"""Session fixtures: real PostgreSQL (primary + streaming replica), Redis (master + replica +
Sentinel), two API instances, a Celery worker and an SMTP server, all on loopback.

Set TUTORMAX_KEEP_TEST_DIR=1 to keep the servers' directory (logs) after the run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from celery import Celery

from harness import APP_SRC, LOCALHOST, Stack, free_port, stack_for_tests, wait_for_health, wait_until
from tutormax.data.taskqueue import create_celery
from tutormax.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked runs_last (they fail the Redis master over) run after all others."""
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)


def migrate_env(database_url: str) -> dict[str, str]:
    """The only environment migrations get: DATABASE_URL (plus what Python needs to find the code)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(APP_SRC), "DATABASE_URL": database_url}


def run_migrate(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tutormax migrate ARGS`` with only DATABASE_URL set."""
    return subprocess.run(
        [sys.executable, "-m", "tutormax", "migrate", *args],
        env=migrate_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The servers, with the schema migrated on the primary and replayed on the replica."""
    with stack_for_tests() as s:
        done = run_migrate(s.pg.primary_url)
        assert done.returncode == 0, done.stderr
        s.pg.wait_replayed()
        yield s


@dataclass
class SmtpSink:
    """Collects delivered mail; ``refuse_next`` makes the next N deliveries fail with 451."""

    port: int
    messages: list[Envelope] = field(default_factory=list)
    refuse_next: int = 0
    refused: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        if self.refuse_next > 0:
            self.refuse_next -= 1
            self.refused += 1
            return "451 4.3.0 Try again later"
        self.messages.append(envelope)
        return "250 OK"

    def to(self, address: str) -> list[Envelope]:
        return [m for m in self.messages if address in m.rcpt_tos]


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on loopback."""
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname=LOCALHOST, port=sink.port)
    controller.start()
    yield sink
    controller.stop()


def settings_from(env: dict[str, str]) -> Settings:
    """Settings for in-process clients, from an app environment."""
    return Settings(**{key.lower(): value for key, value in env.items()})


@pytest.fixture(scope="session")
def apps(stack: Stack) -> tuple[str, str]:
    """Two API instances (separate uvicorn processes, different ports) on the same stack."""
    procs, urls = [], []
    for name in ("api-a", "api-b"):
        port = free_port()
        proc = stack.spawn(
            ["-m", "uvicorn", "--factory", "tutormax.api.app:create_app", "--host", LOCALHOST,
             "--port", str(port), "--no-access-log"],
            stack.env(API_INSTANCE_ID=name, CACHE_TTL_SECONDS="60"),
            f"uvicorn-{name}",
        )  # fmt: skip
        procs.append(proc)
        urls.append(f"http://{LOCALHOST}:{port}")
    for proc, url in zip(procs, urls, strict=True):
        wait_for_health(url, proc)
    return urls[0], urls[1]


@pytest.fixture(scope="session")
def api(apps: tuple[str, str]) -> Iterator[httpx.Client]:
    """A client of instance api-a."""
    with httpx.Client(base_url=apps[0], timeout=15) as client:
        yield client


@pytest.fixture(scope="session")
def api_b(apps: tuple[str, str]) -> Iterator[httpx.Client]:
    """A client of instance api-b."""
    with httpx.Client(base_url=apps[1], timeout=15) as client:
        yield client


@pytest.fixture(scope="session")
def worker_env(stack: Stack, smtp: SmtpSink) -> dict[str, str]:
    """The worker's environment (SMTP pointing at the test server)."""
    return stack.env(
        API_INSTANCE_ID="worker-1",
        SMTP_HOST=LOCALHOST,
        SMTP_PORT=str(smtp.port),
        SMTP_FROM="tutormax@example.test",
        CELERY_WORKER_CONCURRENCY="2",
        SCORE_DROP_THRESHOLD="5",
    )


@pytest.fixture(scope="session")
def celery_client(stack: Stack) -> Iterator[Celery]:
    """A Celery client (producer + result backend through Sentinel), as the API uses it."""
    app = create_celery(settings_from(stack.env()))
    yield app
    app.close()


@pytest.fixture(scope="session")
def worker(stack: Stack, worker_env: dict[str, str], celery_client: Celery) -> subprocess.Popen[bytes]:
    """A real Celery worker process (prefork, 2 children), started with the console entry point's code."""
    proc = stack.spawn(["-m", "tutormax", "worker", "--without-gossip", "--without-mingle"], worker_env, "worker")

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}: {stack.log('worker')[-2000:]}")
        return bool(celery_client.control.ping(timeout=0.5))

    wait_until(answers, 60, "celery worker", interval=0.2)
    return proc


def run_task(celery: Celery, name: str, *args: Any, timeout: float = 60) -> Any:
    """Send a task to the real worker and wait for its result."""
    return celery.send_task(name, args=list(args)).get(timeout=timeout)


def unique_email(prefix: str = "tutor") -> str:
    """An email no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.test"


def create_tutor(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """Create a tutor through the API and return it."""
    body = {"name": "Test Tutor", "email": unique_email(), "subjects": ["math"], **fields}
    response = client.post("/api/tutors", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


class HangingServer:
    """Accepts TCP connections and never answers: a dependency that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((LOCALHOST, 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture(scope="session")
def hanging() -> Iterator[HangingServer]:
    """A socket that accepts and never answers."""
    server = HangingServer()
    yield server
    server.close()


def elapsed(start: float) -> float:
    """Seconds since ``start`` (time.monotonic())."""
    return time.monotonic() - start
