"""PostgreSQL under Patroni, drilled through the load balancer at 110 requests/s (issue 18).

Runs after test_cluster.py and before test_redis_failover.py, whose site.yml run then must keep the
leader these drills leave (changed=0), and test_rolling_update.py, which rolls a release over it
(0 failed requests after a failover). Each drill runs under the mixed load of benchmarks/loadgen.py
(GET and POST, one connection per request, nothing retried); every 201 is an acknowledged write,
looked for on the leader afterwards.

1. A replica's host lost (`docker kill` of the standby the API reads from): no read
   fails; after the first second no read is slower than usual (SLOW_FACTOR, SLOW_FLOOR_MS); the
   replica rejoins. When that standby was also the synchronous one, commits are held until Patroni
   names another (at most COMMIT_HOLD_BOUND_S); reads until that release settles are counted and
   reported, not bounded (HELD_MS).
2. The leader's host lost (`docker kill`): Patroni promotes the synchronous standby; writes come
   back, refused meanwhile with 503 and Retry-After (never another 5xx); the old leader rejoins as a
   replica by itself when its host is started again.
3. A planned switchover (playbooks/pg_switchover.yml) to the synchronous standby: no GET fails;
   writes are refused with 503 and Retry-After for a few seconds, never a 500.
Then every acknowledged write of the three drills is on the leader. The figures go to
benchmarks/results/pg_failover_drill.json and are printed; times are figures, not asserts (the
bounds below only catch "never came back").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
import testinfra.utils.ansible_runner
from cluster_hosts import LB, REPO, psql, sh

sys.path.insert(0, str(REPO / "benchmarks"))
import loadgen
from pg_failover import Drill, writes_back

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
# In the order of the app's URLs (postgres_primary first): libpq reads from the first standby listed.
MEMBERS = sorted(RUNNER.get_hosts("postgres_primary")) + sorted(RUNNER.get_hosts("postgres_replica"))
RESULTS = REPO / "benchmarks" / "results"
RATE = 110.0
#: "Came back by itself": a lost leader's lock expires after ttl (20 s); past a minute nothing happened.
RECOVERY_BOUND_S = 60.0
#: Writes refused during a planned switchover: Patroni stops the leader and promotes another at once.
SWITCHOVER_BOUND_S = 15.0
#: A read is "slower than usual" above this factor of the slowest read of the 10 s before the fault,
#: or above SLOW_FLOOR_MS if that is more: the jitter of a busy 2-core machine under the load (here
#: reads of 40-70 ms come and go with no fault, e.g. while a container starts; CI's slower machine
#: failed this drill once with the former 100 ms floor), under the symptom this catches (about 1 s:
#: a read waiting for its pool). Reads over 100 ms are counted in the figures either way.
SLOW_FACTOR = 3.0
SLOW_FLOOR_MS = 300.0
REPORT_MS = 100.0
#: Losing the synchronous standby holds every commit until Patroni names another on its next loop
#: (loop_wait 2 s; wal_sender_timeout 5 s bounds it). A write that took this long after the fault
#: was held; reads sent while writes are held, and SETTLE_S after their release (a burst of answers
#: on this 2-core machine), are reported (reads_during_commit_hold), not held to SLOW_*.
HELD_MS = 500.0
SETTLE_S = 0.5
COMMIT_HOLD_BOUND_S = 5.0 + SETTLE_S
FIGURES: dict[str, Any] = {}
ACKNOWLEDGED: list[str] = []


def drill() -> Drill:
    # Only the cluster's view and the hosts' restarts are used here; the writes are the load's.
    return Drill(members=tuple(MEMBERS), client="", app_password="")


def gets(records: list[loadgen.Record]) -> list[loadgen.Record]:
    return [r for r in records if r.method == "GET"]


def writes(records: list[loadgen.Record]) -> list[loadgen.Record]:
    return [r for r in records if r.method == "POST"]


def refusals(records: list[loadgen.Record]) -> dict[str, Any]:
    """The writes that failed: by status, whether each 503 carried Retry-After, and their span."""
    failed = [r for r in writes(records) if not r.ok]
    return {
        "failed": len(failed),
        "by_status": dict(sorted(Counter(str(r.status or r.error.split(":")[0]) for r in failed).items())),
        "503_without_retry_after": sum(1 for r in failed if r.status == 503 and not r.retry_after),
        "other": [(r.status, r.error or r.detail[:100]) for r in failed if r.status != 503][:20],
        "span_s": round(max(r.t for r in failed) - min(r.t for r in failed), 1) if failed else 0.0,
    }


def writes_back_after(records: list[loadgen.Record], fault: float) -> float | None:
    """benchmarks/pg_failover.py's rule, on the load's writes (each sent at t, answered latency later)."""
    return writes_back([(r.t, r.t + r.latency_ms / 1000, r.ok) for r in writes(records)], fault)


def under_load(seconds: float) -> loadgen.LoadGenerator:
    gen = loadgen.LoadGenerator(LB, RATE, timeout=10.0, seed=int(time.time()))
    gen.start(seconds)
    return gen


def finish(gen: loadgen.LoadGenerator, name: str, windows: list[tuple[str, float, float]]) -> list[loadgen.Record]:
    result = gen.stop()
    ACKNOWLEDGED.extend(r.created for r in result.records if r.created)
    summary = loadgen.summarize(result, windows)
    FIGURES[name] = {
        "requests": summary["overall"]["requests"],
        "rate_per_s": summary["overall"]["rate_per_s"],
        "gets_failed": sum(1 for r in gets(result.records) if not r.ok),
        "writes": refusals(result.records),
        "windows": {
            w: {k: s[k] for k in ("requests", "failed", "p99_ms", "max_ms")} for w, s in summary["windows"].items()
        },
        **FIGURES.get(name, {}),
    }
    return result.records


def missing_writes(leader: str) -> dict[str, list[int]]:
    """Acknowledged rows (``table:id``) that are not on ``leader``."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for ref in ACKNOWLEDGED:
        table, _, row = ref.partition(":")
        wanted[table].add(int(row))
    missing = {}
    for table, ids in wanted.items():
        listed = ",".join(str(i) for i in sorted(ids))
        query = f"SELECT id FROM {table} WHERE id IN ({listed})"  # noqa: S608 - the app's table names, ints
        found = psql(leader, query, "tutormax")
        lost = sorted(ids - {int(x) for x in found.split()})
        if lost:
            missing[table] = lost
    return missing


