"""Celery tasks. Each retries with exponential backoff on dependency failures (database, Redis,
SMTP), acknowledges late, and has soft and hard time limits (see tutormax.data.taskqueue)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tutormax.data import exports as exports_repo
from tutormax.data import heartbeats
from tutormax.data.db import UNAVAILABLE_ERRORS
from tutormax.data.resources import Resources, open_resources
from tutormax.data.taskqueue import (
    AGGREGATE_DAILY_METRICS,
    BEAT_HEADER,
    BEAT_HEARTBEAT,
    BEAT_SENT_AT_HEADER,
    BUILD_EXPORT,
    COMPUTE_PERFORMANCE_SCORES,
    NOTIFY_SCORE_DROPS,
    PURGE_EXPIRED_EXPORTS,
    TRAIN_CHURN_MODEL,
)
from tutormax.services import churn, exports, metrics, scores
from tutormax.services.errors import UnavailableError
from tutormax.settings import Settings
from tutormax.worker.app import app

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Failures worth retrying: the dependency may be back in a moment.
TRANSIENT = (*UNAVAILABLE_ERRORS, RedisConnectionError, RedisTimeoutError, UnavailableError, OSError)
RETRYING: dict[str, Any] = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 1,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 6,
}


def _settings() -> Settings:
    settings: Settings = app.tutormax_settings
    return settings


def _run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    async def call() -> T:
        async with open_resources(_settings(), api=False) as resources:
            return await fn(resources, *args)

    return asyncio.run(call())


def _day(value: str | None) -> dt.date:
    """The given ISO date, or yesterday (UTC) for the nightly runs."""
    if value:
        return dt.date.fromisoformat(value)
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


@app.task(name=AGGREGATE_DAILY_METRICS, **RETRYING)
def aggregate_daily_metrics(day: str | None = None) -> dict[str, object]:
    """Aggregate every tutor's sessions and ratings of ``day`` (default yesterday); idempotent."""
    return _run(metrics.aggregate_day, _day(day))


@app.task(name=COMPUTE_PERFORMANCE_SCORES, **RETRYING)
def compute_performance_scores(day: str | None = None, notify: bool = True) -> dict[str, object]:
    """Compute scores for ``day`` (default yesterday), then queue the score-drop emails."""
    target = _day(day)
    result = _run(scores.compute_scores, target)
    if notify:
        notify_score_drops.delay(target.isoformat())
    return result


@app.task(name=NOTIFY_SCORE_DROPS, **RETRYING)
def notify_score_drops(day: str | None = None) -> dict[str, object]:
    """Email tutors whose score for ``day`` dropped; retried until every email went out."""
    return _run(scores.notify_score_drops, _day(day))


@app.task(name=BUILD_EXPORT, **RETRYING)
def build_export(export_id: str) -> dict[str, object]:
    """Build a requested CSV export and store it in PostgreSQL."""
    ident = uuid.UUID(export_id)
    try:
        return _run(exports.build_export, ident)
    except SoftTimeLimitExceeded:

        async def fail(r: Resources) -> None:
            async with r.db.primary() as conn:
                await exports_repo.fail(conn, ident, "the export took longer than its time limit")

        _run(fail)
        raise


@app.task(name=TRAIN_CHURN_MODEL, **RETRYING)
def train_churn_model() -> dict[str, object]:
    """Train the churn model on all tutors and store it as a new version."""
    return _run(churn.train_model)


@app.task(name=PURGE_EXPIRED_EXPORTS, **RETRYING)
def purge_expired_exports() -> dict[str, object]:
    """Delete exports past EXPORT_RETENTION_HOURS."""
    return _run(exports.purge_expired)


@app.task(name=BEAT_HEARTBEAT, bind=True, **RETRYING)
def beat_heartbeat(self: Any) -> dict[str, object]:
    """Record which beat scheduled this run and which worker ran it (table beat_heartbeats)."""
    beat = str(getattr(self.request, BEAT_HEADER, None) or "unknown")
    sent_text = getattr(self.request, BEAT_SENT_AT_HEADER, None)
    sent_at = dt.datetime.fromisoformat(sent_text) if isinstance(sent_text, str) else None
    worker = str(self.request.hostname or "unknown")

    async def record(r: Resources) -> int:
        async with r.db.primary() as conn:
            return await heartbeats.record(conn, beat, worker, sent_at)

    return {"id": _run(record), "beat": beat, "worker": worker}
