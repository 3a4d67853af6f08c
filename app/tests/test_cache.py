"""Redis cache: hits with a TTL, write-through on update, invalidation by the worker."""

from __future__ import annotations

import httpx
from celery import Celery

from conftest import create_tutor, run_task
from harness import Stack
from tutormax.data.taskqueue import AGGREGATE_DAILY_METRICS, COMPUTE_PERFORMANCE_SCORES


def test_second_read_is_a_cache_hit_with_a_ttl(api: httpx.Client, stack: Stack) -> None:
    tutor = create_tutor(api)
    redis = stack.redis.app_client()
    key = f"tutormax:cache:tutor:{tutor['id']}"
    redis.delete(key)
    first = api.get(f"/api/tutors/{tutor['id']}")
    assert first.headers["x-read-source"] != "cache"
    assert redis.exists(key)
    assert 0 < redis.ttl(key) <= 60
    second = api.get(f"/api/tutors/{tutor['id']}")
    assert second.headers["x-read-source"] == "cache"
    assert second.json() == first.json()


def test_cache_entry_is_what_is_served(api: httpx.Client, stack: Stack) -> None:
    """Proves the hit path really reads Redis: a planted entry is returned as is."""
    tutor = create_tutor(api, name="Real")
    api.get(f"/api/tutors/{tutor['id']}")
    redis = stack.redis.app_client()
    key = f"tutormax:cache:tutor:{tutor['id']}"
    redis.set(key, redis.get(key).replace('"Real"', '"Planted"'), ex=60)
    assert api.get(f"/api/tutors/{tutor['id']}").json()["name"] == "Planted"


def test_update_through_one_instance_is_seen_at_once_through_the_other(api: httpx.Client, api_b: httpx.Client) -> None:
    tutor = create_tutor(api, name="Old name")
    assert api_b.get(f"/api/tutors/{tutor['id']}").json()["name"] == "Old name"  # cached now
    assert api.patch(f"/api/tutors/{tutor['id']}", json={"name": "New name"}).status_code == 200
    got = api_b.get(f"/api/tutors/{tutor['id']}")
    assert got.json()["name"] == "New name"
    assert got.headers["x-read-source"] == "cache"  # write-through replaced the entry


def test_metrics_and_score_caches_are_invalidated_when_the_worker_recomputes(
    api: httpx.Client, api_b: httpx.Client, stack: Stack, worker: object, celery_client: Celery
) -> None:
    tutor = create_tutor(api)
    tid = tutor["id"]
    day = "2026-03-10"
    params = {"end": day, "days": 1}
    assert api.get(f"/api/tutors/{tid}/metrics", params=params).json() == []
    assert api.get(f"/api/tutors/{tid}/metrics", params=params).headers["x-read-source"] == "cache"
    assert api.get(f"/api/tutors/{tid}/score").json() is None
    assert api.get(f"/api/tutors/{tid}/score").headers["x-read-source"].startswith("cache")

    session = api.post(
        f"/api/tutors/{tid}/sessions",
        json={"student_id": 1, "subject": "math", "started_at": f"{day}T15:00:00Z", "duration_minutes": 30},
    ).json()
    api.post(f"/api/sessions/{session['id']}/rating", json={"score": 5})
    run_task(celery_client, AGGREGATE_DAILY_METRICS, day)
    run_task(celery_client, COMPUTE_PERFORMANCE_SCORES, day, False)
    stack.pg.wait_replayed()

    metrics = api_b.get(f"/api/tutors/{tid}/metrics", params=params)
    assert metrics.headers["x-read-source"] != "cache"
    assert metrics.json()[0]["sessions_total"] == 1
    score = api_b.get(f"/api/tutors/{tid}/score").json()
    assert score["score"] == 100.0
    assert score["computed_for"] == day