def read_replica(leader: str) -> str:
    """The standby the API reads from: the first one listed (the monitor's probe pins the read pools
    to it) unless an earlier drill moved them; asked of each standby's pg_stat_activity."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'tutormax-api-%'"
    sessions = {member: int(psql(member, query)) for member in MEMBERS if member != leader}
    victim = max(sessions, key=lambda m: sessions[m])
    assert sessions[victim], f"no standby has the API's read connections: {sessions}"
    return victim


def commit_hold_end(records: list[loadgen.Record], fault: float) -> float:
    """When writes held by a lost synchronous standby were released, plus SETTLE_S (the release is a
    burst of answers); ``fault`` when no write sent after it took HELD_MS or more."""
    held = [r.t + r.latency_ms / 1000 for r in writes(records) if r.t >= fault and r.latency_ms >= HELD_MS]
    return max(held) + SETTLE_S if held else fault


def replica_found_gone(fault: float) -> dict[str, list[float]]:
    """Seconds after ``fault`` at which each API host's processes logged "replica unavailable"."""
    found = {}
    for host in sorted(RUNNER.get_hosts("api")):
        lines = sh(
            host, "journalctl", "--no-pager", "-o", "short-unix", "-u", "tutormax-api.service",
            f"--since=@{int(fault)}", "--grep=replica unavailable",
            check=False,
        )  # fmt: skip
        found[host] = sorted(
            round(float(line.split()[0]) - fault, 2) for line in lines.splitlines() if line[:1].isdigit()
        )
    return found


