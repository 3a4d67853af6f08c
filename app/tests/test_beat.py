"""Beat on two hosts, one active (RedBeat's lock in the Sentinel-managed Redis): the active one
SIGKILLed, the other takes over within the lock timeout and a loop, and the heartbeat, due every
second, runs neither twice for one due time nor with a gap longer than that window (counted in
PostgreSQL's beat_heartbeats)."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import subprocess
import time

import psycopg
import pytest

from harness import Stack, stop_process, wait_until

pytestmark = pytest.mark.usefixtures("worker")

LOCK_TIMEOUT = 5  # CELERY_BEAT_LOCK_TIMEOUT's lowest value
LOOP = LOCK_TIMEOUT // 5  # beat_max_loop_interval (tutormax.data.taskqueue.beat_config)
INTERVAL = 1  # CELERY_BEAT_HEARTBEAT_SECONDS


def start_beat(stack: Stack, name: str) -> subprocess.Popen[bytes]:
    env = stack.env(
        API_INSTANCE_ID=name,
        CELERY_BEAT_LOCK_TIMEOUT=str(LOCK_TIMEOUT),
        CELERY_BEAT_HEARTBEAT_SECONDS=str(INTERVAL),
    )
    return stack.spawn(["-m", "tutormax", "beat"], env, name)


def heartbeats(stack: Stack, since: dt.datetime) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """(beat, sent_at, ran_at) of every heartbeat since ``since``, in the order they were sent."""
    with psycopg.connect(stack.pg.primary_url) as conn:
        rows = conn.execute(
            "SELECT beat, sent_at, ran_at FROM beat_heartbeats WHERE ran_at >= %s ORDER BY sent_at", (since,)
        ).fetchall()
    return [(str(b), s, r) for b, s, r in rows]


def gaps(rows: list[tuple[str, dt.datetime, dt.datetime]]) -> list[float]:
    return [(b[1] - a[1]).total_seconds() for a, b in itertools.pairwise(rows)]


def test_a_killed_beat_is_replaced_within_the_lock_timeout_without_a_doubled_or_lost_run(stack: Stack) -> None:
    start = dt.datetime.now(dt.UTC)
    beat_a = start_beat(stack, "beat-a")
    wait_until(lambda: any(b == "beat-a" for b, *_ in heartbeats(stack, start)), 60, "beat-a's first heartbeat")
    beat_b = start_beat(stack, "beat-b")
    try:
        wait_until(lambda: "beat: Starting" in stack.log("beat-b"), 30, "beat-b started")
        time.sleep(3 * INTERVAL + LOOP)
        before = heartbeats(stack, start)
        assert {b for b, *_ in before} == {"beat-a"}, "two beats scheduled at once"
        assert "Acquired lock" not in stack.log("beat-b")

        killed_at = dt.datetime.now(dt.UTC)
        os.killpg(beat_a.pid, signal.SIGKILL)
        beat_a.wait(10)
        wait_until(
            lambda: any(b == "beat-b" for b, *_ in heartbeats(stack, start)),
            LOCK_TIMEOUT + 5 * LOOP + 10,
            "beat-b's first heartbeat",
        )
        time.sleep(3 * INTERVAL)
        rows = heartbeats(stack, start)
    finally:
        stop_process(beat_b)
        stop_process(beat_a)

    first_b = next(r for r in rows if r[0] == "beat-b")
    takeover = (first_b[1] - killed_at).total_seconds()
    print(f"beat-b's first heartbeat sent {takeover:.2f} s after beat-a was killed ({len(rows)} heartbeats)")
    # The lock outlives its holder by at most LOCK_TIMEOUT; the waiting beat tries every LOOP.
    assert takeover <= LOCK_TIMEOUT + LOOP + 1, f"takeover after {takeover:.2f} s"
    # Once beat-b sends, beat-a never does again (it is dead), and neither is ever interleaved.
    order = [b for b, *_ in rows]
    assert order == sorted(order), f"beats interleaved: {order}"
    # Every due time sent once: no two runs closer than half the interval; and no gap longer than
    # the interval (plus a loop of jitter) except across the takeover.
    spacing = gaps(rows)
    assert min(spacing) >= INTERVAL / 2, f"a heartbeat sent twice: gaps {spacing}"
    long_gaps = [g for g in spacing if g > INTERVAL + LOOP]
    assert len(long_gaps) <= 1, spacing
    assert all(g <= LOCK_TIMEOUT + LOOP + 1 for g in long_gaps), spacing
    # Every run was taken by the worker and stored once.
    assert all(r[2] >= r[1] for r in rows)
