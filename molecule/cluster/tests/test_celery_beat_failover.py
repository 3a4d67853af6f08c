"""The active beat's host lost (issue 20): another beat host takes over within the lock timeout,
and the heartbeat task, due every few seconds, runs neither twice for a due time nor with a gap
longer than the takeover (counted in PostgreSQL's beat_heartbeats).

Runs after test_celery.py (file order), under 110 requests/s of the API's mixed reads and writes
sent to the load balancers' floating address (benchmarks/loadgen.py; none may fail: losing a
worker and beat host is not the serving path's business): the active beat's container is killed
(`docker kill`: its lock is not released, the worst case), then started again; it comes back as
the waiting beat and the other keeps scheduling. The figures are printed and saved to
benchmarks/results/beat_failover_drill.json.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import time
from typing import Any

import testinfra.utils.ansible_runner
import yaml
from cluster_hosts import LB, REPO, psql, sh

sys.path.insert(0, str(REPO / "benchmarks"))
import loadgen

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
BEAT_HOSTS = sorted(RUNNER.get_hosts("celery_beat"))
PG_HOSTS = sorted(RUNNER.get_hosts("postgres"))
RESULTS = REPO / "benchmarks" / "results"
#: The local inventory's Celery settings (group_vars/all/celery.yml), which the scenario links.
SETTINGS = yaml.safe_load((REPO / "inventories" / "local" / "group_vars" / "all" / "celery.yml").read_text())
INTERVAL = int(SETTINGS["celery_beat_heartbeat_seconds"])
LOCK_TIMEOUT = int(SETTINGS.get("celery_beat_lock_timeout", 25))
LOOP = max(1, LOCK_TIMEOUT // 5)
#: The longest a due heartbeat may wait across the takeover: the lock outlives its holder by at most
#: LOCK_TIMEOUT after its last extension, the waiting beat tries every LOOP, then sends at once.
TAKEOVER_BOUND_S = LOCK_TIMEOUT + LOOP + 2
RATE = 110.0
LOAD_FIGURES = ("requests", "failed", "rate_per_s", "writes", "p99_ms", "max_ms")


def heartbeats(since: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """(beat, sent_at) of every heartbeat sent since ``since``, in order, from a PostgreSQL member
    that answers (the rows are replicated)."""
    # ``since`` is this test's own clock reading (an ISO timestamp), never outside input.
    sql = (
        "SELECT beat, to_char(sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') FROM beat_heartbeats"  # noqa: S608
        f" WHERE sent_at >= '{since.isoformat()}' ORDER BY sent_at"
    )
    for host in PG_HOSTS:
        try:
            out = psql(host, sql, database="tutormax")
        except AssertionError:
            continue
        rows = [line.split("|") for line in out.splitlines() if "|" in line]
        return [(b, dt.datetime.fromisoformat(t).replace(tzinfo=dt.UTC)) for b, t in rows]
    raise AssertionError("no PostgreSQL member answered")


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:  # noqa: ANN401
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def three_or_more(rows: list[tuple[str, dt.datetime]]) -> list[tuple[str, dt.datetime]] | None:
    return rows if len(rows) >= 3 else None


def beat_running(host: str) -> bool:
    state = sh(host, "systemctl", "is-active", "tutormax-beat", check=False).strip()
    return state == "active"


def test_the_active_beat_host_lost_another_takes_over_without_a_doubled_or_lost_run() -> None:
    assert len(BEAT_HOSTS) >= 2, f"the drill needs two beat hosts, the inventory has {BEAT_HOSTS}"
    assert all(beat_running(h) for h in BEAT_HOSTS), "beat does not run on every beat host"
    start = dt.datetime.now(dt.UTC)
    # Three heartbeats in a row from one beat: the schedule runs and shows who is active.
    before = wait_for("three heartbeats", lambda: three_or_more(heartbeats(start)), 6 * INTERVAL + 30)
    active = before[-1][0]
    assert active in BEAT_HOSTS, before
    assert {b for b, _ in before} == {active}, f"two beats scheduled at once: {before}"

    load = loadgen.LoadGenerator(LB, RATE, timeout=10.0, seed=int(time.time()))
    load.start(600)
    try:
        time.sleep(5)
        killed_at = dt.datetime.now(dt.UTC)
        subprocess.run(["docker", "kill", active], check=True, capture_output=True, timeout=60)
        try:
            first_new = wait_for(
                "a heartbeat from another beat",
                lambda: next((r for r in heartbeats(start) if r[0] != active), None),
                TAKEOVER_BOUND_S + 30,
            )
            time.sleep(3 * INTERVAL)
        finally:
            subprocess.run(["docker", "start", active], check=True, capture_output=True, timeout=120)
        # The lost host comes back as the waiting beat: the new holder keeps the lock.
        wait_for(f"beat running again on {active}", lambda: beat_running(active), 120, interval=1)
        time.sleep(3 * INTERVAL + LOOP)
    finally:
        summary = loadgen.summarize(load.stop())
    rows = heartbeats(start)
    after_return = [b for b, t in rows if t > first_new[1]]

    takeover = (first_new[1] - killed_at).total_seconds()
    spacing = [round((b[1] - a[1]).total_seconds(), 2) for a, b in itertools.pairwise(rows)]
    figures = {
        "lost": active,
        "took_over": first_new[0],
        "interval_s": INTERVAL,
        "lock_timeout_s": LOCK_TIMEOUT,
        "takeover_s": round(takeover, 2),
        "heartbeats": len(rows),
        "longest_gap_s": max(spacing),
        "shortest_gap_s": min(spacing),
        "heartbeats_by_beat": {b: sum(1 for r in rows if r[0] == b) for b in sorted({r[0] for r in rows})},
        "load": {k: summary["overall"].get(k) for k in LOAD_FIGURES} | {"failures": summary["failures"][:10]},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "beat_failover_drill.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))

    assert figures["load"]["failed"] == 0, figures
    assert (figures["load"]["rate_per_s"] or 0) >= 100, figures
    assert takeover <= TAKEOVER_BOUND_S, figures
    # No due time sent twice: no two heartbeats closer than half the interval.
    assert min(spacing) >= INTERVAL / 2, spacing
    # None skipped beyond the takeover: one gap at most longer than an interval and a loop, and
    # that one within the bound.
    long_gaps = [g for g in spacing if g > INTERVAL + LOOP + 1]
    assert len(long_gaps) <= 1, spacing
    assert all(g <= TAKEOVER_BOUND_S for g in long_gaps), spacing
    # Never both at once: once the new beat sent, only it did, before and after the lost host returned.
    assert set(after_return) == {first_new[0]}, rows
    assert len(after_return) >= 3, rows
