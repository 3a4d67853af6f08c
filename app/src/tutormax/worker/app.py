"""The Celery app ``tutormax``: configuration from the settings, tasks, and the beat schedule."""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from tutormax.data.taskqueue import (
    AGGREGATE_DAILY_METRICS,
    COMPUTE_PERFORMANCE_SCORES,
    PURGE_EXPIRED_EXPORTS,
    TRAIN_CHURN_MODEL,
    create_celery,
)
from tutormax.settings import load_settings

#: Nightly jobs (UTC). Aggregation of yesterday first, scores half an hour later (the aggregation's
#: hard time limit is 5 minutes), then the score-drop emails (queued by the score task itself).
BEAT_SCHEDULE = {
    "aggregate-daily-metrics": {"task": AGGREGATE_DAILY_METRICS, "schedule": crontab(hour=0, minute=30)},
    "compute-performance-scores": {"task": COMPUTE_PERFORMANCE_SCORES, "schedule": crontab(hour=1, minute=0)},
    "train-churn-model": {"task": TRAIN_CHURN_MODEL, "schedule": crontab(hour=2, minute=0, day_of_week=0)},
    "purge-expired-exports": {"task": PURGE_EXPIRED_EXPORTS, "schedule": crontab(minute=15)},
}


def create_worker_app() -> Celery:
    """The worker's Celery app, with the tasks and the beat schedule."""
    settings = load_settings()
    celery = create_celery(settings)
    celery.conf.beat_schedule = BEAT_SCHEDULE
    celery.conf.worker_consumer = "tutormax.worker.consumer:Consumer"
    celery.conf.include = ["tutormax.worker.tasks"]
    celery.tutormax_settings = settings
    return celery


app = create_worker_app()
