"""The beat schedule (UTC).

Aggregation of yesterday first, scores half an hour later (the aggregation's hard time limit is 5
minutes), then the score-drop emails (queued by the score task itself).
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from tutormax.data.taskqueue import (
    AGGREGATE_DAILY_METRICS,
    COMPUTE_PERFORMANCE_SCORES,
    PURGE_EXPIRED_EXPORTS,
    TRAIN_CHURN_MODEL,
)

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "aggregate-daily-metrics": {"task": AGGREGATE_DAILY_METRICS, "schedule": crontab(hour=0, minute=30)},
    "compute-performance-scores": {"task": COMPUTE_PERFORMANCE_SCORES, "schedule": crontab(hour=1, minute=0)},
    "train-churn-model": {"task": TRAIN_CHURN_MODEL, "schedule": crontab(hour=2, minute=0, day_of_week=0)},
    "purge-expired-exports": {"task": PURGE_EXPIRED_EXPORTS, "schedule": crontab(minute=15)},
}
