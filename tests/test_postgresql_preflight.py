"""A missing or placeholder password, a bad etcd member count or Patroni timing stops the role in its
preflight, before any host is touched.

The role runs against an inventory whose only host cannot be reached (SSH to a closed local port):
had any task before the failing assert needed the host, the run would end as UNREACHABLE instead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import run_playbook

REPO = Path(__file__).resolve().parent.parent
GOOD_APP = "q8Vt3mN0xR2pL7sK1wZ9"
GOOD_REPLICATION = "a-long-random-generated-secret-4f9c2e"
GOOD_REWIND = "another-long-random-secret-8d1b7a"
GOOD_RESTAPI = "a-third-long-random-secret-2c6e9f"
ETCD = ["e1", "e2", "e3"]
GOOD: dict[str, object] = {
    "postgresql_app_password": GOOD_APP,
    "postgresql_replication_password": GOOD_REPLICATION,
    "postgresql_rewind_password": GOOD_REWIND,
    "postgresql_patroni_restapi_password": GOOD_RESTAPI,
    "postgresql_patroni_etcd_hosts": ETCD,
}


def run_role(tmp_path: Path, secrets: dict[str, object]) -> subprocess.CompletedProcess[str]:
    inventory = {
        "all": {
            "children": {
                "postgres_primary": {
                    "hosts": {
                        "pg-unreachable": {
                            "ansible_connection": "ssh",
                            "ansible_host": "127.0.0.1",
                            "ansible_port": 9,  # discard: nothing listens, the connection is refused
                            "ansible_ssh_common_args": "-o ConnectTimeout=3",
                            **secrets,
                        }
                    }
                }
            }
        }
    }
    play = [{"name": "Apply the role", "hosts": "all", "gather_facts": False, "roles": ["tutormax.cluster.postgresql"]}]
    return run_playbook(tmp_path, inventory, play, {"ANSIBLE_FACT_CACHING": "memory"})


def but(**changes: object) -> dict[str, object]:
    """The good inputs with some changed; None removes one."""
    return {k: v for k, v in {**GOOD, **changes}.items() if v is not None}


@pytest.mark.parametrize(
    ("secrets", "named"),
    [
        (but(postgresql_app_password=None), "postgresql_app_password is missing or a placeholder"),
        (
            but(postgresql_app_password="CHANGE_ME_postgresql_app_password"),  # noqa: S106 - a placeholder
            "postgresql_app_password is missing or a placeholder",
        ),
        (but(postgresql_replication_password=None), "postgresql_replication_password is missing or a placeholder"),
        (
            but(postgresql_replication_password="CHANGE_ME_replication"),  # noqa: S106 - a placeholder
            "postgresql_replication_password is missing or a placeholder",
        ),
        (but(postgresql_rewind_password=None), "postgresql_rewind_password is missing or a placeholder"),
        (
            but(postgresql_patroni_restapi_password="CHANGE_ME_x"),  # noqa: S106 - a placeholder
            "postgresql_patroni_restapi_password is missing or a placeholder",
        ),
        (but(postgresql_patroni_etcd_hosts=["e1", "e2"]), "fewer than three"),
        (but(postgresql_patroni_etcd_hosts=["e1", "e2", "e3", "e4"]), "even number"),
        (but(postgresql_patroni_ttl=15), "postgresql_patroni_ttl is 15"),
        (but(postgresql_patroni_retry_timeout=10), "is more than postgresql_patroni_ttl"),
    ],
    ids=[
        "app-missing",
        "app-placeholder",
        "replication-missing",
        "replication-placeholder",
        "rewind-missing",
        "restapi-placeholder",
        "etcd-two",
        "etcd-four",
        "ttl-low",
        "retry-too-long",
    ],
)
def test_missing_or_placeholder_password_fails_in_preflight_naming_the_variable(
    tmp_path: Path, secrets: dict[str, object], named: str
) -> None:
    result = run_role(tmp_path, secrets)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "UNREACHABLE" not in out, out
    assert named in " ".join(out.split()), out
    assert "failed=1" in out, out
    # Nothing after the failed assert ran: no package task was even attempted.
    assert "Install PostgreSQL" not in out, out


def test_good_passwords_pass_the_secret_checks_and_only_then_need_the_host(tmp_path: Path) -> None:
    # The control case: with both passwords set, the run gets past the secret checks and fails only
    # on what needs the host's facts, so the tests above can tell a preflight failure from others.
    result = run_role(tmp_path, GOOD)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "is missing or a placeholder" not in out, out
    assert "supports Debian 12+ hosts with systemd" in out, out


def run_switchover(tmp_path: Path, secrets: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    """playbooks/pg_switchover.yml on two unreachable members: a refusal before the REST call never
    needs a host; a run that gets past the checks fails on the REST call instead (nothing answers)."""
    unreachable = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9}
    inventory = {
        "all": {
            "vars": {**unreachable, "ansible_ssh_common_args": "-o ConnectTimeout=3", **secrets},
            "children": {
                "postgres": {
                    "children": {
                        "postgres_primary": {"hosts": {"pg1": None}},
                        "postgres_replica": {"hosts": {"pg2": None}},
                    }
                }
            },
        }
    }
    playbook = REPO / "playbooks" / "pg_switchover.yml"
    return run_playbook(tmp_path, inventory, playbook, {"ANSIBLE_FACT_CACHING": "memory"}, args)


@pytest.mark.parametrize(
    ("secrets", "args", "named"),
    [
        (GOOD, ("-e", "postgresql_switchover_to=pg9"), "postgresql_switchover_to is 'pg9', not a host of the postgres"),
        (
            but(postgresql_patroni_restapi_password="CHANGE_ME_x"),  # noqa: S106 - a placeholder
            (),
            "postgresql_patroni_restapi_password is missing or a placeholder",
        ),
    ],
    ids=["not-a-member", "restapi-placeholder"],
)
def test_the_switchover_refuses_bad_input_before_it_reaches_a_host(
    tmp_path: Path, secrets: dict[str, object], args: tuple[str, ...], named: str
) -> None:
    result = run_switchover(tmp_path, secrets, *args)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert named in " ".join(out.split()), out
    assert "UNREACHABLE" not in out, out


def test_the_switchover_with_good_input_goes_on_to_patroni(tmp_path: Path) -> None:
    result = run_switchover(tmp_path, GOOD, "-e", "postgresql_switchover_to=pg2")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "UNREACHABLE" in out, out  # the module's host, past every check
    assert "not a host of the postgres group" not in out
