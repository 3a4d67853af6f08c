"""Patroni's failover, drilled: the leader's postmaster killed, then the leader's host killed, while
pg-client writes every 0.1 s through a libpq multi-host URL (target_session_attrs=read-write).
Counts the writes that were acknowledged and checks each one is on the new leader; the old leader
rejoins as a replica by itself; a converge afterwards changes nothing and keeps the new leader.

Runs after test_postgresql.py (it moves the leader). The figures go to
benchmarks/results/pg_failover_role_scenario.json; benchmarks/pg_failover.py repeats the drills.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))

from pg_failover import Drill  # noqa: E402

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
#: Bounds for "writes came back by themselves", not the speed aims (10 s and 25 s): the times are
#: figures, saved and reported (benchmarks/pg_failover.py measures five trials), never asserted.
#: A lost host's lock expires after ttl (20 s); anything past a minute means no failover happened.
RECOVERY_BOUND_SECONDS = 60.0


def drill() -> Drill:
    return Drill(
        members=("pg-primary", "pg-replica"),
        client="pg-client",
        app_password=(EPHEMERAL / "secrets" / "pg_app").read_text().split()[0],
    )


def converge() -> tuple[int, dict[str, int], str]:
    done = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(REPO / "molecule" / "postgresql" / "converge.yml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    changed = {m[0]: int(m[1]) for m in re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", done.stdout, re.M)}
    return done.returncode, changed, done.stdout + done.stderr


def test_the_leader_survives_its_postmaster_killed_the_old_leader_host_lost_and_rejoins() -> None:
    d = drill()
    figures: dict[str, object] = {}
    # Back to the scenario's settings first (side_effect.yml changed two), so the converge after
    # the drills has nothing to change but what the failover would make it change.
    rc, _, output = converge()
    assert rc == 0, output[-4000:]
    assert d.leader() == "pg-primary"
    try:
        killed = d.kill_postmaster_under_writes()
        figures["postmaster_killed"] = killed
        assert killed["lost"] == [], f"acknowledged writes missing after the restart: {killed['lost']}"
        assert killed["writes_back_s"] is not None, killed
        assert killed["writes_back_s"] <= RECOVERY_BOUND_SECONDS, killed

        lost = d.kill_leader_host_under_writes()
        figures["host_lost"] = lost
        new_leader = str(lost["leader_after"])
        assert new_leader != lost["leader_before"]
        assert lost["lost"] == [], f"acknowledged writes missing on the new leader: {lost['lost']}"
        assert lost["writes_back_s"] is not None, lost
        assert lost["writes_back_s"] <= RECOVERY_BOUND_SECONDS, lost

        rejoined = d.restart_host_and_wait_rejoined(str(lost["leader_before"]), timeout=120)
        figures["rejoin"] = rejoined
        assert rejoined["role"] in ("replica", "sync_standby"), rejoined
        assert d.leader() == new_leader

        start = time.monotonic()
        rc, changed, output = converge()
        figures["converge_after_s"] = round(time.monotonic() - start, 1)
        figures["converge_changed"] = changed
        assert rc == 0, output[-4000:]
        assert set(changed.values()) == {0}, changed
        assert d.leader() == new_leader, "the converge moved the leader"
    finally:
        d.save("pg_failover_role_scenario", figures)
