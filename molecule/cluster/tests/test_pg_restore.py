"""Backups and point-in-time restore with pgBackRest (issue 19), on the cluster the failover drills
of test_pg_failover.py left: its leader has moved (a lost host, then a switchover) since site.yml
took the first full backup.

1. WAL archiving went on through those failovers: the leader's archiver has pushed segments of its
   current timeline and none failed after the last success.
2. The point-in-time drill of the issue: rows A, a backup, rows B, the time T (with its LSN and a
   named restore point), B deleted, rows C. A drill restore to T has exactly A and B, on a member
   that follows (pg_restore_host: beside its live instance, which it leaves alone), and so do the
   drills to T's LSN and to the restore point, on the backup host; a drill restore to the latest
   point has A and C, from the full backup taken before the failovers (the WAL of three timelines
   replayed).
3. verify.yml fails the backup check when the newest backup is older than its threshold.
4. A disaster restore of the live cluster to the latest archived point, under load through the load
   balancer: the run is refused without its confirmation; with it, the member that led is restored
   and leads again, Patroni comes back with all three members, the app serves again by itself, and
   every write acknowledged before the archive point is there (writes acknowledged after it, until
   Patroni stopped, are counted: the restore's RPO).
   The tests after this file (Redis failover, rolling update, site.yml on the live cluster) run on
   the restored cluster.
Each drill is playbooks/pg_restore.yml as an operator runs it; the live cluster is checked untouched
(the drill's table still holds A and C on the leader afterwards). The drills' step times go to
benchmarks/results/pg_restore_drill.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import testinfra.utils.ansible_runner
from cluster_hosts import LB, REPO, psql, sh

sys.path.insert(0, str(REPO / "benchmarks"))
import loadgen

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
BACKUP = sorted(RUNNER.get_hosts("backup"))[0]
MEMBERS = sorted(RUNNER.get_hosts("postgres"))
#: Requests per second through the load balancer during the disaster restore.
RATE = 40.0
#: After the playbook: the app must serve again by itself within this, then serve without a failure.
RECOVERY_S = 30.0
STANZA = "tutormax"
DATABASE = "tutormax"
TABLE = "backup_drill"
#: The restore point the drill to a name restores to.
POINT = "tutormax_drill_t"
ROWS = f"SELECT coalesce(string_agg(batch, ',' ORDER BY id), '') FROM {TABLE}"  # noqa: S608 - constants
RESULTS = REPO / "benchmarks" / "results"
FIGURES: dict[str, Any] = {}


def leader() -> str:
    for host in MEMBERS:
        if psql(host, "SELECT pg_is_in_recovery()").strip() == "f":
            return host
    raise AssertionError("no member is out of recovery")


def repository() -> list[dict[str, Any]]:
    out = sh(BACKUP, "runuser", "-u", "pgbackrest", "--", "pgbackrest", f"--stanza={STANZA}", "--output=json", "info")
    stanza = next(s for s in json.loads(out) if s["name"] == STANZA)
    return list(stanza["backup"])


def playbook(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(REPO / "playbooks" / name), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done


def drill(tmp: Path, name: str, **extra: Any) -> dict[str, Any]:  # noqa: ANN401 - JSON values
    report = tmp / f"{name}.json"
    extra = {"pg_restore_report": str(report), "pg_restore_queries": [ROWS], **extra}
    start = time.time()
    playbook("pg_restore.yml", "-e", json.dumps(extra))
    result = json.loads(report.read_text())
    FIGURES[name] = {
        "playbook_s": round(time.time() - start, 1),
        "target": result["target"],
        "steps_s": {s["step"]: round(float(s["seconds"]), 2) for s in result["steps"]},
        "restored_bytes": result["restored_bytes"],
    }
    return result


def rows(result: dict[str, Any]) -> str:
    (query, answer) = result["queries"][0]
    assert query == ROWS
    return "".join(answer).strip()


def write(batch: str, count: int = 3) -> None:
    values = ", ".join(f"('{batch}{i}')" for i in range(1, count + 1))
    psql(leader(), f"INSERT INTO {TABLE} (batch) VALUES {values}", DATABASE)  # noqa: S608 - constants


def timeline(wal: str) -> int:
    return int(wal[:8], 16)


def test_wal_archiving_went_on_through_the_failovers() -> None:
    first = repository()[0]
    host = leader()
    # `pgbackrest check` switches the leader's WAL segment and waits until the repository has it.
    sh(BACKUP, "runuser", "-u", "pgbackrest", "--", "pgbackrest", f"--stanza={STANZA}", "check")
    current = psql(host, "SELECT timeline_id FROM pg_control_checkpoint()").strip()
    archived, failed_after = (
        psql(
            host,
            "SELECT last_archived_wal, coalesce(last_failed_time > last_archived_time, false) FROM pg_stat_archiver",
        )
        .strip()
        .split("|")
    )
    FIGURES["archiving"] = {
        "first_backup": first["label"],
        "first_backup_timeline": timeline(first["archive"]["start"]),
        "leader": host,
        "leader_timeline": int(current),
        "last_archived_wal": archived,
    }
    assert int(current) > timeline(first["archive"]["start"]), (
        f"the leader's timeline has not moved since the first backup: {FIGURES['archiving']}"
        " (test_pg_failover.py's drills run first)"
    )
    assert timeline(archived) == int(current), FIGURES["archiving"]
    assert failed_after == "f", f"the leader's archive_command failed after its last success: {FIGURES['archiving']}"


def test_a_drill_restores_a_point_in_time_and_the_latest_point_across_the_failovers(tmp_path: Path) -> None:
    psql(leader(), f"DROP TABLE IF EXISTS {TABLE}", DATABASE)
    psql(leader(), f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, batch text NOT NULL)", DATABASE)
    write("A")
    before = {b["label"] for b in repository()}
    playbook("pg_backup.yml", "-e", "pg_backup_type=diff")
    new = [b for b in repository() if b["label"] not in before]
    assert [b["type"] for b in new] == ["diff"], new
    write("B")
    time.sleep(0.2)
    (target, lsn) = (
        psql(
            leader(),
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00',"
            f" pg_create_restore_point('{POINT}'), pg_current_wal_lsn()",
        )
        .strip()
        .split("|")[0::2]
    )
    time.sleep(0.2)
    psql(leader(), f"DELETE FROM {TABLE} WHERE batch LIKE 'B%'", DATABASE)  # noqa: S608 - constants
    write("C")
    replica = next(m for m in MEMBERS if m != leader())

    # To T: pgBackRest picks the newest backup before it, the differential one just taken. On a
    # member that follows, beside its live instance.
    at_t = drill(
        tmp_path, "pitr_to_t", pg_restore_target_type="time", pg_restore_target=target, pg_restore_host=replica
    )
    assert at_t["host"] == replica
    assert rows(at_t) == "A1,A2,A3,B1,B2,B3", at_t
    assert psql(replica, "SELECT pg_is_in_recovery()").strip() == "t", "the member's live instance changed role"
    # To T's LSN and to the restore point made at T, on the backup host.
    for kind, value in (("lsn", lsn), ("name", POINT)):
        result = drill(tmp_path, f"pitr_to_{kind}", pg_restore_target_type=kind, pg_restore_target=value)
        assert result["host"] == BACKUP
        assert rows(result) == "A1,A2,A3,B1,B2,B3", result
    # To the latest point from the first full backup, taken before the failover drills: the WAL of
    # every timeline since then is replayed.
    first = repository()[0]
    latest = drill(tmp_path, "pitr_latest_from_first_backup", pg_restore_set=first["label"])
    FIGURES["pitr_latest_from_first_backup"]["backup_set"] = first["label"]
    assert rows(latest) == "A1,A2,A3,C1,C2,C3", latest
    # The live cluster was not touched, and no drill left its scratch instance behind.
    assert psql(leader(), ROWS, DATABASE).strip() == "A1,A2,A3,C1,C2,C3"
    for host in (BACKUP, replica):
        left = sh(host, "sh", "-c", "test -e /var/lib/pgbackrest-drill && echo left || echo removed").strip()
        assert left == "removed", host
        assert "pgbackrest-drill" not in sh(host, "ps", "-eo", "args"), host


def test_a_target_before_the_oldest_backup_or_in_the_future_is_refused_before_anything_runs() -> None:
    oldest = repository()[0]["timestamp"]["stop"]
    early = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(oldest - 3600))
    late = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(time.time() + 3600))
    for when, words in ((early, "before the oldest backup"), (late, "in the future")):
        done = playbook(
            "pg_restore.yml",
            "-e",
            json.dumps({"pg_restore_target_type": "time", "pg_restore_target": when}),
            check=False,
        )
        assert done.returncode != 0
        # Ansible prints a failed assertion's message on stderr.
        output = " ".join((done.stdout + done.stderr).split())
        assert words in output, output[-2000:]
        assert "Restore the backup into the scratch directory" not in done.stdout


def test_verify_fails_the_backup_check_when_the_newest_backup_is_too_old() -> None:
    # About a second: the differential backup the point-in-time drill took is older than that.
    done = playbook("verify.yml", "-e", "pgbackrest_max_diff_age_hours=0.0003", check=False)
    assert done.returncode != 0
    report = " ".join(done.stdout.split())
    failed = (
        rf"FAIL {BACKUP} pgbackrest backups \d+ good backups [^']*? h old, "
        r"more than [0-9.e-]+ h \(pgbackrest_max_diff_age_hours\)"
    )
    assert re.search(failed, report), done.stdout[-3000:]
    assert re.search(rf"OK {BACKUP} wal archiving archived \d+ segments", report), done.stdout[-3000:]


def test_a_disaster_restore_is_refused_without_its_confirmation_and_says_what_it_destroys() -> None:
    done = playbook("pg_restore.yml", "-e", "pg_restore_mode=disaster", check=False)
    assert done.returncode != 0
    output = " ".join((done.stdout + done.stderr).split())
    assert "destroys the live cluster" in output, output[-2000:]
    assert f"pg_restore_confirm={STANZA}" in output
    assert "Stop Patroni" not in done.stdout
    assert leader() in MEMBERS


def acknowledged_missing(records: list[loadgen.Record], host: str) -> list[tuple[float, str]]:
    """(answer time, table:id) of every 201 whose row is not on ``host``."""
    by_table: dict[str, dict[int, float]] = {}
    for r in records:
        if r.created:
            table, _, row = r.created.partition(":")
            by_table.setdefault(table, {})[int(row)] = r.t + r.latency_ms / 1000
    missing = []
    for table, rows_at in by_table.items():
        listed = ",".join(str(i) for i in sorted(rows_at))
        found = {int(x) for x in psql(host, f"SELECT id FROM {table} WHERE id IN ({listed})", DATABASE).split()}  # noqa: S608 - the app's tables, ints
        missing += [(at, f"{table}:{i}") for i, at in rows_at.items() if i not in found]
    return sorted(missing)


@pytest.mark.timeout(900)
def test_a_disaster_restore_under_load_rebuilds_the_cluster_and_keeps_the_archived_writes(tmp_path: Path) -> None:
    gen = loadgen.LoadGenerator(LB, RATE, timeout=10.0, seed=int(time.time()))
    gen.start(600)
    time.sleep(10)
    report = tmp_path / "disaster.json"
    extra = {
        "pg_restore_mode": "disaster",
        "pg_restore_confirm": STANZA,
        "pg_restore_archive_now": True,
        "pg_restore_report": str(report),
    }
    before = leader()
    start = time.time()
    done = playbook("pg_restore.yml", "-e", json.dumps(extra), check=False)
    took = time.time() - start
    back = None
    while time.time() - start < took + RECOVERY_S:
        recent = [r for r in list(gen.result.records) if r.method == "POST" and r.t > time.time() - 3]
        if recent and all(r.ok for r in recent):
            back = time.time()
            break
        time.sleep(1)
    time.sleep(10)
    result = gen.stop()
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    steps = json.loads(report.read_text())["steps"]
    marks, at = {}, start
    for step in steps:
        marks[step["step"]] = at
        at += float(step["seconds"])
    archived_at = marks["check the target"]
    stopped_by = marks["stop, restore and replay"] + 60
    failed = [r for r in result.records if not r.ok]
    missing = acknowledged_missing(result.records, leader())
    FIGURES["disaster"] = {
        "playbook_s": round(took, 1),
        "steps_s": {s["step"]: round(float(s["seconds"]), 1) for s in steps},
        "requests": len(result.records),
        "failed": len(failed),
        "failed_statuses": dict(sorted(Counter(r.status for r in failed).items())),
        "outage_s": round(max(r.t for r in failed) - min(r.t for r in failed), 1) if failed else 0,
        "serving_again_s_after_playbook": round(back - start - took, 1) if back else None,
        "acknowledged": sum(1 for r in result.records if r.created),
        "lost_after_archive_point": len(missing),
    }
    lost_outside = [(round(t - start, 1), ref) for t, ref in missing if not archived_at <= t <= stopped_by]
    assert not lost_outside, f"acknowledged writes lost outside the archive point's window: {lost_outside[:20]}"
    assert back is not None, f"writes did not work again within {RECOVERY_S} s of the playbook: {FIGURES['disaster']}"
    tail = [r for r in result.records if r.t > result.stopped - 8]
    assert tail, "no request in the last seconds of the load"
    assert all(r.ok for r in tail), [(r.status, r.detail[:80]) for r in tail if not r.ok][:10]
    assert not [r for r in failed if r.status >= 500 and r.status != 503], "only 503 while the database is down"
    # Restored onto the member that led, which leads again (site.yml keeps it: test_site_live.py).
    assert leader() == before
    streaming = psql(before, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").strip()
    assert int(streaming) == len(MEMBERS) - 1, f"{streaming} replicas stream after the restore"


@pytest.fixture(scope="module", autouse=True)
def save_figures() -> Any:  # noqa: ANN401 - a fixture's generator
    yield
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pg_restore_drill.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
    print(json.dumps(FIGURES, indent=2))
