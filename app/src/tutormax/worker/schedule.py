"""The beat schedule (UTC).

Aggregation of yesterday first, scores half an hour later (the aggregation's hard time limit is 5
minutes), then the score-drop emails (queued by the score task itself). The heartbeat, every
``CELERY_BEAT_HEARTBEAT_SECONDS``, records which beat scheduled it: the active one.

Beat runs RedBeat's scheduler (tutormax.data.taskqueue.beat_config): any number of beat processes,
one scheduling at a time. ``mark_beat_messages`` is connected in beat's process only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery.schedules import crontab

from tutormax.data.taskqueue import (
    AGGREGATE_DAILY_METRICS,
    BEAT_HEADER,
    BEAT_HEARTBEAT,
    BEAT_SENT_AT_HEADER,
    COMPUTE_PERFORMANCE_SCORES,
    PURGE_EXPIRED_EXPORTS,
    TRAIN_CHURN_MODEL,
)
from tutormax.settings import Settings

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "aggregate-daily-metrics": {"task": AGGREGATE_DAILY_METRICS, "schedule": crontab(hour=0, minute=30)},
    "compute-performance-scores": {"task": COMPUTE_PERFORMANCE_SCORES, "schedule": crontab(hour=1, minute=0)},
    "train-churn-model": {"task": TRAIN_CHURN_MODEL, "schedule": crontab(hour=2, minute=0, day_of_week=0)},
    "purge-expired-exports": {"task": PURGE_EXPIRED_EXPORTS, "schedule": crontab(minute=15)},
}


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """BEAT_SCHEDULE, with the heartbeat unless CELERY_BEAT_HEARTBEAT_SECONDS is 0. Heartbeats do not
    expire: one queued behind busy workers runs late and records when beat sent it (an expiring
    one was dropped: a CI run's rolling update, its workers busy with exports, left 73 s without a
    row while beat sent one every 3 s)."""
    schedule = dict(BEAT_SCHEDULE)
    seconds = settings.celery_beat_heartbeat_seconds
    if seconds:
        schedule["beat-heartbeat"] = {"task": BEAT_HEARTBEAT, "schedule": dt.timedelta(seconds=seconds)}
    return schedule


def mark_beat_messages(instance_id: str) -> Any:
    """A ``before_task_publish`` receiver that names this beat and the send time in each message's
    headers (the heartbeat task stores both)."""

    def receiver(headers: dict[str, Any] | None = None, **_: Any) -> None:
        if headers is not None:
            headers[BEAT_HEADER] = instance_id
            headers[BEAT_SENT_AT_HEADER] = dt.datetime.now(dt.UTC).isoformat()

    return receiver
