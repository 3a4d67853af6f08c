"""The redis role refuses a missing or placeholder secret in its preflight, before anything changes.

The role runs without facts against hosts that cannot be reached: the preflight's asserts run on the
controller, so a play that fails there has touched no host, and a play that gets past it fails as
unreachable at the first task that would change something.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import run_playbook

REPO = Path(__file__).resolve().parent.parent
SECRETS = {
    "redis_password": "q8Vt3mN0xR2pL7sK1wZ9aa",
    "redis_app_password": "b4Nc8xT2mQ7vL1pZ9kR3bb",
    "redis_sentinel_password": "h6Wd1yU5nE8cJ3qA7sF2cc",
    "redis_monitor_password": "r5Tg2hY7uJ1kM9nB3vC6dd",
}
HOSTS = ["redis-unreachable-1", "redis-unreachable-2", "redis-unreachable-3"]


def run_role(tmp_path: Path, secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    unreachable = {
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": 1,  # nothing listens there: connecting fails at once
        "ansible_user": "nobody",
    }
    inventory = {
        "all": {
            "vars": {**unreachable, **secrets, "redis_maxmemory": "64mb"},
            "children": {
                "redis_master": {"hosts": {HOSTS[0]: {"redis_bind_address": "192.0.2.11"}}},
                "redis_replica": {
                    "hosts": {
                        HOSTS[1]: {"redis_bind_address": "192.0.2.12"},
                        HOSTS[2]: {"redis_bind_address": "192.0.2.13"},
                    }
                },
                "redis_sentinel": {"hosts": dict.fromkeys(HOSTS)},
            },
        }
    }
    playbook = [
        {"name": "Apply the redis role", "hosts": "all", "gather_facts": False, "roles": ["tutormax.cluster.redis"]}
    ]
    return run_playbook(tmp_path, inventory, playbook)


@pytest.mark.parametrize("variable", sorted(SECRETS))
@pytest.mark.parametrize("value", [None, "CHANGE_ME_redis_secret"], ids=["missing", "placeholder"])
def test_a_missing_or_placeholder_secret_fails_the_preflight_naming_it(
    tmp_path: Path, variable: str, value: str | None
) -> None:
    secrets = {k: v for k, v in SECRETS.items() if k != variable}
    if value is not None:
        secrets[variable] = value
    result = run_role(tmp_path, secrets)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"Set {variable} " in out, out
    assert "UNREACHABLE" not in out, "a task past the preflight ran:\n" + out
    # The value itself never shows.
    assert "CHANGE_ME_redis_secret" not in out.replace(f"{variable}", "")


def test_with_every_secret_set_the_preflight_passes_and_the_first_change_meets_the_unreachable_host(
    tmp_path: Path,
) -> None:
    result = run_role(tmp_path, SECRETS)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "UNREACHABLE" in out, out
    assert "Install redis-server, redis-sentinel and redis-tools" in out, out
    assert not any(v in out for v in SECRETS.values()), "a secret was printed"
