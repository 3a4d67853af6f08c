"""Redis failover: kill the master, let Sentinel promote the replica, and measure how soon each
client path works again. Runs last (it changes the shared Redis topology), then checks that no
process logged a secret or a traceback during the whole session."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest
from celery import Celery
from websockets.sync.client import connect

from conftest import create_tutor
from harness import Stack, wait_until
from tutormax.data.taskqueue import AGGREGATE_DAILY_METRICS

#: Generous bound for "works again after the promotion" (the target is about a second; the figures
#: measured are printed). A correctness bound, not a benchmark: the machine is shared.
RECOVERY_BOUND_SECONDS = 8.0


def _time_until(check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    wait_until(check, timeout, "recovery", interval=0.05)
    return time.monotonic() - start


def test_the_worker_outlives_a_master_that_refuses_writes(
    stack: Stack, worker: subprocess.Popen[bytes], celery_client: Celery
) -> None:
    """A master just promoted by Sentinel answers NOREPLICAS until a replica follows it (the redis
    role sets min-replicas-to-write 1). The worker's blocking pop is a write: it must reconnect and
    keep going, not end with "Unrecoverable error" (exit status 0, which Restart=on-failure ignored)."""
    master = stack.redis.admin(stack.redis.current_master_port())
    refused_before = stack.log("worker").count("NOREPLICAS")
    master.config_set("min-replicas-to-write", 5)  # one replica here: every write is refused
    try:
        wait_until(lambda: stack.log("worker").count("NOREPLICAS") > refused_before, 20, "a NOREPLICAS in the worker")
        time.sleep(3)  # a few more refused reconnections
        assert worker.poll() is None, f"the worker ended: {stack.log('worker')[-2000:]}"
    finally:
        master.config_set("min-replicas-to-write", 0)
    result = celery_client.send_task(AGGREGATE_DAILY_METRICS, args=["2026-09-02"]).get(timeout=30)
    assert result["day"] == "2026-09-02"
    assert worker.poll() is None


@pytest.mark.runs_last
def test_cache_pubsub_health_and_celery_follow_a_sentinel_promotion(
    stack: Stack,
    api: httpx.Client,
    api_b: httpx.Client,
    apps: tuple[str, str],
    worker: object,
    celery_client: Celery,
) -> None:
    tutor = create_tutor(api, name="Failover")
    tid = tutor["id"]
    old_master = stack.redis.current_master_port()
    assert old_master == stack.redis.master_port

    with connect(apps[1].replace("http", "ws") + f"/ws?tutor_id={tid}") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"

        stack.redis.procs["master"].kill()  # SIGKILL: no goodbye to clients or Sentinel
        killed = time.monotonic()
        wait_until(lambda: stack.redis.current_master_port() == stack.redis.replica_port, 30, "promotion")
        promoted = time.monotonic()

        def cache_written() -> bool:
            name = f"v{time.monotonic_ns()}"
            assert api.patch(f"/api/tutors/{tid}", json={"name": name}).status_code == 200
            cached = stack.redis.app_client().get(f"tutormax:cache:tutor:{tid}")
            return cached is not None and name in cached

        cache_s = _time_until(cache_written, 30)

        def healthy() -> bool:
            return api.get("/api/health").json()["redis"] == "connected"

        health_s = _time_until(healthy, 30)

        def event_delivered() -> bool:
            api.post(
                f"/api/tutors/{tid}/sessions",
                json={"student_id": 1, "subject": "x", "started_at": "2026-09-01T00:00:00Z", "duration_minutes": 1},
            )
            try:
                while True:
                    if json.loads(ws.recv(timeout=0.3))["type"] == "session":
                        return True
            except TimeoutError:
                return False

        pubsub_s = _time_until(event_delivered, 30)

    celery_start = time.monotonic()
    result = celery_client.send_task(AGGREGATE_DAILY_METRICS, args=["2026-09-01"]).get(timeout=30)
    celery_s = time.monotonic() - celery_start
    assert result["day"] == "2026-09-01"

    figures = {
        "promotion after kill": promoted - killed,
        "cache write-through": cache_s,
        "health redis connected": health_s,
        "pub/sub event on the other instance": pubsub_s,
        "celery task round trip": celery_s,
    }
    print("\nRedis failover, seconds after the promotion:", {k: round(v, 2) for k, v in figures.items()})
    for name in ("cache write-through", "health redis connected", "pub/sub event on the other instance"):
        assert figures[name] < RECOVERY_BOUND_SECONDS, f"{name}: {figures[name]:.1f} s"
    assert celery_s < RECOVERY_BOUND_SECONDS
    # The other instance reads the new value through the new master too.
    assert api_b.get(f"/api/tutors/{tid}").json()["name"].startswith("v")


#: Tracebacks the libraries log while a drill above refuses writes: kombu's warning when it cannot
#: refresh a binding (NOREPLICAS) and Celery's when the consumer reconnects more than 5 times a second.
#: Both are logged by a worker that keeps running. Plus the failure test_worker_metrics causes on
#: purpose (an export id that is no UUID, which the API never sends). Any other traceback fails.
EXPECTED_DURING_DRILLS = re.compile(
    r"^redis\.exceptions\.ResponseError: .*NOREPLICAS|^billiard\.exceptions\.RestartFreqExceeded"
    r"|^ValueError: badly formed hexadecimal UUID string"
)


def _traceback_ends(text: str) -> list[str]:
    """The exception line (the first unindented line after the frames) of every traceback in ``text``."""
    ends, inside = [], False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            inside = True
        elif inside and line and not line[0].isspace():
            ends.append(line)
            inside = False
    return ends


@pytest.mark.runs_last
def test_no_process_logged_a_secret_or_a_traceback(stack: Stack) -> None:
    secrets = {
        "PostgreSQL app password": stack.pg.app_password,
        "Redis app password": stack.redis.app_password,
        "Sentinel password": stack.redis.sentinel_password,
    }
    logs = sorted(stack.base.glob("*.log"))
    assert len(logs) >= 3, [p.name for p in logs]
    for path in logs:
        text = path.read_text(errors="replace")
        for what, secret in secrets.items():
            assert secret not in text, f"{what} appears in {path.name}"
        unexpected = [end for end in _traceback_ends(text) if not EXPECTED_DURING_DRILLS.search(end)]
        assert not unexpected, f"traceback in {path.name}: {unexpected}"
