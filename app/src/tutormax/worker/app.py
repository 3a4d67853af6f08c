"""The Celery app ``tutormax``: configuration from the settings, tasks, the beat schedule, and the
worker's Prometheus metrics (tutormax.worker.observability)."""

from __future__ import annotations

from celery import Celery

from tutormax.data.taskqueue import beat_config, create_celery
from tutormax.settings import load_settings
from tutormax.worker import observability
from tutormax.worker.schedule import beat_schedule


def create_worker_app() -> Celery:
    """The worker's Celery app, with the tasks and the beat schedule."""
    settings = load_settings()
    celery = create_celery(settings)
    celery.conf.update(beat_config(settings))
    celery.conf.beat_schedule = beat_schedule(settings)
    celery.conf.worker_consumer = "tutormax.worker.consumer:Consumer"
    celery.conf.include = ["tutormax.worker.tasks"]
    celery.tutormax_settings = settings
    observability.install(settings)
    return celery


app = create_worker_app()
