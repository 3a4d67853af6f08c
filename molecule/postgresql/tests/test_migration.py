"""A cluster of the release before Patroni, turned into a Patroni cluster by the converge (issue 18).

prepare.yml deployed the scenario's hosts with the postgresql role of commit 1664014 (plain
streaming replication under postgresql@15-main), wrote 10000 rows, marked each data directory and
kept each server's system identifier, then started a writer on pg-client (every 0.1 s, both
members' addresses, target_session_attrs=read-write); side_effect.yml stopped it. Here: no row lost,
no server created or copied again, the old primary leads under Patroni and the old replica follows
it, the old units are off, and every write acknowledged during the migration is there. The longest
write outage (the downtime the migration takes) is saved to benchmarks/results/pg_migration.json.
Runs first (file order): the later drills move the leader.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))

from pg_failover import RESULTS, Drill  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SERVERS = ("pg-primary", "pg-replica")
ROWS = 10000
#: "Writes came back by themselves" after the hand-over; the downtime is a figure, not asserted.
OUTAGE_BOUND_SECONDS = 120.0


def host(name: str) -> Any:  # noqa: ANN401 - testinfra hosts are untyped
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def sql(name: str, query: str, db: str = "tutormax") -> str:
    return str(host(name).check_output("cd /tmp && runuser -u postgres -- psql -XAtq -d %s -c %s", db, query))


@pytest.fixture(scope="module")
def drill() -> Drill:
    return Drill(SERVERS, "pg-client", (EPHEMERAL / "secrets" / "pg_app").read_text().split()[0])


@pytest.fixture(scope="module")
def figures() -> Any:  # noqa: ANN401 - a fixture's generator
    found: dict[str, Any] = {}
    yield found
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pg_migration.json").write_text(json.dumps(found, indent=2) + "\n")
    print("\nmigration to Patroni:", json.dumps(found, indent=1))


def test_the_old_primary_leads_under_patroni_and_the_old_replica_follows_it(drill: Drill) -> None:
    members = {m["Member"]: m for m in drill.cluster()}
    assert set(members) == set(SERVERS), members
    assert members["pg-primary"]["Role"] == "Leader"
    assert members["pg-replica"]["State"] in ("running", "streaming"), members
    # The earlier release's slot is gone (no WAL held for it): only Patroni's, one per member.
    slots = sql("pg-primary", "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots")
    assert slots.strip() == "pg_replica"


@pytest.mark.parametrize("name", SERVERS)
def test_no_server_was_created_or_copied_again(name: str, figures: dict[str, Any]) -> None:
    before = json.loads((EPHEMERAL / f"before-migration-{name}.json").read_text())
    now = sql(name, "SELECT system_identifier::text FROM pg_control_system()", db="postgres").strip()
    marker = host(name).file("/var/lib/postgresql/15/main/migration-marker")
    figures[name] = {"system_identifier_before": before["system_identifier"], "now": now, "marker": marker.exists}
    assert now == before["system_identifier"], "initdb ran again"
    # pg_basebackup (a new copy) or initdb would have replaced the data directory and its files.
    assert marker.exists, f"{name}'s data directory was made again"


@pytest.mark.parametrize("name", SERVERS)
def test_every_row_written_before_the_migration_is_there(name: str) -> None:
    count, checksum = sql(name, "SELECT count(*), md5(string_agg(note, '' ORDER BY id)) FROM migration_rows").split("|")
    expected = sql("pg-primary", "SELECT md5(string_agg(md5(n::text), '' ORDER BY n)) FROM generate_series(1, 10000) n")
    assert int(count) == ROWS
    assert checksum == expected.strip()


def test_writes_came_back_and_every_acknowledged_one_is_on_the_leader(drill: Drill, figures: dict[str, Any]) -> None:
    rows = drill.writer_rows()
    acknowledged = [r[3] for r in rows if r[2] and r[3] is not None]
    outage = Drill.longest_outage(rows)
    lost = drill.missing(acknowledged, "pg-primary")
    figures["writes"] = {
        "attempts": len(rows),
        "acknowledged": len(acknowledged),
        "failed": sum(1 for r in rows if not r[2]),
        "lost": lost,
        "longest_outage": outage,
        "first_attempt": rows[0][0] if rows else None,
        "last_attempt": rows[-1][1] if rows else None,
    }
    assert rows, "the writer made no attempt (prepare.yml starts it, side_effect.yml stops it)"
    assert rows[-1][2], f"the last write failed: writes did not come back ({figures['writes']})"
    assert lost == [], f"acknowledged writes missing after the migration: {lost}"
    assert outage["seconds"] <= OUTAGE_BOUND_SECONDS, outage
