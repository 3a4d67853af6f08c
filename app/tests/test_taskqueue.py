"""The API's task sends through a broker that refuses for a while (a Redis failover)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kombu.exceptions import OperationalError

from tutormax.data.taskqueue import TaskQueue


class FlakyCelery:
    """send_task fails ``failures`` times, then sends; records the task id of every attempt."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[str] = []

    def send_task(self, name: str, args: list[Any], task_id: str) -> SimpleNamespace:
        self.attempts.append(task_id)
        if len(self.attempts) <= self.failures:
            raise OperationalError("Error 111 connecting to 10.0.0.5:6379. Connection refused.")
        return SimpleNamespace(id=task_id)


def test_a_send_is_retried_through_a_failover_under_one_task_id() -> None:
    celery = FlakyCelery(failures=3)
    task_id = asyncio.run(TaskQueue(celery, retry_seconds=5).enqueue("tutormax.build_export", "e1"))  # type: ignore[arg-type]
    # One id for every attempt: a send that reached the broker before its error runs once.
    assert celery.attempts == [task_id] * 4


def test_a_broker_that_stays_away_fails_the_send_after_the_window() -> None:
    celery = FlakyCelery(failures=10**6)
    start = time.monotonic()
    with pytest.raises(OperationalError):
        asyncio.run(TaskQueue(celery, retry_seconds=1.0).enqueue("tutormax.build_export", "e1"))  # type: ignore[arg-type]
    assert 0.5 < time.monotonic() - start < 3
    assert 2 <= len(celery.attempts) <= 10
