"""Every Celery task, run by a real worker process through the Sentinel-managed broker."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx
import psycopg
import pytest
from celery import Celery

from conftest import SmtpSink, create_tutor, run_task
from harness import Stack, stop_process, wait_until
from tutormax.data.taskqueue import (
    AGGREGATE_DAILY_METRICS,
    COMPUTE_PERFORMANCE_SCORES,
    NOTIFY_SCORE_DROPS,
    PURGE_EXPIRED_EXPORTS,
    REDBEAT_KEY_PREFIX,
    TRAIN_CHURN_MODEL,
)
from tutormax.worker.schedule import BEAT_SCHEDULE

pytestmark = pytest.mark.usefixtures("worker")


def add_session(
    api: httpx.Client, tutor_id: int, when: str, status: str = "completed", rating: int | None = None
) -> None:
    """Record a session (and optionally its rating) through the API."""
    session = api.post(
        f"/api/tutors/{tutor_id}/sessions",
        json={"student_id": 1, "subject": "math", "started_at": when, "duration_minutes": 50, "status": status},
    )
    assert session.status_code == 201, session.text
    if rating is not None:
        assert api.post(f"/api/sessions/{session.json()['id']}/rating", json={"score": rating}).status_code == 201


def metric_rows(stack: Stack, day: str) -> list[tuple[Any, ...]]:
    """The stored daily_metrics rows of a day (without computed_at)."""
    with psycopg.connect(stack.pg.primary_url) as conn:
        return conn.execute(
            "SELECT tutor_id, day, sessions_total, sessions_completed, no_shows, cancellations, minutes_taught,"
            " ratings_count, rating_sum, avg_rating FROM daily_metrics WHERE day = %s ORDER BY tutor_id",
            (day,),
        ).fetchall()


def test_aggregation_counts_a_day_and_rerunning_it_gives_the_same_rows(
    api: httpx.Client, stack: Stack, celery_client: Celery
) -> None:
    day = "2026-05-02"
    tutor = create_tutor(api)
    add_session(api, tutor["id"], f"{day}T08:00:00Z", rating=5)
    add_session(api, tutor["id"], f"{day}T23:59:59Z", rating=2)
    add_session(api, tutor["id"], f"{day}T12:00:00Z", status="no_show")
    add_session(api, tutor["id"], f"{day}T13:00:00Z", status="cancelled")
    add_session(api, tutor["id"], "2026-05-03T00:00:00Z")  # next day (UTC): not counted

    result = run_task(celery_client, AGGREGATE_DAILY_METRICS, day)
    assert result["day"] == day
    first = metric_rows(stack, day)
    mine = [row for row in first if row[0] == tutor["id"]]
    assert len(mine) == 1
    _, _, total, completed, no_shows, cancellations, minutes, ratings, rating_sum, avg = mine[0]
    assert (total, completed, no_shows, cancellations, minutes, ratings, rating_sum) == (4, 2, 1, 1, 100, 2, 7)
    assert float(avg) == 3.5

    run_task(celery_client, AGGREGATE_DAILY_METRICS, day)
    assert metric_rows(stack, day) == first

    stack.pg.wait_replayed()
    served = api.get(f"/api/tutors/{tutor['id']}/metrics", params={"end": day, "days": 1}).json()
    assert served[0]["sessions_total"] == 4
    assert served[0]["avg_rating"] == 3.5


def test_scores_drop_and_the_tutor_is_emailed_once_even_after_an_smtp_failure(
    api: httpx.Client, stack: Stack, celery_client: Celery, smtp: SmtpSink
) -> None:
    good_day, bad_day = "2026-06-01", "2026-06-02"
    tutor = create_tutor(api, name="Dropping Tutor")
    steady = create_tutor(api, name="Steady Tutor")
    for hour in (10, 11, 12):
        add_session(api, tutor["id"], f"{good_day}T{hour}:00:00Z", rating=5)
        add_session(api, steady["id"], f"{good_day}T{hour}:00:00Z", rating=5)
        add_session(api, tutor["id"], f"{bad_day}T{hour}:00:00Z", status="no_show")
    add_session(api, tutor["id"], f"{bad_day}T15:00:00Z", rating=1)
    for day in (good_day, bad_day):
        run_task(celery_client, AGGREGATE_DAILY_METRICS, day)
        run_task(celery_client, COMPUTE_PERFORMANCE_SCORES, day, False)

    stack.pg.wait_replayed()
    score = api.get(f"/api/tutors/{tutor['id']}/score").json()
    assert score["computed_for"] == bad_day
    assert score["previous_score"] == 100.0
    assert score["score"] < 100.0 - 5
    assert set(score["components"]) == {"rating", "completion", "reliability"}

    # The SMTP server refuses the first attempt: the task fails, is retried with backoff, and sends.
    smtp.refuse_next = 1
    result = run_task(celery_client, NOTIFY_SCORE_DROPS, bad_day, timeout=90)
    assert result["sent"] >= 1
    assert smtp.refused == 1
    mails = smtp.to(tutor["email"])
    assert len(mails) == 1
    body = mails[0].content.decode() if isinstance(mails[0].content, bytes) else str(mails[0].content)
    assert "Your TutorMax score dropped" in body
    assert "Dropping Tutor" in body
    assert smtp.to(steady["email"]) == []

    # Re-running sends nothing new.
    again = run_task(celery_client, NOTIFY_SCORE_DROPS, bad_day)
    assert again["sent"] == 0
    assert len(smtp.to(tutor["email"])) == 1


def test_score_task_queues_the_notification_task_itself(
    api: httpx.Client, celery_client: Celery, smtp: SmtpSink
) -> None:
    d1, d2 = "2026-07-01", "2026-07-02"
    tutor = create_tutor(api)
    add_session(api, tutor["id"], f"{d1}T10:00:00Z", rating=5)
    add_session(api, tutor["id"], f"{d2}T10:00:00Z", rating=1)
    for day in (d1, d2):
        run_task(celery_client, AGGREGATE_DAILY_METRICS, day)
    run_task(celery_client, COMPUTE_PERFORMANCE_SCORES, d1)
    run_task(celery_client, COMPUTE_PERFORMANCE_SCORES, d2)  # notify=True by default, as beat runs it
    wait_until(lambda: len(smtp.to(tutor["email"])) == 1, 30, "score-drop email")


def _download_when_done(client: httpx.Client, export_id: str) -> httpx.Response:
    def done() -> bool:
        status = client.get(f"/api/exports/{export_id}").json()["status"]
        assert status != "failed"
        return bool(status == "done")

    wait_until(done, 60, "export", interval=0.2)
    return client.get(f"/api/exports/{export_id}/download")


def test_export_round_trip_any_instance_serves_the_csv(api: httpx.Client, api_b: httpx.Client) -> None:
    # A comma, quotes, a lone CR and a formula: quoting and CSV-injection escaping are exercised.
    tutor = create_tutor(api, name='Exported, "Tutor"\rTwo')
    formula = create_tutor(api, name="=HYPERLINK(1)")
    requested = api.post("/api/exports", json={"kind": "tutors"})
    assert requested.status_code == 202
    export = requested.json()
    assert export["status"] == "pending"
    assert requested.headers["location"] == f"/api/exports/{export['id']}"
    # Read-your-own-write from the other instance, right away.
    assert api_b.get(f"/api/exports/{export['id']}").status_code == 200

    csv_response = _download_when_done(api_b, export["id"])
    assert csv_response.status_code == 200
    assert csv_response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_response.text, newline="")))
    by_id = {row["id"]: row for row in rows}
    assert by_id[str(tutor["id"])]["name"] == 'Exported, "Tutor"\rTwo'
    assert by_id[str(formula["id"])]["name"] == "'=HYPERLINK(1)"
    status = api.get(f"/api/exports/{export['id']}").json()
    assert status["row_count"] == len(rows)
    assert status["size_bytes"] == len(csv_response.content)


def test_daily_metrics_export_and_not_ready_is_409(api: httpx.Client, celery_client: Celery) -> None:
    day = "2026-08-03"
    tutor = create_tutor(api)
    add_session(api, tutor["id"], f"{day}T10:00:00Z", rating=3)
    run_task(celery_client, AGGREGATE_DAILY_METRICS, day)
    export = api.post("/api/exports", json={"kind": "daily_metrics", "end": day, "days": 1}).json()
    early = api.get(f"/api/exports/{export['id']}/download")
    assert early.status_code in (200, 409)  # 409 unless the worker was already done
    rows = list(csv.DictReader(io.StringIO(_download_when_done(api, export["id"]).text, newline="")))
    assert [(r["tutor_id"], r["day"], r["ratings_count"]) for r in rows if r["tutor_id"] == str(tutor["id"])] == [
        (str(tutor["id"]), day, "1")
    ]


def test_churn_model_is_trained_versioned_and_used_by_the_endpoint(
    api: httpx.Client, api_b: httpx.Client, stack: Stack, celery_client: Celery
) -> None:
    now = time.time()
    recent = [time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(now - 86400 * d)) for d in (1, 2, 3, 4)]
    long_ago = time.strftime("%Y-%m-%dT10:00:00Z", time.gmtime(now - 86400 * 80))
    stayers, leavers = [], []
    for i in range(6):
        t = create_tutor(api, name=f"Stayer {i}")
        for when in recent:
            add_session(api, t["id"], when, rating=5)
        stayers.append(t)
        t = create_tutor(api, name=f"Leaver {i}")
        add_session(api, t["id"], long_ago, status="no_show")
        add_session(api, t["id"], long_ago.replace("T10", "T11"), rating=1)
        api.patch(f"/api/tutors/{t['id']}", json={"active": False})
        leavers.append(t)

    first = run_task(celery_client, TRAIN_CHURN_MODEL)
    assert first["status"] == "trained"
    second = run_task(celery_client, TRAIN_CHURN_MODEL)
    assert second["version"] == first["version"] + 1
    with psycopg.connect(stack.pg.primary_url) as conn:
        row = conn.execute(
            "SELECT algorithm, feature_names FROM churn_models WHERE version = %s", (second["version"],)
        ).fetchone()
    assert row is not None
    assert row[0] == "logistic_regression"

    stack.pg.wait_replayed()
    risk_stayer = api_b.get(f"/api/tutors/{stayers[0]['id']}/churn-risk").json()
    risk_leaver = api_b.get(f"/api/tutors/{leavers[0]['id']}/churn-risk").json()
    assert risk_stayer["model_version"] == risk_leaver["model_version"] == second["version"]
    assert 0 <= risk_stayer["risk"] < 0.5 < risk_leaver["risk"] <= 1
    assert risk_leaver["features"]["days_since_last_session"] > 60


def test_purge_deletes_only_expired_exports(api: httpx.Client, stack: Stack, celery_client: Celery) -> None:
    keep = api.post("/api/exports", json={"kind": "tutors"}).json()
    drop = api.post("/api/exports", json={"kind": "tutors"}).json()
    with psycopg.connect(stack.pg.primary_url) as conn:
        conn.execute("UPDATE exports SET expires_at = now() - interval '1 minute' WHERE id = %s", (drop["id"],))
    result = run_task(celery_client, PURGE_EXPIRED_EXPORTS)
    assert result["deleted"] >= 1
    assert api.get(f"/api/exports/{drop['id']}").status_code == 404
    assert api.get(f"/api/exports/{keep['id']}").status_code == 200


def test_worker_runs_with_late_acks_and_time_limits(celery_client: Celery) -> None:
    conf = celery_client.control.inspect(timeout=2).conf()
    worker_conf = next(iter(conf.values()))
    assert worker_conf["task_acks_late"] is True
    assert worker_conf["task_reject_on_worker_lost"] is True
    assert worker_conf["worker_prefetch_multiplier"] == 1
    registered = next(iter(celery_client.control.inspect(timeout=2).registered().values()))
    assert {AGGREGATE_DAILY_METRICS, COMPUTE_PERFORMANCE_SCORES, NOTIFY_SCORE_DROPS, TRAIN_CHURN_MODEL} <= {
        name.split(" ")[0] for name in registered
    }


def test_beat_schedules_the_nightly_jobs_and_starts(stack: Stack, worker_env: dict[str, str]) -> None:
    assert BEAT_SCHEDULE["aggregate-daily-metrics"]["task"] == AGGREGATE_DAILY_METRICS
    assert BEAT_SCHEDULE["compute-performance-scores"]["task"] == COMPUTE_PERFORMANCE_SCORES
    aggregate, scores = (
        BEAT_SCHEDULE[n]["schedule"] for n in ("aggregate-daily-metrics", "compute-performance-scores")
    )
    # Nightly, scores after aggregation.
    assert aggregate.hour == {0}
    assert scores.hour == {1}

    env = {**worker_env, "LOG_LEVEL": "DEBUG", "CELERY_BEAT_HEARTBEAT_SECONDS": "0"}
    proc = stack.spawn(["-m", "tutormax", "beat"], env, "beat")
    try:
        # "Acquired lock" comes once beat holds RedBeat's lock; the schedule is then stored in Redis.
        wait_until(lambda: "beat: Acquired lock" in stack.log("beat"), 30, "celery beat")
        wait_until(lambda: "beat: Selecting tasks" in stack.log("beat"), 30, "beat's loop")
        stored = stack.redis.app_client().zrange(f"{REDBEAT_KEY_PREFIX}:schedule", 0, -1)
        assert {key.removeprefix(REDBEAT_KEY_PREFIX) for key in stored} == set(BEAT_SCHEDULE)
        assert proc.poll() is None
    finally:
        stop_process(proc)
    assert proc.returncode == 0


def test_tasks_dispatched_by_the_api_are_the_ones_the_worker_runs(api: httpx.Client) -> None:
    """The API only knows task names; an export requested over HTTP completing proves they match."""
    export = api.post("/api/exports", json={"kind": "tutors"}).json()
    assert _download_when_done(api, export["id"]).status_code == 200