def save() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pg_failover_drill.json").write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")
    print("\nPostgreSQL drills:", json.dumps(FIGURES, indent=1, default=str))


@pytest.fixture(scope="module", autouse=True)
def figures_saved() -> Any:  # noqa: ANN401 - a fixture's generator
    yield
    save()


@pytest.mark.timeout(600)
def test_a_lost_replica_costs_reads_nothing_after_the_first_second() -> None:
    d = drill()
    leader = d.leader()
    assert leader, f"no leader: {d.cluster()}"
    victim = read_replica(leader)
    role = next((m.get("Role", "") for m in d.cluster() if m.get("Member") == victim), "")
    gen = under_load(240)
    time.sleep(15)  # warm-up and baseline
    fault = time.time()
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True, timeout=60)
    killed = time.time()
    time.sleep(20)
    found = replica_found_gone(fault)
    rejoined = d.restart_host_and_wait_rejoined(victim, timeout=120)
    time.sleep(5)
    records = finish(
        gen,
        "replica_lost",
        [
            ("before", fault - 10, fault),
            ("first_second", fault, fault + 1),
            ("after_first_second", fault + 1, fault + 20),
            ("rejoin", fault + 20, time.time()),
        ],
    )
    before = [r.latency_ms for r in gets(records) if fault - 10 <= r.t < fault]
    slow_limit = max(SLOW_FACTOR * max(before), SLOW_FLOOR_MS)
    hold_end = commit_hold_end(records, fault) if "sync" in role.lower() else fault
    held_reads = sorted(r.latency_ms for r in gets(records) if fault <= r.t < hold_end)
    # Reads sent after the first second (and after any commit hold) until the replica's return.
    settled = [r for r in gets(records) if max(fault + 1, hold_end) <= r.t < fault + 20]
    slow = [(round(r.t - fault, 1), r.kind, r.latency_ms) for r in settled if r.latency_ms > slow_limit]
    FIGURES["replica_lost"] |= {
        "replica": victim,
        "leader": leader,
        "rejoin": rejoined,
        "slowest_read_before_ms": max(before),
        "docker_kill_took_s": round(killed - fault, 2),
        "found_gone_s_by_process": found,
        "replica_role": role,
        "commit_hold_s": round(hold_end - fault, 2),
        "reads_during_commit_hold": {
            "count": len(held_reads),
            "over_limit": sum(1 for x in held_reads if x > slow_limit),
            "max_ms": held_reads[-1] if held_reads else None,
        },
        "slow_reads_after_first_second": slow,
        "reads_over_100_ms_after_first_second": sum(1 for r in settled if r.latency_ms > REPORT_MS),
        "writes_back_s": writes_back_after(records, fault),
    }
    failed_gets = [
        (round(r.t - fault, 1), r.kind, r.status, r.error or r.detail[:80]) for r in gets(records) if not r.ok
    ]
    assert not failed_gets, f"reads failed (s after the fault, kind, status, reason): {failed_gets[:20]}"
    assert hold_end - fault <= COMMIT_HOLD_BOUND_S, f"commits held {hold_end - fault:.1f} s by the lost standby"
    assert not slow, (
        f"reads slower than {slow_limit:.0f} ms after the first second (s after the fault, kind, ms): {slow[:20]}; "
        f"docker kill took {killed - fault:.2f} s; each API process found the replica gone after (s): {found}"
    )
    assert rejoined["role"] in ("replica", "sync_standby"), rejoined
    assert d.leader() == leader


