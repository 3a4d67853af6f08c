"""The Celery side shared by the API (which enqueues) and the worker (which runs): names, limits,
configuration.

Broker and result backend both go through Sentinel when ``REDIS_SENTINELS`` is set: ``sentinel://``
URLs carry the Redis ACL user and password, and the transport options carry the master name and the
Sentinels' own password (``sentinel_kwargs``), as kombu and Celery's SentinelBackend expect.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final
from urllib.parse import urlsplit

from celery import Celery

from tutormax.settings import Settings

# Task names are the contract between enqueuers and the worker; keep them stable across releases.
AGGREGATE_DAILY_METRICS: Final = "tutormax.aggregate_daily_metrics"
COMPUTE_PERFORMANCE_SCORES: Final = "tutormax.compute_performance_scores"
NOTIFY_SCORE_DROPS: Final = "tutormax.notify_score_drops"
BUILD_EXPORT: Final = "tutormax.build_export"
TRAIN_CHURN_MODEL: Final = "tutormax.train_churn_model"
PURGE_EXPIRED_EXPORTS: Final = "tutormax.purge_expired_exports"

#: (soft, hard) time limits in seconds. The soft limit raises inside the task so it can clean up;
#: the hard limit kills the worker process (the message is then redelivered: acks are late).
TIME_LIMITS: Final[dict[str, tuple[int, int]]] = {
    AGGREGATE_DAILY_METRICS: (240, 300),
    COMPUTE_PERFORMANCE_SCORES: (240, 300),
    NOTIFY_SCORE_DROPS: (150, 180),
    BUILD_EXPORT: (540, 600),
    TRAIN_CHURN_MODEL: (540, 600),
    PURGE_EXPIRED_EXPORTS: (60, 90),
}
#: The longest hard time limit. A worker's warm shutdown waits for running tasks, so the service
#: manager's stop timeout (systemd TimeoutStopSec) must be larger than this.
MAX_HARD_TIME_LIMIT: Final = max(hard for _soft, hard in TIME_LIMITS.values())
#: Unacknowledged messages come back after this long; it must exceed the longest task plus the
#: longest retry countdown, or a slow task would run twice at once.
VISIBILITY_TIMEOUT: Final = 3600

_FAST_RETRY = {"max_retries": 5, "interval_start": 0, "interval_step": 0.2, "interval_max": 1.0}


def _is_sentinel(url: str) -> bool:
    return urlsplit(url.split(";", 1)[0].strip()).scheme == "sentinel"


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    if settings.redis_sentinel_password is not None:
        sentinel_kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    return {"master_name": settings.redis_master_name, "sentinel_kwargs": sentinel_kwargs}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery configuration for the API's producer and for the worker and beat."""
    broker, backend = settings.broker_url, settings.result_backend_url
    broker_options: dict[str, Any] = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "socket_connect_timeout": 2,
        "health_check_interval": 10,
        **_FAST_RETRY,
    }
    backend_options: dict[str, Any] = {"retry_policy": dict(_FAST_RETRY, max_retries=10)}
    if _is_sentinel(broker):
        broker_options.update(_sentinel_options(settings))
    if _is_sentinel(backend):
        backend_options.update(_sentinel_options(settings))
    return {
        "broker_url": broker,
        "result_backend": backend,
        "broker_transport_options": broker_options,
        "result_backend_transport_options": backend_options,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_track_started": True,
        "result_expires": 24 * 3600,
        "task_publish_retry": True,
        "task_publish_retry_policy": _FAST_RETRY,
        "worker_concurrency": settings.celery_worker_concurrency,
        "beat_schedule_filename": settings.celery_beat_schedule_file,
        "task_annotations": {
            name: {"soft_time_limit": soft, "time_limit": hard} for name, (soft, hard) in TIME_LIMITS.items()
        },
    }


def create_celery(settings: Settings) -> Celery:
    """A Celery app configured for TutorMax (tasks are registered by ``tutormax.worker``)."""
    app = Celery("tutormax", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class TaskQueue:
    """Enqueue tasks by name from async code (the API never imports the task functions)."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    async def enqueue(self, name: str, *args: Any) -> str:
        """Send a task; returns its id. Raises kombu/redis errors when the broker stays unreachable."""

        def send() -> str:
            result = self._celery.send_task(name, args=list(args))
            return str(result.id)

        return await asyncio.to_thread(send)

    def close(self) -> None:
        """Release the producer's broker connections."""
        self._celery.close()
