"""Patroni restarts a killed postmaster in place: the leader's postmaster SIGKILLed while pg-client
writes every 0.1 s through a libpq multi-host URL (target_session_attrs=read-write). Counts the
writes that were acknowledged and checks each one is there afterwards, on the same leader.

The lost host (leader and replica), the rejoin, the switchover and the re-run that keeps the leader
are drilled under load through the load balancer in the cluster scenario (test_pg_failover.py);
benchmarks/pg_failover.py repeats both faults on this scenario's hosts for the timing figures.
Runs after test_postgresql.py. The figures go to benchmarks/results/pg_failover_role_scenario.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))

from pg_failover import Drill  # noqa: E402

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
#: A bound for "writes came back by themselves", not the speed aim (10 s): the times are
#: figures, saved and reported (benchmarks/pg_failover.py measures five trials), never asserted.
#: Patroni starts the server again within a loop, or fails over after master_start_timeout (10 s).
RECOVERY_BOUND_SECONDS = 60.0


def drill() -> Drill:
    return Drill(
        members=("pg-primary", "pg-replica"),
        client="pg-client",
        app_password=(EPHEMERAL / "secrets" / "pg_app").read_text().split()[0],
    )


def test_the_leader_survives_its_postmaster_killed() -> None:
    d = drill()
    figures: dict[str, object] = {}
    assert d.leader() == "pg-primary"
    try:
        killed = d.kill_postmaster_under_writes()
        figures["postmaster_killed"] = killed
        assert killed["lost"] == [], f"acknowledged writes missing after the restart: {killed['lost']}"
        assert killed["writes_back_s"] is not None, killed
        assert killed["writes_back_s"] <= RECOVERY_BOUND_SECONDS, killed
        assert killed["leader_after"] == "pg-primary", "Patroni failed over instead of starting the server in place"
    finally:
        d.save("pg_failover_role_scenario", figures)