@pytest.mark.timeout(600)
def test_a_lost_leader_is_replaced_writes_come_back_and_it_rejoins() -> None:
    d = drill()
    leader = d.leader()
    assert leader, f"no leader: {d.cluster()}"
    gen = under_load(300)
    time.sleep(15)
    fault = time.time()
    subprocess.run(["docker", "kill", leader], check=True, capture_output=True, timeout=60)
    new = d.wait_leader(leader, RECOVERY_BOUND_S)
    promoted = round(time.time() - fault, 1)
    time.sleep(max(0.0, 35 - (time.time() - fault)))  # writes on the new leader for a while
    rejoined = d.restart_host_and_wait_rejoined(leader, timeout=120)
    time.sleep(5)
    records = finish(gen, "leader_lost", [("before", fault - 10, fault), ("after", fault, time.time())])
    back = writes_back_after(records, fault)
    FIGURES["leader_lost"] |= {
        "leader_before": leader,
        "leader_after": new,
        "promoted_after_s": promoted,
        "writes_back_s": back,
        "aim_s": 25,
        "rejoin": rejoined,
    }
    w = FIGURES["leader_lost"]["writes"]
    assert back is not None, f"writes did not come back: {w}"
    assert back <= RECOVERY_BOUND_S, f"writes came back only after {back} s: {w}"
    assert not w["other"], f"writes failed otherwise than 503: {w['other']}"
    assert w["503_without_retry_after"] == 0, w
    assert rejoined["role"] in ("replica", "sync_standby"), rejoined
    assert d.leader() == new


@pytest.mark.timeout(600)
def test_a_planned_switchover_fails_no_read_and_refuses_writes_with_503_for_a_few_seconds() -> None:
    d = drill()
    leader = d.leader()
    sync = [m["Member"] for m in d.cluster() if m.get("Role") == "Sync Standby"]
    # To the synchronous standby (Patroni promotes no other), unless that is the inventory's primary:
    # then Patroni picks, and the figures say where the leader went.
    primary = MEMBERS[0]
    target = next((m for m in sync if m != primary), "")
    gen = under_load(180)
    time.sleep(15)
    start = time.time()
    argv = ["ansible-playbook", "-i", INVENTORY, str(REPO / "playbooks" / "pg_switchover.yml")]
    argv += ["-e", f"postgresql_switchover_to={target}"] if target else []
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    took = round(time.time() - start, 1)
    time.sleep(10)
    records = finish(
        gen,
        "switchover",
        [("before", start - 10, start), ("playbook", start, start + took), ("after", start + took, time.time())],
    )
    now = d.leader()
    report = [line.strip() for line in done.stdout.splitlines() if "Patroni leader:" in line]
    FIGURES["switchover"] |= {
        "leader_before": leader,
        "leader_after": now,
        "named": target or "(Patroni's pick)",
        "playbook_s": took,
        "playbook_rc": done.returncode,
        "report": report,
    }
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert now != leader, FIGURES["switchover"]
    assert not target or now == target, FIGURES["switchover"]
    failed_gets = [
        (round(r.t - start, 1), r.kind, r.status, r.error or r.detail[:80]) for r in gets(records) if not r.ok
    ]
    assert not failed_gets, f"reads failed during the switchover: {failed_gets[:20]}"
    w = FIGURES["switchover"]["writes"]
    assert not w["other"], f"writes failed otherwise than 503 (a 500 is a bug): {w['other']}"
    assert w["503_without_retry_after"] == 0, w
    assert w["span_s"] <= SWITCHOVER_BOUND_S, w


def test_every_acknowledged_write_of_the_drills_is_on_the_leader() -> None:
    leader = drill().leader()
    assert leader
    assert ACKNOWLEDGED, "no write was acknowledged during the drills"
    missing = missing_writes(leader)
    FIGURES["acknowledged_writes"] = {"count": len(ACKNOWLEDGED), "missing": missing, "leader": leader}
    assert not missing, f"acknowledged writes missing on {leader}: {missing}"
