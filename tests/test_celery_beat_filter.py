"""The beat_heartbeat_status filter: which beat is active, from psql's line of the newest heartbeat."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from conftest import collection_import

celery_beat = collection_import("plugins.filter.celery_beat")
beat_heartbeat_status = celery_beat.beat_heartbeat_status
heartbeat_bound = celery_beat.heartbeat_bound


def result(stdout: str = "", rc: int = 0, stderr: str = "") -> dict[str, Any]:
    return {"rc": rc, "stdout": stdout, "stderr": stderr}


def test_the_bound_is_two_intervals_a_takeover_and_the_longest_task() -> None:
    # 2 x 60 + 25 (lock) + 5 (one loop) + 600 (a heartbeat queued behind the longest task) + 5
    assert heartbeat_bound(60, 25, 600) == 755
    assert heartbeat_bound(60, 25) == 155
    assert heartbeat_bound(2, 5) == 4 + 5 + 1 + 5


def test_a_recent_heartbeat_names_the_active_beat() -> None:
    status = beat_heartbeat_status(result("cluster-worker1|12"), 60, 25)
    assert status == {
        "beat": "cluster-worker1",
        "age": 12,
        "ok": True,
        "detail": "cluster-worker1, newest heartbeat 12 s ago (every 60 s; older than 155 s fails)",
    }


@pytest.mark.parametrize(("age", "ok"), [(155, True), (156, False), (3600, False)])
def test_a_heartbeat_older_than_the_bound_fails(age: int, ok: bool) -> None:
    assert beat_heartbeat_status(result(f"w2|{age}"), 60, 25)["ok"] is ok


def test_busy_workers_delay_a_heartbeat_by_at_most_the_longest_task() -> None:
    # The CI case: every worker busy with exports for 73 s, a heartbeat due every 3 s.
    assert beat_heartbeat_status(result("w2|73"), 3, 25, 600)["ok"] is True
    assert beat_heartbeat_status(result("w2|73"), 3, 25)["ok"] is False


def test_an_empty_table_is_a_new_deployment_and_passes() -> None:
    status = beat_heartbeat_status(result(""), 60, 25)
    assert status["ok"] is True
    assert status["detail"] == "no heartbeat yet (the first comes 60 s after beat starts)"


def test_a_failed_query_fails_with_its_error() -> None:
    status = beat_heartbeat_status(result(rc=1, stderr='ERROR:  relation "beat_heartbeats" does not exist'), 60, 25)
    assert status["ok"] is False
    assert 'relation "beat_heartbeats" does not exist' in status["detail"]


def test_an_unreadable_row_fails() -> None:
    assert beat_heartbeat_status(result("garbage"), 60, 25)["ok"] is False
    assert beat_heartbeat_status(result("w1|soon"), 60, 25)["ok"] is False


def test_heartbeat_off_passes_without_a_query() -> None:
    skipped = {"skipped": True, "changed": False}
    assert beat_heartbeat_status(skipped, 0, 25) == {
        "beat": "",
        "age": None,
        "ok": True,
        "detail": "heartbeat off (celery_beat_heartbeat_seconds: 0)",
    }


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="expects a command result"):
        beat_heartbeat_status("w1|3", 60, 25)
    with pytest.raises(AnsibleFilterError, match="must be integers"):
        beat_heartbeat_status(result("w1|3"), "often", 25)
