"""Domain endpoints: create, list, get, update; sessions and ratings; validation (422) and 404/409."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import create_tutor, unique_email


def test_create_then_get_the_tutor_from_the_other_instance(api: httpx.Client, api_b: httpx.Client) -> None:
    tutor = create_tutor(api, name="Ada", subjects=["math", "physics"], hourly_rate=42.5)
    got = api_b.get(f"/api/tutors/{tutor['id']}")
    assert got.status_code == 200
    assert got.json() == tutor
    assert got.headers["x-instance-id"] == "api-b"


def test_duplicate_email_is_409(api: httpx.Client) -> None:
    email = unique_email()
    create_tutor(api, email=email)
    again = api.post("/api/tutors", json={"name": "Twin", "email": email.upper()})
    assert again.status_code == 409
    assert "email" in again.json()["detail"]


def test_update_changes_fields_and_unknown_tutor_is_404(api: httpx.Client) -> None:
    tutor = create_tutor(api)
    changed = api.patch(f"/api/tutors/{tutor['id']}", json={"active": False, "subjects": ["chemistry"]})
    assert changed.status_code == 200
    assert changed.json()["active"] is False
    assert changed.json()["subjects"] == ["chemistry"]
    assert changed.json()["name"] == tutor["name"]
    assert api.patch("/api/tutors/987654321", json={"active": True}).status_code == 404


def test_list_is_paginated_and_filtered(api: httpx.Client, stack: Any) -> None:
    marker = unique_email("filter").split("@")[0]
    ids = [create_tutor(api, name=f"{marker} {i}", subjects=["latin"] if i % 2 else ["greek"])["id"] for i in range(5)]
    stack.pg.wait_replayed()  # lists read the replica
    page = api.get("/api/tutors", params={"search": marker, "limit": 2, "offset": 0}).json()
    assert page["total"] == 5
    assert [t["id"] for t in page["items"]] == ids[:2]
    rest = api.get("/api/tutors", params={"search": marker, "limit": 10, "offset": 2}).json()
    assert [t["id"] for t in rest["items"]] == ids[2:]
    latin = api.get("/api/tutors", params={"search": marker, "subject": "latin"}).json()
    assert {t["id"] for t in latin["items"]} == {ids[1], ids[3]}
    inactive = api.get("/api/tutors", params={"search": marker, "active": "false"}).json()
    assert inactive["total"] == 0


def test_search_treats_wildcards_literally(api: httpx.Client) -> None:
    page = api.get("/api/tutors", params={"search": "%_%"})
    assert page.status_code == 200
    assert page.json()["total"] == 0


def test_session_and_rating_are_recorded_and_a_session_is_rated_once(api: httpx.Client) -> None:
    tutor = create_tutor(api)
    session = api.post(
        f"/api/tutors/{tutor['id']}/sessions",
        json={"student_id": 7, "subject": "math", "started_at": "2026-01-05T10:00:00+01:00", "duration_minutes": 45},
    )
    assert session.status_code == 201
    assert session.json()["status"] == "completed"
    assert session.json()["started_at"] == "2026-01-05T09:00:00Z"
    rating = api.post(f"/api/sessions/{session.json()['id']}/rating", json={"score": 4, "comment": "good"})
    assert rating.status_code == 201
    assert rating.json()["tutor_id"] == tutor["id"]
    again = api.post(f"/api/sessions/{session.json()['id']}/rating", json={"score": 5})
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/tutors/0", None, 422),
        ("GET", "/api/tutors/9223372036854775808", None, 422),
        ("GET", "/api/tutors/123456789", None, 404),
        ("GET", "/api/tutors/123456789/metrics", None, 404),
        ("GET", "/api/tutors/123456789/score", None, 404),
        ("GET", "/api/tutors/123456789/churn-risk", None, 404),
        ("GET", "/api/tutors?limit=0", None, 422),
        ("GET", "/api/tutors?limit=101", None, 422),
        ("GET", "/api/tutors?search=a%00b", None, 422),
        ("POST", "/api/tutors", {"name": "x"}, 422),
        ("POST", "/api/tutors", {"name": "x", "email": "not-an-email"}, 422),
        ("POST", "/api/tutors", {"name": "nul\u0000byte", "email": "n@example.test"}, 422),
        ("POST", "/api/tutors", {"name": "x", "email": "x@example.test", "extra": 1}, 422),
        ("POST", "/api/tutors", {"name": "x", "email": "x@example.test", "hourly_rate": -1}, 422),
        ("POST", "/api/tutors/123456789/sessions",
         {"student_id": 1, "subject": "m", "started_at": "2026-01-01T00:00:00Z", "duration_minutes": 5}, 404),
        ("POST", "/api/tutors/1/sessions",
         {"student_id": 1, "subject": "m", "started_at": "2026-01-01T00:00:00", "duration_minutes": 5}, 422),
        ("POST", "/api/tutors/1/sessions",
         {"student_id": 1, "subject": "m", "started_at": "2026-01-01T00:00:00Z", "duration_minutes": 5000}, 422),
        ("POST", "/api/sessions/123456789/rating", {"score": 3}, 404),
        ("POST", "/api/sessions/1/rating", {"score": 6}, 422),
        ("POST", "/api/exports", {"kind": "everything"}, 422),
        ("POST", "/api/exports", {"kind": "tutors", "days": 3}, 422),
        ("POST", "/api/exports", {"kind": "daily_metrics", "days": 367}, 422),
        ("POST", "/api/exports", {"kind": "daily_metrics", "end": 0}, 422),
        ("POST", "/api/sessions/1/rating", {"score": "5"}, 422),
        ("PATCH", "/api/tutors/1", {"active": "yes"}, 422),
        ("PATCH", "/api/tutors/1", {"active": None}, 422),
        ("PATCH", "/api/tutors/1", {"name": None}, 422),
        ("POST", "/api/sessions/1/rating", {"score": True}, 422),
        ("GET", "/api/tutors/1/metrics?end=0", None, 422),
        ("POST", "/api/exports", b"\xff not json", 422),
        ("DELETE", "/api/tutors", None, 405),
        ("GET", "/api/exports/not-a-uuid", None, 422),
        ("GET", "/api/exports/00000000-0000-0000-0000-000000000000", None, 404),
        ("GET", "/api/exports/00000000-0000-0000-0000-000000000000/download", None, 404),
    ],
)  # fmt: skip
def test_bad_input_is_422_with_a_reason_and_unknown_ids_are_404(
    api: httpx.Client, method: str, path: str, body: dict[str, Any] | bytes | None, status: int
) -> None:
    if isinstance(body, bytes):
        response = api.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        response = api.request(method, path, json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail
    if status == 422:
        assert isinstance(detail, list)
        assert detail[0]["msg"]
    if status == 405:
        assert response.headers["allow"] == "GET, POST"


def test_metrics_range_is_bounded_by_the_schema(api: httpx.Client) -> None:
    tutor = create_tutor(api)
    assert api.get(f"/api/tutors/{tutor['id']}/metrics", params={"days": 366}).status_code == 200
    too_long = api.get(f"/api/tutors/{tutor['id']}/metrics", params={"days": 367})
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["query", "days"]
    early = api.get(f"/api/tutors/{tutor['id']}/metrics", params={"end": "0001-01-05", "days": 30})
    assert early.status_code == 200
    assert early.json() == []


def test_openapi_is_served_under_api(api: httpx.Client) -> None:
    schema = api.get("/api/openapi.json").json()
    assert schema["info"]["version"] == "1.0.0"
    assert "/api/tutors/{tutor_id}" in schema["paths"]
    assert "/api/health" in schema["paths"]


def test_prometheus_metrics_count_requests_per_route_template(api: httpx.Client) -> None:
    tutor = create_tutor(api)
    for _ in range(3):
        api.get(f"/api/tutors/{tutor['id']}")
    text = api.get("/metrics").text
    assert 'tutormax_http_requests_total{method="GET",route="/api/tutors/{tutor_id}",status="200"}' in text
    assert (
        'tutormax_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/tutors/{tutor_id}"}' in text
    )
    assert f"/api/tutors/{tutor['id']}" not in text  # ids never become labels
