"""The Celery side shared by the API (which enqueues) and the worker (which runs): names, limits,
configuration.

Broker and result backend both go through Sentinel when ``REDIS_SENTINELS`` is set: ``sentinel://``
URLs carry the Redis ACL user and password, and the transport options carry the master name and the
Sentinels' own password (``sentinel_kwargs``), as kombu and Celery's SentinelBackend expect.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Final
from urllib.parse import urlsplit

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from tutormax.settings import Settings

# Task names are the contract between enqueuers and the worker; keep them stable across releases.
AGGREGATE_DAILY_METRICS: Final = "tutormax.aggregate_daily_metrics"
COMPUTE_PERFORMANCE_SCORES: Final = "tutormax.compute_performance_scores"
NOTIFY_SCORE_DROPS: Final = "tutormax.notify_score_drops"
BUILD_EXPORT: Final = "tutormax.build_export"
TRAIN_CHURN_MODEL: Final = "tutormax.train_churn_model"
PURGE_EXPIRED_EXPORTS: Final = "tutormax.purge_expired_exports"
BEAT_HEARTBEAT: Final = "tutormax.beat_heartbeat"

#: (soft, hard) time limits in seconds. The soft limit raises inside the task so it can clean up;
#: the hard limit kills the worker process (the message is then redelivered: acks are late).
TIME_LIMITS: Final[dict[str, tuple[int, int]]] = {
    AGGREGATE_DAILY_METRICS: (240, 300),
    COMPUTE_PERFORMANCE_SCORES: (240, 300),
    NOTIFY_SCORE_DROPS: (150, 180),
    BUILD_EXPORT: (540, 600),
    TRAIN_CHURN_MODEL: (540, 600),
    PURGE_EXPIRED_EXPORTS: (60, 90),
    BEAT_HEARTBEAT: (20, 30),
}
#: The longest hard time limit. A worker's warm shutdown waits for running tasks, so the service
#: manager's stop timeout (systemd TimeoutStopSec) must be larger than this.
MAX_HARD_TIME_LIMIT: Final = max(hard for _soft, hard in TIME_LIMITS.values())
#: Unacknowledged messages come back after this long; it must exceed the longest task plus the
#: longest retry countdown, or a slow task would run twice at once.
VISIBILITY_TIMEOUT: Final = 3600

#: Retries that outlast a Sentinel failover: the Sentinels declare the master down after
#: ``down-after-milliseconds`` (the redis role's default: 3 s) and promote a replica about a second
#: later; the new master may refuse writes (NOREPLICAS) until its replicas follow it. 0 s, then
#: 0.2 s steps up to 1 s, 15 times: about 12 s before a send or a result write gives up.
FAILOVER_RETRY: Final = {"max_retries": 15, "interval_start": 0, "interval_step": 0.2, "interval_max": 1.0}
#: Beat's scheduler: RedBeat keeps the schedule (each entry's last run) and a lock in Redis, so beat
#: runs on several hosts and one, the lock's holder, schedules. Its keys, under the app's prefix:
REDBEAT_KEY_PREFIX: Final = "tutormax:beat:"
#: Seconds RedBeat retries a Redis command that failed (a Sentinel failover) before beat gives up.
REDBEAT_RETRY_SECONDS: Final = 12
#: Message headers the active beat adds to what it sends (see tutormax.worker.schedule): its
#: instance id, and when it sent the message (ISO 8601, UTC).
BEAT_HEADER: Final = "tutormax_beat"
BEAT_SENT_AT_HEADER: Final = "tutormax_beat_sent_at"
#: How long the API keeps trying to send a task before it answers 503 (see TaskQueue.enqueue).
ENQUEUE_RETRY_SECONDS: Final = 12.0

log = logging.getLogger(__name__)


def _is_sentinel(url: str) -> bool:
    return urlsplit(url.split(";", 1)[0].strip()).scheme == "sentinel"


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    if settings.redis_sentinel_password is not None:
        sentinel_kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    return {"master_name": settings.redis_master_name, "sentinel_kwargs": sentinel_kwargs}


def beat_config(settings: Settings) -> dict[str, Any]:
    """RedBeat's settings: where its schedule and lock live, and how long a lost holder keeps the lock.

    Beat extends the lock on every loop and loops at least every ``lock_timeout / 5`` seconds; a
    beat that does not hold the lock tries to take it at that same interval. A lost holder is
    replaced within ``lock_timeout`` plus one loop, and the schedule's last runs, kept in Redis,
    carry over: no entry runs twice for one due time.
    """
    url, options = settings.redbeat_redis()
    return {
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "beat_max_loop_interval": max(1, settings.celery_beat_lock_timeout // 5),
        "redbeat_redis_url": url,
        "redbeat_redis_options": {**options, "retry_period": REDBEAT_RETRY_SECONDS},
        "redbeat_key_prefix": REDBEAT_KEY_PREFIX,
        "redbeat_lock_timeout": settings.celery_beat_lock_timeout,
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery configuration for the API's producer and for the worker and beat."""
    broker, backend = settings.broker_url, settings.result_backend_url
    broker_options: dict[str, Any] = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "socket_connect_timeout": 2,
        "health_check_interval": 10,
        **FAILOVER_RETRY,
    }
    backend_options: dict[str, Any] = {"retry_policy": dict(FAILOVER_RETRY)}
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
        # An error reply from the broker (NOREPLICAS from a new master whose replicas have not yet
        # followed it, READONLY or UNBLOCKED from a demoted one) makes the consumer reconnect through
        # the Sentinels instead of ending the worker ("Unrecoverable error", exit status 0).
        "broker_channel_error_retry": True,
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
        "task_publish_retry_policy": FAILOVER_RETRY,
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

    def __init__(self, celery: Celery, retry_seconds: float = ENQUEUE_RETRY_SECONDS) -> None:
        self._celery = celery
        self._retry_seconds = retry_seconds

    async def enqueue(self, name: str, *args: Any) -> str:
        """Send a task; returns its id. Raises kombu/redis errors when the broker stays unreachable
        for ``retry_seconds``.

        kombu's own retries end early on a Redis failover: its Redis transport connects lazily, so
        "reconnected" comes at once and the next refusal (the dead master, named by the Sentinels
        until they promote a replica) is raised. Sends are retried here until the window is over,
        under one task id: a send that reached the broker before its error was raised runs once.
        """
        task_id = str(uuid.uuid4())

        def send() -> str:
            result = self._celery.send_task(name, args=list(args), task_id=task_id)
            return str(result.id)

        deadline = time.monotonic() + self._retry_seconds
        delay = 0.2
        while True:
            try:
                return await asyncio.to_thread(send)
            except (KombuOperationalError, RedisError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("the task queue refused %s (%s); retrying in %.1f s", name, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def close(self) -> None:
        """Release the producer's broker connections."""
        self._celery.close()
