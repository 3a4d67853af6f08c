"""Health: the seed's exact JSON, 503 naming the failed dependency, answered within a second."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import HangingServer
from harness import LOCALHOST, Stack, free_port, stop_process, wait_until

KEYS = {"status", "database", "redis", "version", "instance_id"}


@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_health_returns_exactly_the_seed_json(api: httpx.Client, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "database": "connected",
        "redis": "connected",
        "version": "1.0.0",
        "instance_id": "api-a",
    }
    assert response.headers["x-instance-id"] == "api-a"


def _spawn(stack: Stack, name: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = stack.spawn(
        ["-m", "uvicorn", "--factory", "tutormax.api.app:create_app", "--host", LOCALHOST, "--port", str(port)],
        stack.env(API_INSTANCE_ID=name, **env),
        f"uvicorn-{name}",
    )
    return proc, f"http://{LOCALHOST}:{port}"


def _wait_listening(proc: subprocess.Popen[bytes], url: str) -> None:
    def up() -> bool:
        assert proc.poll() is None, "the instance exited"
        httpx.get(url + "/api/openapi.json", timeout=2)
        return True

    wait_until(up, 60, url)


@pytest.fixture(scope="module")
def broken_instances(stack: Stack, hanging: HangingServer) -> Iterator[dict[str, str]]:
    """Instances whose database or Redis accepts connections and never answers, or refuses them."""
    closed = free_port()
    specs = {
        "db-hangs": {"DATABASE_URL": f"postgresql://tutormax:x@{LOCALHOST}:{hanging.port}/tutormax",
                     "DATABASE_READ_URL": ""},
        "db-refused": {"DATABASE_URL": f"postgresql://tutormax:x@{LOCALHOST}:{closed}/tutormax",
                       "DATABASE_POOL_TIMEOUT": "1", "DATABASE_READ_URL": ""},
        "redis-hangs": {"REDIS_SENTINELS": "", "REDIS_URL": f"redis://{LOCALHOST}:{hanging.port}/0",
                        "DATABASE_READ_URL": f"postgresql://tutormax:x@{LOCALHOST}:{closed}/tutormax"},
    }  # fmt: skip
    started = {name: _spawn(stack, name, **env) for name, env in specs.items()}
    for proc, url in started.values():
        _wait_listening(proc, url)
    yield {name: url for name, (_, url) in started.items()}
    for proc, _ in started.values():
        stop_process(proc)


@pytest.mark.parametrize(
    ("instance", "failed"), [("db-hangs", "database"), ("db-refused", "database"), ("redis-hangs", "redis")]
)
@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_failed_dependency_gives_503_naming_it_within_one_second(
    broken_instances: dict[str, str], instance: str, failed: str, path: str
) -> None:
    # One client for both requests: creating an httpx client costs 0.1-0.2 s on a loaded machine,
    # which is the client's time, not the server's.
    with httpx.Client(timeout=5) as client:
        client.get(broken_instances[instance] + "/api/openapi.json")  # connection established
        for _ in range(2):  # the first and a later request (pools and retries in any state)
            start = time.monotonic()
            response = client.get(broken_instances[instance] + path)
            took = time.monotonic() - start
            _check(response, instance, failed, took)


def _check(response: httpx.Response, instance: str, failed: str, took: float) -> None:
    assert response.status_code == 503
    body = response.json()
    assert set(body) == KEYS
    assert body["status"] == "unhealthy"
    assert body[failed] == "disconnected"
    other = "redis" if failed == "database" else "database"
    assert body[other] == "connected"
    assert body["instance_id"] == instance
    assert took < 1.0, f"health took {took:.2f} s"


def test_reads_survive_a_hanging_redis_and_a_dead_replica(broken_instances: dict[str, str], api: httpx.Client) -> None:
    tutor = api.post("/api/tutors", json={"name": "Degraded", "email": f"degraded-{time.time_ns()}@example.test"})
    assert tutor.status_code == 201
    url = f"{broken_instances['redis-hangs']}/api/tutors/{tutor.json()['id']}"
    for _ in range(3):
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200
        assert response.json()["name"] == "Degraded"
        # No cache, replica refused: the primary answers.
        assert response.headers["x-read-source"] == "primary"


def test_database_down_gives_503_not_500_on_domain_endpoints(broken_instances: dict[str, str]) -> None:
    response = httpx.get(f"{broken_instances['db-refused']}/api/tutors", timeout=15)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "database" in response.json()["detail"]
