"""pg_restore.yml's first play refuses a bad request on the controller, before any host is
contacted: a disaster restore without its confirmation (saying what it destroys) and a restore
host outside the allowed ones. A request without pg_restore_host (the default drill host) gets
past these checks; CI's cluster run once failed there because a message named an unset variable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, run_playbook

UNREACHABLE = {
    "ansible_connection": "ssh",
    "ansible_host": "127.0.0.1",
    "ansible_port": 9,  # discard: nothing listens, the connection is refused
    "ansible_ssh_common_args": "-o ConnectTimeout=3",
}
INVENTORY = {
    "all": {
        "vars": UNREACHABLE,
        "children": {
            "postgres": {
                "children": {
                    "postgres_primary": {"hosts": {"pg1": None}},
                    "postgres_replica": {"hosts": {"pg2": None}},
                }
            },
            "backup": {"hosts": {"backup1": None}},
        },
    }
}


def run(tmp_path: Path, *extra: str) -> tuple[int, str]:
    args = tuple(x for e in extra for x in ("-e", e))
    done = run_playbook(tmp_path, INVENTORY, REPO / "playbooks" / "pg_restore.yml", args=args)
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def test_a_disaster_restore_without_its_confirmation_says_what_it_destroys(tmp_path: Path) -> None:
    rc, out = run(tmp_path, "pg_restore_mode=disaster")
    assert rc != 0
    assert "A disaster restore destroys the live cluster: Patroni stops on pg1, pg2" in out, out[-3000:]
    assert "UNREACHABLE" not in out, out[-3000:]


@pytest.mark.parametrize(("mode", "allowed"), [("drill", "backup1, pg1, pg2"), ("disaster", "pg1, pg2")])
def test_a_restore_host_outside_the_allowed_ones_is_refused(tmp_path: Path, mode: str, allowed: str) -> None:
    rc, out = run(tmp_path, f"pg_restore_mode={mode}", "pg_restore_host=nope")
    assert rc != 0
    assert f"pg_restore_host is 'nope': a {mode} restores onto one of {allowed}" in out, out[-3000:]
    assert "UNREACHABLE" not in out, out[-3000:]


def test_a_drill_without_a_restore_host_gets_past_the_checks(tmp_path: Path) -> None:
    # The checks pass; the next play reaches for the (unreachable) backup host.
    rc, out = run(tmp_path)
    assert rc != 0
    assert "pg_restore_host is" not in out, out[-3000:]
    assert "is undefined" not in out, out[-3000:]
    assert "UNREACHABLE" in out, out[-3000:]
