"""site.yml refuses a bad inventory or a missing secret in its first play, before any host is touched.

Every host of these inventories is unreachable: a run the preflight stops never connects to one,
and a run that gets past the preflight fails as UNREACHABLE in the fact-gathering play instead.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_playbook

REPO = Path(__file__).resolve().parent.parent
SECRETS = {
    "vault_postgresql_app_password": "q8Vt3mN0xR2pL7sK1wZ9aa",
    "vault_postgresql_replication_password": "b4Nc8xT2mQ7vL1pZ9kR3bb",
    "vault_postgresql_rewind_password": "t7Hs2kQ9wE4rY1uI6oP3ff",
    "vault_patroni_restapi_password": "g5Jd8fK2lZ6xC9vB1nM4gg",
    "vault_redis_password": "h6Wd1yU5nE8cJ3qA7sF2cc",
    "vault_redis_app_password": "m2Kp9sX4vB7nQ1wE5rT8dd",
    "vault_redis_sentinel_password": "z3Lq8wN6cV1bM4xR7tY2ee",
    "vault_redis_monitor_password": "p4Rf7gT2hY9uJ3kL6zX1ww",
    "vault_pgbackrest_cipher_pass": "Xr7pL2qW9mZ4vN8sK1tB6yH3jD5fG0cA2eU7iO4w",
}
UNREACHABLE = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "nobody"}


def good_inventory() -> dict[str, Any]:
    return {
        "all": {
            "vars": {**UNREACHABLE, **SECRETS},
            "children": {
                "lb": {"hosts": {"lb1": None}},
                "api": {"hosts": {"api1": None, "api2": None}},
                "postgres": {
                    "children": {
                        "postgres_primary": {"hosts": {"pg1": None}},
                        "postgres_replica": {"hosts": {"pg2": None}},
                    }
                },
                "redis": {
                    "children": {
                        "redis_master": {"hosts": {"r1": None}},
                        "redis_replica": {"hosts": {"r2": None, "r3": None}},
                    }
                },
                "redis_sentinel": {"hosts": {"r1": None, "r2": None, "r3": None}},
                "etcd": {"hosts": {"r1": None, "r2": None, "r3": None}},
                "celery_worker": {"hosts": {"w1": None, "w2": None}},
                "celery_beat": {"hosts": {"w1": None}},
                "backup": {"hosts": {"b1": None}},
            },
        }
    }


def run_site(tmp_path: Path, inventory: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_playbook(
        tmp_path, inventory, REPO / "site.yml", {"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts")}
    )


def groups(inventory: dict[str, Any]) -> dict[str, Any]:
    return dict(inventory["all"]["children"])


def without_primary(inv: dict[str, Any]) -> None:
    groups(inv)["postgres"]["children"]["postgres_primary"]["hosts"] = {}


def no_beat(inv: dict[str, Any]) -> None:
    groups(inv)["celery_beat"]["hosts"] = {}


def two_sentinels(inv: dict[str, Any]) -> None:
    groups(inv)["redis_sentinel"]["hosts"] = {"r1": None, "r2": None}


def four_sentinels(inv: dict[str, Any]) -> None:
    groups(inv)["redis_sentinel"]["hosts"]["r4"] = None


def two_etcd_members(inv: dict[str, Any]) -> None:
    groups(inv)["etcd"]["hosts"] = {"r1": None, "r2": None}


def no_etcd(inv: dict[str, Any]) -> None:
    del inv["all"]["children"]["etcd"]


def missing_rewind_secret(inv: dict[str, Any]) -> None:
    del inv["all"]["vars"]["vault_postgresql_rewind_password"]


def no_lb(inv: dict[str, Any]) -> None:
    groups(inv)["lb"]["hosts"] = {}


def primary_also_replica(inv: dict[str, Any]) -> None:
    groups(inv)["postgres"]["children"]["postgres_replica"]["hosts"]["pg1"] = None


def placeholder_secret(inv: dict[str, Any]) -> None:
    inv["all"]["vars"]["vault_redis_app_password"] = "CHANGE_ME_redis_app_password"  # noqa: S105 - the placeholder


def missing_secret(inv: dict[str, Any]) -> None:
    del inv["all"]["vars"]["vault_postgresql_replication_password"]


def no_backup_host(inv: dict[str, Any]) -> None:
    del inv["all"]["children"]["backup"]


def backup_on_a_postgres_host(inv: dict[str, Any]) -> None:
    groups(inv)["backup"]["hosts"] = {"pg2": None}


def placeholder_cipher_pass(inv: dict[str, Any]) -> None:
    inv["all"]["vars"]["vault_pgbackrest_cipher_pass"] = "CHANGE_ME_pgbackrest_cipher_pass"  # noqa: S105 - the placeholder


def short_cipher_pass(inv: dict[str, Any]) -> None:
    # Long enough for the other secrets (16), too short for the repository's passphrase (20).
    inv["all"]["vars"]["vault_pgbackrest_cipher_pass"] = "Qm8vT2xK9pL4wZ7nR1"  # noqa: S105 - a test's own


def retired_but_still_serving(inv: dict[str, Any]) -> None:
    inv["all"]["children"]["retired"] = {"hosts": {"api2": None}}


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (without_primary, "exactly one `postgres_primary`"),
        (no_beat, "one or more `celery_beat` (has 0; one is active at a time)"),
        (two_sentinels, "three or more"),
        (four_sentinels, "odd number"),
        (no_lb, "at least one `api` and one `lb` host"),
        (two_etcd_members, "The etcd group has 2 hosts, fewer than three"),
        (no_etcd, "No etcd members are set"),
        (missing_rewind_secret, "vault_postgresql_rewind_password is missing"),
        (primary_also_replica, "pg1"),
        (placeholder_secret, "vault_redis_app_password is missing"),
        (missing_secret, "vault_postgresql_replication_password is missing"),
        (no_backup_host, "No host in the backup group: add one"),
        (backup_on_a_postgres_host, "pg2 is in both backup and postgres"),
        (placeholder_cipher_pass, "vault_pgbackrest_cipher_pass is missing or a placeholder"),
        (short_cipher_pass, "vault_pgbackrest_cipher_pass is 18 characters: use 20 or more"),
        (retired_but_still_serving, "in the group retired and still in another group: api2"),
    ],
)
def test_a_bad_inventory_stops_in_the_preflight_before_any_host_is_contacted(
    tmp_path: Path, breakage: Callable[[dict[str, Any]], None], expected: str
) -> None:
    inventory = copy.deepcopy(good_inventory())
    breakage(inventory)
    done = run_site(tmp_path, inventory)
    out = " ".join(done.stdout.split())
    assert done.returncode != 0
    assert expected in out, out[-2000:]
    assert "UNREACHABLE" not in done.stdout
    assert "Gathering Facts" not in done.stdout
    secrets = [v for k, v in inventory["all"]["vars"].items() if k.startswith("vault_")]
    assert not [v for v in secrets if v in done.stdout + done.stderr], "a secret was printed"


def test_a_good_inventory_passes_the_preflight_and_only_then_reaches_for_the_hosts(tmp_path: Path) -> None:
    done = run_site(tmp_path, good_inventory())
    assert done.returncode != 0
    assert "UNREACHABLE" in done.stdout
    assert "Preflight: inventory and secrets" in done.stdout


def test_a_limit_without_localhost_is_refused_before_any_host_is_contacted(tmp_path: Path) -> None:
    done = run_playbook(
        tmp_path,
        good_inventory(),
        REPO / "site.yml",
        {"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts")},
        ("--limit", "w1"),
    )
    out = " ".join(done.stdout.split())
    assert done.returncode != 0
    assert "--limit leaves out localhost" in out, out[-2000:]
    assert "--limit 'w1,localhost'" in out, out[-2000:]
    assert "UNREACHABLE" not in done.stdout
    assert "Gathering Facts" not in done.stdout


def test_a_limit_with_localhost_passes_the_preflight(tmp_path: Path) -> None:
    done = run_playbook(
        tmp_path,
        good_inventory(),
        REPO / "site.yml",
        {"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts")},
        ("--limit", "w1,localhost"),
    )
    assert done.returncode != 0
    assert "--limit leaves out localhost" not in done.stdout
    assert "UNREACHABLE" in done.stdout
