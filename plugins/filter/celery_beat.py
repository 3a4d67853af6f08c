# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Filter that reads which Celery beat is active from the newest heartbeat (verify.yml)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def heartbeat_bound(interval: int, lock_timeout: int, longest_task: int = 0) -> int:
    """Seconds after which the newest heartbeat is too old: two intervals missed, plus a takeover
    by another beat (the lock timeout and one loop), plus the longest task a heartbeat may wait
    behind when every worker process is busy (late acks, one message prefetched), plus 5 s."""
    return 2 * interval + lock_timeout + max(1, lock_timeout // 5) + longest_task + 5


def beat_heartbeat_status(
    result: Any,  # noqa: ANN401 - a filter's input: a registered command result
    interval: Any,  # noqa: ANN401
    lock_timeout: Any,  # noqa: ANN401
    longest_task: Any = 0,  # noqa: ANN401
) -> dict[str, Any]:
    """{beat, age, ok, detail} from psql's ``beat|age`` line of the newest heartbeat (beat_heartbeat_status.yml)."""
    if not isinstance(result, Mapping):
        raise AnsibleFilterError(f"beat_heartbeat_status: expects a command result (got {type(result).__name__})")
    try:
        seconds, lock, longest = int(interval), int(lock_timeout), int(longest_task)
    except (TypeError, ValueError) as exc:
        message = f"beat_heartbeat_status: interval, lock_timeout and longest_task must be integers: {exc}"
        raise AnsibleFilterError(message) from exc
    if seconds == 0:
        return {"beat": "", "age": None, "ok": True, "detail": "heartbeat off (celery_beat_heartbeat_seconds: 0)"}
    stdout = str(result.get("stdout") or "").strip()
    if result.get("rc") != 0:
        error = str(result.get("stderr") or result.get("msg") or stdout or "no answer").strip()
        return {"beat": "", "age": None, "ok": False, "detail": f"no heartbeat read: {error}"}
    if not stdout:
        # A new deployment: the first heartbeat comes one interval after beat starts.
        detail = f"no heartbeat yet (the first comes {seconds} s after beat starts)"
        return {"beat": "", "age": None, "ok": True, "detail": detail}
    beat, sep, age_text = stdout.splitlines()[0].partition("|")
    if not sep or not age_text.strip().lstrip("-").isdigit():
        return {"beat": "", "age": None, "ok": False, "detail": f"unreadable heartbeat row: {stdout[:200]}"}
    age, bound = int(age_text), heartbeat_bound(seconds, lock, longest)
    return {
        "beat": beat,
        "age": age,
        "ok": age <= bound,
        "detail": f"{beat}, newest heartbeat {age} s ago (every {seconds} s; older than {bound} s fails)",
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"beat_heartbeat_status": beat_heartbeat_status}
