"""WS /ws: events produced on one instance (or by the worker) reach subscribers on another."""

from __future__ import annotations

import json
from typing import Any

import httpx
from celery import Celery
from websockets.sync.client import ClientConnection, connect

from conftest import create_tutor, run_task
from tutormax.data.taskqueue import AGGREGATE_DAILY_METRICS, COMPUTE_PERFORMANCE_SCORES


def ws_url(http_url: str, query: str = "") -> str:
    """The /ws URL of an instance."""
    return http_url.replace("http://", "ws://") + "/ws" + query


def receive(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    """The next JSON message."""
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return message


def subscribe(ws: ClientConnection, tutor_id: int) -> None:
    """Subscribe and wait for the confirmation."""
    ws.send(json.dumps({"action": "subscribe", "tutor_id": tutor_id}))
    assert receive(ws) == {"type": "subscribed", "tutor_id": tutor_id}


def test_the_handshake_names_the_instance_that_holds_the_socket(apps: tuple[str, str]) -> None:
    with connect(ws_url(apps[1])) as ws:
        assert ws.response is not None
        instance = ws.response.headers["X-Instance-Id"]
    with connect(ws_url(apps[0])) as ws:
        assert ws.response is not None
        assert ws.response.headers["X-Instance-Id"] != instance


def test_rating_on_instance_a_reaches_a_subscriber_on_instance_b(api: httpx.Client, apps: tuple[str, str]) -> None:
    tutor = create_tutor(api)
    other = create_tutor(api)
    with connect(ws_url(apps[1])) as ws:
        subscribe(ws, tutor["id"])
        # An event of a tutor the client did not subscribe to is not delivered.
        s_other = api.post(
            f"/api/tutors/{other['id']}/sessions",
            json={"student_id": 2, "subject": "math", "started_at": "2026-02-01T10:00:00Z", "duration_minutes": 30},
        ).json()
        session = api.post(
            f"/api/tutors/{tutor['id']}/sessions",
            json={"student_id": 3, "subject": "math", "started_at": "2026-02-01T11:00:00Z", "duration_minutes": 30},
        ).json()
        event = receive(ws)
        assert event["type"] == "session"
        assert event["data"]["id"] == session["id"] != s_other["id"]

        api.post(f"/api/sessions/{session['id']}/rating", json={"score": 4})
        event = receive(ws)
        assert event["type"] == "rating"
        assert event["tutor_id"] == tutor["id"]
        assert event["data"]["score"] == 4


def test_every_subscriber_on_both_instances_gets_the_event(api: httpx.Client, apps: tuple[str, str]) -> None:
    tutor = create_tutor(api)
    with (
        connect(ws_url(apps[0], f"?tutor_id={tutor['id']}")) as ws_a,
        connect(ws_url(apps[1], f"?tutor_id={tutor['id']}")) as ws_b1,
        connect(ws_url(apps[1])) as ws_b2,
    ):
        assert receive(ws_a)["type"] == "subscribed"
        assert receive(ws_b1)["type"] == "subscribed"
        subscribe(ws_b2, tutor["id"])
        api.post(
            f"/api/tutors/{tutor['id']}/sessions",
            json={"student_id": 4, "subject": "art", "started_at": "2026-02-02T10:00:00Z", "duration_minutes": 10},
        )
        for ws in (ws_a, ws_b1, ws_b2):
            assert receive(ws)["type"] == "session"


def test_score_computed_by_the_worker_reaches_subscribers(
    api: httpx.Client, apps: tuple[str, str], worker: object, celery_client: Celery
) -> None:
    tutor = create_tutor(api)
    day = "2026-04-01"
    api.post(
        f"/api/tutors/{tutor['id']}/sessions",
        json={"student_id": 5, "subject": "math", "started_at": f"{day}T09:00:00Z", "duration_minutes": 60},
    )
    with connect(ws_url(apps[1])) as ws:
        subscribe(ws, tutor["id"])
        run_task(celery_client, AGGREGATE_DAILY_METRICS, day)
        run_task(celery_client, COMPUTE_PERFORMANCE_SCORES, day, False)
        while (event := receive(ws))["type"] != "score":
            pass
        assert event["tutor_id"] == tutor["id"]
        assert event["data"]["computed_for"] == day


def test_bad_requests_get_an_error_message_not_a_disconnect(apps: tuple[str, str]) -> None:
    with connect(ws_url(apps[0])) as ws:
        ws.send("not json")
        assert receive(ws)["type"] == "error"
        ws.send(json.dumps({"action": "subscribe", "tutor_id": "seven"}))
        assert receive(ws)["type"] == "error"
        ws.send(json.dumps({"action": "subscribe", "tutor_id": 987654321}))
        error = receive(ws)
        assert error["type"] == "error"
        assert "not found" in error["detail"]
        ws.send(json.dumps({"action": "unsubscribe", "tutor_id": 987654321}))
        assert receive(ws)["type"] == "unsubscribed"
