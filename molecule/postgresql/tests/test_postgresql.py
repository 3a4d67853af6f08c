"""What the postgresql role must leave: Patroni's leader, a synchronous streaming replica, and
only scram logins.

pg-client is in group `api` (an application host, no PostgreSQL server); it is the one host
besides the members that pg_hba.conf lets in. The three hosts are the etcd cluster. side_effect.yml
has written a row, converged again with a reloadable setting changed and restarted the primary
(through Patroni) for a postmaster setting; the tests compare its snapshots (side_effect.json).
The postmaster drill (test_postmaster_killed.py) runs after these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import testinfra

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SERVERS = ("pg-primary", "pg-replica")


def get(name: str) -> Any:  # noqa: ANN401 - testinfra hosts are untyped
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


@pytest.fixture(scope="module")
def primary() -> Any:  # noqa: ANN401
    return get("pg-primary")


@pytest.fixture(scope="module")
def replica() -> Any:  # noqa: ANN401
    return get("pg-replica")


@pytest.fixture(scope="module")
def client() -> Any:  # noqa: ANN401
    return get("pg-client")


@pytest.fixture(scope="module")
def app_password() -> str:
    return (EPHEMERAL / "secrets" / "pg_app").read_text().split()[0]


@pytest.fixture(scope="module")
def replication_password() -> str:
    return (EPHEMERAL / "secrets" / "pg_replication").read_text().split()[0]


@pytest.fixture(scope="module")
def snapshots() -> dict[str, Any]:
    path = EPHEMERAL / "side_effect.json"
    if not path.exists():
        pytest.fail("side_effect.json is missing: run `molecule side-effect -s postgresql` first")
    return dict(json.loads(path.read_text()))


def address(host: Any) -> str:  # noqa: ANN401
    return str(host.check_output("hostname -I").split()[0])


def sql(host: Any, query: str, db: str = "tutormax") -> str:  # noqa: ANN401
    """Run a query as the postgres superuser over the local socket; return unaligned output."""
    return str(host.check_output("cd /tmp && runuser -u postgres -- psql -XAtq -d %s -c %s", db, query))


def app_sql(client: Any, password: str, server: str, query: str) -> Any:  # noqa: ANN401
    """Run a query as the application user from the application host, over TCP."""
    return client.run(
        "env PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -XAtq -h %s -U tutormax -d tutormax -c %s",
        password,
        server,
        query,
    )


@pytest.mark.parametrize("name", SERVERS)
def test_cluster_has_data_checksums_and_only_the_role_created_it(name: str) -> None:
    host = get(name)
    assert sql(host, "SHOW data_checksums") == "on"
    assert sql(host, "SHOW password_encryption") == "scram-sha-256"
    clusters = host.check_output("pg_lsclusters --no-header").splitlines()
    assert [c.split()[:2] for c in clusters] == [["15", "main"]]
    assert (
        "create_main_cluster = false"
        in host.file("/etc/postgresql-common/createcluster.d/tutormax.conf").content_string
    )
    # Patroni starts the server; PostgreSQL's own unit and postgresql.service at boot must not.
    assert host.service("patroni@15-main").is_enabled
    assert host.service("patroni@15-main").is_running
    assert not host.service("postgresql@15-main").is_enabled
    assert host.file("/etc/postgresql/15/main/start.conf").content_string.split()[-1] == "manual"


@pytest.mark.parametrize("name", SERVERS)
def test_server_listens_on_localhost_and_the_private_address_only(name: str) -> None:
    host = get(name)
    listening = {line.split()[3] for line in host.check_output("ss -ltnH 'sport = :5432'").splitlines()}
    assert f"{address(host)}:5432" in listening
    assert "127.0.0.1:5432" in listening
    assert not {"0.0.0.0:5432", "*:5432", "[::]:5432"} & listening


def test_memory_settings_derive_from_the_given_ram(replica) -> None:
    # postgresql_memory_mb is 1024 in this scenario, and max_connections 200.
    settings = sql(
        replica,
        "SELECT string_agg(name || '=' || current_setting(name), ',' ORDER BY name) FROM pg_settings "
        "WHERE name IN ('shared_buffers', 'effective_cache_size', 'work_mem', 'maintenance_work_mem')",
    )
    assert settings == "effective_cache_size=768MB,maintenance_work_mem=64MB,shared_buffers=256MB,work_mem=4MB"


@pytest.mark.parametrize("name", SERVERS)
def test_servers_are_set_up_for_streaming_replication_with_bounded_slots(name: str) -> None:
    host = get(name)
    query = (
        "SELECT name, setting FROM pg_settings WHERE name = ANY('{wal_level,max_wal_senders,max_replication_slots,"
        "max_slot_wal_keep_size,hot_standby,shared_preload_libraries}')"
    )
    values = dict(line.split("|") for line in sql(host, query).splitlines())
    assert values == {
        "wal_level": "replica",
        "max_wal_senders": "6",  # one replica + 5 spare
        "max_replication_slots": "6",
        "max_slot_wal_keep_size": "10240",  # MB: bounded, never -1
        "hot_standby": "on",
        "shared_preload_libraries": "pg_stat_statements",
    }


def test_replica_is_a_read_only_standby_streaming_through_its_slot(primary, replica) -> None:
    assert sql(replica, "SELECT pg_is_in_recovery()") == "t"
    assert replica.file("/var/lib/postgresql/15/main/standby.signal").exists
    receiver = sql(replica, "SELECT status, slot_name, sender_host FROM pg_stat_wal_receiver")
    assert receiver == f"streaming|pg_replica|{address(primary)}"
    # Patroni's slot for its member pg-replica.
    slots = sql(primary, "SELECT slot_name, slot_type, active FROM pg_replication_slots", db="postgres")
    assert slots == "pg_replica|physical|t"


def test_replication_status_shows_the_replica_streaming_with_small_lag(primary, replica, client, app_password) -> None:
    result = app_sql(
        client,
        app_password,
        "pg-primary",
        "SELECT application_name, client_addr, state, lag_bytes FROM replication_status",
    )
    assert result.rc == 0, result.stderr
    application_name, client_addr, state, lag_bytes = result.stdout.strip().split("|")
    assert (application_name, client_addr, state) == ("pg-replica", address(replica), "streaming")
    assert int(lag_bytes) < 1024 * 1024, f"replica lags {lag_bytes} bytes behind"


def test_row_written_on_the_primary_is_readable_on_the_replica_within_2_seconds(client, app_password) -> None:
    # One shell on the application host: write on the primary, then poll the replica for at most 2 s.
    script = r"""
