"""The whole stack, end to end through the load balancer (published on 127.0.0.1:18080/18443)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest
import websockets
from cluster_hosts import REPO, psql, secret, sh

LB = os.environ.get("TUTORMAX_CLUSTER_LB", "http://127.0.0.1:18080")
LB_TLS = os.environ.get("TUTORMAX_CLUSTER_LB_TLS", "https://127.0.0.1:18443")
API_HOSTS = ["cluster-api1", "cluster-api2", "cluster-api3"]


@pytest.fixture(scope="module")
def lb() -> httpx.Client:
    with httpx.Client(base_url=LB, timeout=10) as client:
        yield client


def new_tutor(lb: httpx.Client) -> dict[str, Any]:
    email = f"cluster-{uuid.uuid4().hex[:12]}@example.org"
    created = lb.post("/api/tutors", json={"name": "Cluster Test", "email": email, "subjects": ["math"]})
    assert created.status_code == 201, created.text
    return dict(created.json())


def test_health_through_the_lb_is_answered_by_all_three_api_instances(lb: httpx.Client) -> None:
    seen: set[str] = set()
    for _ in range(60):
        response = lb.get("/api/health")
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"status", "database", "redis", "version", "instance_id"}
        assert (body["status"], body["database"], body["redis"]) == ("healthy", "connected", "connected")
        seen.add(body["instance_id"])
        if seen == set(API_HOSTS):
            break
    assert seen == set(API_HOSTS)


def test_https_answers_with_the_same_health(lb: httpx.Client) -> None:
    with httpx.Client(base_url=LB_TLS, verify=False, timeout=10) as tls:  # noqa: S501 - self-signed test cert
        response = tls.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert "max-age" in response.headers["strict-transport-security"]


def test_a_tutor_created_through_the_lb_is_readable_through_the_lb_right_after(lb: httpx.Client) -> None:
    tutor = new_tutor(lb)
    for _ in range(5):  # each read may land on another instance
        read = lb.get(f"/api/tutors/{tutor['id']}")
        assert read.status_code == 200, read.text
        assert read.json()["email"] == tutor["email"]


def test_a_rating_posted_on_one_instance_reaches_a_websocket_client_on_another(lb: httpx.Client) -> None:
    tutor = new_tutor(lb)

    async def scenario() -> dict[str, Any]:
        url = LB.replace("http", "ws", 1) + f"/ws?tutor_id={tutor['id']}"
        async with websockets.connect(url, open_timeout=10) as ws:
            ws_instance = ws.response.headers["X-Instance-Id"]
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
            other = next(h for h in API_HOSTS if h != ws_instance)
            session = json.loads(
                sh(
                    other,
                    "curl",
                    "-sf",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    json.dumps(
                        {
                            "student_id": 1,
                            "subject": "math",
                            "started_at": "2026-11-01T10:00:00+00:00",
                            "duration_minutes": 30,
                        }
                    ),
                    f"http://127.0.0.1:8000/api/tutors/{tutor['id']}/sessions",
                )
            )
            sh(
                other,
                "curl",
                "-sf",
                "-H",
                "Content-Type: application/json",
                "-d",
                json.dumps({"score": 5, "comment": "cluster"}),
                f"http://127.0.0.1:8000/api/sessions/{session['id']}/rating",
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                event = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                if event["type"] == "rating":
                    return {"event": event, "ws_instance": ws_instance, "posted_on": other}
        raise AssertionError("no rating event within 10 s")

    result = asyncio.run(scenario())
    assert result["ws_instance"] != result["posted_on"]
    assert result["event"]["tutor_id"] == tutor["id"]
    assert result["event"]["data"]["score"] == 5


def test_an_export_requested_through_the_lb_is_built_by_celery_and_downloads(lb: httpx.Client) -> None:
    tutor = new_tutor(lb)
    requested = lb.post("/api/exports", json={"kind": "tutors"})
    assert requested.status_code == 202, requested.text
    location = requested.headers["location"]
    deadline = time.monotonic() + 60
    status = ""
    while time.monotonic() < deadline:
        status = lb.get(location).json()["status"]
        if status in {"done", "failed"}:
            break
        time.sleep(1)
    assert status == "done"
    csv = lb.get(f"{location}/download")
    assert csv.status_code == 200
    assert tutor["email"] in csv.text


def test_metrics_are_not_exposed_through_the_lb(lb: httpx.Client) -> None:
    assert lb.get("/metrics").status_code == 404


def test_the_seeds_replication_queries_report_a_streaming_replica() -> None:
    rows = psql(
        "cluster-pg1",
        "SELECT application_name, state, pg_wal_lsn_diff(sent_lsn, replay_lsn) AS lag_bytes FROM replication_status;",
        "tutormax",
    ).split()
    # Patroni's member names; one of them is the synchronous standby.
    assert sorted(row.split("|")[0] for row in rows) == ["cluster-pg2", "cluster-pg3"], rows
    for row in rows:
        _, state, lag = row.split("|")
        assert state == "streaming"
        assert int(float(lag)) < 16 * 1024 * 1024
    for replica in ("cluster-pg2", "cluster-pg3"):
        recovery = psql(replica, "SELECT pg_is_in_recovery();")
        assert recovery.strip() == "t"


def test_the_seeds_sentinel_command_names_one_master_that_all_sentinels_agree_on() -> None:
    auth = {"REDISCLI_AUTH": secret("vault_redis_sentinel_password")}
    answers = {
        host: sh(
            host,
            "redis-cli",
            "--no-auth-warning",
            "-p",
            "26379",
            "SENTINEL",
            "get-master-addr-by-name",
            "tutormax-master",
            env=auth,
        ).split()
        for host in ("cluster-redis1", "cluster-redis2", "cluster-redis3")
    }
    assert len({tuple(a) for a in answers.values()}) == 1, answers
    master = sh(
        "cluster-redis1",
        "redis-cli",
        "--no-auth-warning",
        "-p",
        "26379",
        "SENTINEL",
        "master",
        "tutormax-master",
        env=auth,
    ).split()
    fields = dict(zip(master[::2], master[1::2], strict=True))
    assert fields["flags"] == "master"
    assert int(fields["num-slaves"]) == 2
    assert int(fields["num-other-sentinels"]) == 2


def test_the_verify_playbook_passes_on_the_cluster() -> None:
    done = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(REPO / "playbooks" / "verify.yml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    report = done.stdout[-3000:]
    assert done.returncode == 0, report
    assert "checks passed" in done.stdout
    # The backup checks (issue 19) are in the report: the newest backups' ages and the WAL archive.
    assert re.search(r"OK\s+\S+\s+pgbackrest backups\s+\d+ good backups", done.stdout), report
    assert re.search(r"OK\s+\S+\s+wal archiving\s+archived \d+ segments", done.stdout), report
    # Issue 20: the load balancer holding the floating address, and the active beat (newest heartbeat).
    assert re.search(r"OK\s+cluster-lb\d\s+floating address holder\s+\S+ on cluster-lb\d", done.stdout), report
    assert re.search(r"OK\s+\S+\s+active beat\s+cluster-worker\d, newest heartbeat", done.stdout), report
    # Issue 21: every scrape target of Prometheus answers.
    assert re.search(r"OK\s+cluster-mon1\s+every monitoring target up\s+(\d+) of \1 up", done.stdout), report
