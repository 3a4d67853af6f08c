"""What the api role leaves on the API hosts, as converge left them (1.0.0).

cluster-api3 also runs a Celery worker (test_celery.py). /health's answer is checked through the load
balancer and by playbooks/verify.yml (test_cluster.py). A second release installed beside the first,
sharing its dependency layer, and the switch back to a kept release are checked after the rolling
update (test_rolling_update.py); that no secret shows in a deployment's --diff output, by the
settings change of test_site_live.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import testinfra
import testinfra.utils.ansible_runner
from cluster_hosts import secrets

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
API_HOSTS = sorted(RUNNER.get_hosts("api"))
CELERY_HOSTS = sorted(RUNNER.get_hosts("celery_worker"))
testinfra_hosts = API_HOSTS

REPO = Path(__file__).resolve().parents[3]
# The local inventory's secrets (the scenario links its group_vars; prepare.yml generates them).
SECRETS = secrets()
ENV_FILE = "/etc/tutormax/tutormax.env"
ROOT = "/opt/tutormax"


def env_file(host) -> dict[str, str]:
    text = host.check_output(f"cat {ENV_FILE}")
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def address(host, name: str) -> str:
    return host.check_output(f"getent hosts {name}").split()[0]


def test_the_api_runs_as_the_tutormax_user_with_the_configured_number_of_workers(host) -> None:
    assert host.service("tutormax-api").is_running
    assert host.service("tutormax-api").is_enabled
    main_pid = host.check_output("systemctl show -P MainPID tutormax-api")
    users = host.check_output(f"ps -o user= -p {main_pid} --ppid {main_pid}").split()
    assert set(users) == {"tutormax"}
    # gunicorn and its workers: app_release_workers of the inventory (2), as WORKERS says.
    assert len(users) == 1 + int(env_file(host)["WORKERS"]) == 3


def test_the_environment_file_is_root_tutormax_0640(host) -> None:
    f = host.file(ENV_FILE)
    assert (f.user, f.group, f.mode) == ("root", "tutormax", 0o640)
    assert host.file("/etc/tutormax").mode & 0o007 == 0


def test_the_environment_file_names_every_postgres_member_the_sentinels_and_this_instance(host) -> None:
    env = env_file(host)
    # Every Patroni member, the first deployment's leader first: libpq finds the leader for writes
    # and a replica for reads, so a failover changes nothing here.
    members = re.escape(",".join(f"{address(host, f'cluster-pg{n}')}:5432" for n in (1, 2, 3)))
    assert re.fullmatch(
        rf"postgresql://tutormax:[^@]+@{members}/tutormax\?target_session_attrs=read-write", env["DATABASE_URL"]
    )
    assert re.fullmatch(
        rf"postgresql://tutormax:[^@]+@{members}/tutormax\?target_session_attrs=standby", env["DATABASE_READ_URL"]
    )
    sentinels = env["REDIS_SENTINELS"].split(",")
    assert sorted(sentinels) == sorted(f"{address(host, f'cluster-redis{n}')}:26379" for n in (1, 2, 3))
    assert env["REDIS_USERNAME"] == "tutormax"
    assert env["REDIS_PASSWORD"] == SECRETS["vault_redis_app_password"]
    assert env["REDIS_SENTINEL_PASSWORD"] == SECRETS["vault_redis_sentinel_password"]
    assert env["API_INSTANCE_ID"] == host.backend.get_hostname()
    assert env["WORKERS"] == "2"
    # The scenario's host_vars of the Celery hosts (the drill's statement timeout), whichever of the
    # api and celery roles wrote the file last on a host that runs both.
    expected = "120000" if host.backend.get_hostname() in CELERY_HOSTS else None
    assert env.get("DATABASE_STATEMENT_TIMEOUT_MS") == expected


def test_the_migrations_are_at_head() -> None:
    host = testinfra.get_host(f"ansible://{API_HOSTS[0]}", ansible_inventory=INVENTORY)
    head = host.check_output(f"DATABASE_URL=postgresql://unused {ROOT}/current/bin/tutormax-migrate heads")
    current = host.run(
        f"runuser -u tutormax -- bash -c 'set -a; . {ENV_FILE}; exec {ROOT}/current/bin/tutormax-migrate current'"
    )
    assert current.rc == 0, current.stderr
    assert head.split()[0] + " (head)" in current.stdout + current.stderr


def test_the_api_stops_gracefully_within_its_stop_timeout(host) -> None:
    show = host.check_output("systemctl show -p KillMode -p KillSignal -p TimeoutStopUSec -p Restart tutormax-api")
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert props["KillMode"] == "mixed"
    assert props["KillSignal"] == "15"
    assert props["Restart"] == "on-failure"
    # gunicorn's graceful timeout (30 s) plus the margin (15 s).
    assert props["TimeoutStopUSec"] == "45s"


def test_the_sandbox_rates_1_1_or_better(host) -> None:
    report = host.check_output("systemd-analyze security --no-pager tutormax-api")
    exposure = float(re.search(r"Overall exposure level for tutormax-api.service: ([\d.]+)", report).group(1))
    # Measured 1.1 (what is left: IP sockets, the host's network and root directory).
    assert exposure <= 1.1, report
    props = host.check_output(
        "systemctl show -p ProtectSystem -p ProtectProc -p NoNewPrivileges -p PrivateUsers "
        "-p MemoryDenyWriteExecute -p CapabilityBoundingSet tutormax-api"
    )
    assert "ProtectSystem=strict" in props
    assert "ProtectProc=invisible" in props
    assert "NoNewPrivileges=yes" in props
    assert "PrivateUsers=yes" in props
    assert "MemoryDenyWriteExecute=yes" in props
    assert "CapabilityBoundingSet=\n" in props + "\n"