set -eu
export PGPASSWORD="$1" PGCONNECT_TIMEOUT=5
q() { psql -XAtq -h "$1" -U tutormax -d tutormax -c "$2"; }
q pg-primary "CREATE TABLE IF NOT EXISTS replication_probe (token text PRIMARY KEY)"
token="probe-$(date +%s%N)"
q pg-primary "INSERT INTO replication_probe VALUES ('$token')"
start=$(date +%s%N)
while :; do
  found=$(q pg-replica "SELECT count(*) FROM replication_probe WHERE token = '$token'" 2>/dev/null || echo 0)
  elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
  if [ "$found" = 1 ]; then echo "$elapsed"; exit 0; fi
  if [ "$elapsed" -ge 2000 ]; then echo "not visible after ${elapsed} ms" >&2; exit 1; fi
  sleep 0.05
done
"""
    result = client.run("bash -c %s probe %s", script, app_password)
    assert result.rc == 0, result.stderr
    assert int(result.stdout.strip()) <= 2000


def test_write_on_the_replica_fails(client, app_password) -> None:
    result = app_sql(client, app_password, "pg-replica", "CREATE TABLE replica_write (id int)")
    assert result.rc != 0
    assert "read-only transaction" in result.stderr


@pytest.mark.parametrize("name", SERVERS)
def test_pg_hba_allows_scram_from_the_allowed_hosts_and_peer_for_local_postgres_only(name: str, client) -> None:
    host = get(name)
    rules = sql(
        host,
        "SELECT type, array_to_string(database, ','), array_to_string(user_name, ','), "
        "coalesce(address, ''), coalesce(netmask, ''), auth_method, coalesce(error, ''), "
        "coalesce(array_to_string(options, ','), '') "
        "FROM pg_hba_file_rules ORDER BY line_number",
    ).splitlines()
    parsed = [r.split("|") for r in rules]
    assert all(r[6] == "" for r in parsed), rules
    for kind, db, user, _addr, _mask, method, _, options in parsed:
        assert method in ("scram-sha-256", "peer"), rules
        if method == "peer":
            # The local postgres superuser; the exporter's role only from its mapped system user.
            assert (kind, user, options) == ("local", "postgres", "") or (kind, db, user, options) == (
                "local",
                "postgres",
                "tutormax_monitor",
                "map=monitor",
            ), rules
    idents = sql(host, "SELECT map_name, sys_name, pg_username, coalesce(error, '') FROM pg_ident_file_mappings")
    assert idents.split() == ["monitor|prometheus|tutormax_monitor|"], idents
    remote = {(r[1], r[2], r[3], r[4]) for r in parsed if r[0].startswith("host") and r[3] not in ("127.0.0.1", "::1")}
    members = {address(get(server)) for server in SERVERS}
    assert remote == {("tutormax", "tutormax", address(client), "255.255.255.255")} | {
        (db, user, member, "255.255.255.255")
        for member in members
        for db, user in (("replication", "replicator"), ("postgres", "rewind"))
    }
    lines = [line.split() for line in host.file("/etc/postgresql/15/main/pg_hba.conf").content_string.splitlines()]
    assert not [w for w in lines if w and not w[0].startswith("#") and ({"trust", "md5", "password"} & set(w))]


def test_tutormax_with_a_wrong_password_is_refused(client, app_password) -> None:
    result = app_sql(client, "wrong-" + app_password, "pg-primary", "SELECT 1")
    assert result.rc != 0
    assert 'password authentication failed for user "tutormax"' in result.stderr
    assert app_sql(client, app_password, "pg-primary", "SELECT 1").stdout.strip() == "1"


def test_hosts_outside_the_application_groups_cannot_log_in_even_with_the_password(replica, app_password) -> None:
    result = replica.run(
        "cd /tmp && env PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -XAtq -h pg-primary -U tutormax -d tutormax -c %s",
        app_password,
        "SELECT 1",
    )
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr


def test_seed_commands_run_verbatim_as_tutormax(primary, replica, app_password) -> None:
    # The guide's commands, as run on the database hosts (docker exec ... replaced by the host).
    on_primary = [
        'psql -U tutormax -c "SELECT * FROM replication_status;"',
        'psql -U tutormax -d tutormax -c "SELECT * FROM replication_status;"',
        "psql -U tutormax -c \"SELECT count(*) FROM pg_stat_activity WHERE state = 'active';\"",
        'psql -U tutormax -c "SELECT pg_wal_lsn_diff(sent_lsn, replay_lsn) AS lag_bytes FROM replication_status;"',
        'psql -U tutormax -c "SELECT query, mean_exec_time FROM pg_stat_statements '
        'ORDER BY mean_exec_time DESC LIMIT 10;"',
    ]
    outputs = []
    for command in on_primary:
        result = primary.run("cd /tmp && PGPASSWORD=%s " + command, app_password)
        assert result.rc == 0, f"{command}: {result.stderr}"
        outputs.append(result.stdout)
    assert "pg-replica" in outputs[0]
    assert "(1 row)" in outputs[3]
    assert "(0 rows)" not in outputs[4]
    recovery = replica.run(
        'cd /tmp && PGPASSWORD=%s psql -U tutormax -d tutormax -c "SELECT pg_is_in_recovery();"', app_password
    )
    assert recovery.rc == 0, recovery.stderr
    assert recovery.stdout.split("\n")[2].strip() == "t"


def test_second_converge_left_the_replica_s_data_and_timeline_untouched(replica, snapshots) -> None:
    before, after = snapshots["pg-replica"]["before"], snapshots["pg-replica"]["after_converge"]
    assert after == before  # same start time (no restart), identity, timeline and data files
    assert after["in_recovery"] is True
    assert after["system_identifier"] == snapshots["pg-primary"]["before"]["system_identifier"]
    notes = sql(replica, "SELECT note FROM side_effect")
    assert "written before the second converge" in notes.splitlines()


def test_settings_reload_when_they_can_and_restart_only_when_they_must(primary, snapshots) -> None:
    steps = snapshots["pg-primary"]
    # Synchronous replication (synchronous_standby_names) came in with a reload ...
    assert steps["after_converge"]["started"] == steps["before"]["started"]
    # ... max_files_per_process (postmaster context) with a restart.
    assert steps["after_restart"]["started"] != steps["after_converge"]["started"]
    assert sql(primary, "SHOW max_files_per_process") == "2000"
    assert sql(primary, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_synchronous_replication_is_on_by_default_through_patroni(primary, client, app_password) -> None:
    assert sql(primary, "SHOW synchronous_standby_names") == '"pg-replica"'
    result = app_sql(client, app_password, "pg-primary", "SELECT sync_state FROM replication_status")
    assert result.stdout.strip() == "sync"


@pytest.mark.parametrize("name", SERVERS)
def test_replication_password_is_only_in_patroni_s_files(name: str, replication_password: str) -> None:
    host = get(name)
    # Patroni writes its passfile where it streams or rewinds from another member (the replica).
    paths = ["/etc/patroni/15-main.yml"] + (["/var/lib/postgresql/15-main.pgpass"] if name == "pg-replica" else [])
    for path in paths:
        held = host.file(path)
        assert (held.user, held.group, held.mode) == ("postgres", "postgres", 0o600), path
        assert replication_password in held.content_string, path
    assert not host.file("/var/lib/postgresql/.pgpass").exists
    leaked = host.run(
        "grep -rlF %s /etc/postgresql /etc/postgresql-common /var/lib/postgresql/15/main/postgresql.auto.conf",
        replication_password,
    )
    assert leaked.stdout == "", leaked.stdout
    if name == "pg-replica":
        conninfo = sql(host, "SHOW primary_conninfo")
        assert "passfile=/var/lib/postgresql/15-main.pgpass" in conninfo
        assert "password" not in conninfo.replace("passfile", "")


@pytest.mark.parametrize("name", SERVERS)
def test_no_unit_failed(name: str) -> None:
    assert get(name).check_output("systemctl --failed --no-legend --plain") == ""
