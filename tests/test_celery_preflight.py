"""The celery role refuses zero or two beat hosts in its preflight, before anything changes.

The role runs without facts against hosts that cannot be reached (SSH to a closed local port): the
beat check runs on the controller, so a play that fails there has touched no host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import run_playbook

REPO = Path(__file__).resolve().parent.parent
WORKERS = ["worker-unreachable-1", "worker-unreachable-2"]
UNREACHABLE = {
    "ansible_connection": "ssh",
    "ansible_host": "127.0.0.1",
    "ansible_port": 9,  # discard: nothing listens, the connection is refused
    "ansible_ssh_common_args": "-o ConnectTimeout=3",
}


def run_role(
    tmp_path: Path, beat_group: list[str], beat_enabled: dict[str, bool] | None = None, play_hosts: str = ""
) -> subprocess.CompletedProcess[str]:
    # No app secrets: a run that gets past the beat check stops at app_release's secret check,
    # which names the first missing secret (still before any host is touched).
    hosts = {
        h: ({"celery_beat_enabled": beat_enabled[h]} if beat_enabled and h in beat_enabled else None) for h in WORKERS
    }
    inventory = {
        "all": {
            "vars": UNREACHABLE,
            "children": {
                "postgres_primary": {"hosts": {"pg-unreachable": None}},
                "celery_worker": {"hosts": hosts},
                "celery_beat": {"hosts": dict.fromkeys(beat_group)},
            },
        }
    }
    play = [
        {
            "name": "Apply the celery role",
            "hosts": play_hosts or "celery_worker:celery_beat",
            "gather_facts": False,
            "roles": ["tutormax.cluster.celery"],
        }
    ]
    return run_playbook(tmp_path, inventory, play)


@pytest.mark.parametrize(
    ("beat_group", "beat_enabled", "count", "named"),
    [
        ([], None, 0, "none"),
        (WORKERS, None, 2, ", ".join(WORKERS)),
        # An inventory value of celery_beat_enabled counts as much as the group.
        ([WORKERS[0]], {WORKERS[1]: True}, 2, ", ".join(WORKERS)),
        ([WORKERS[0]], {WORKERS[0]: False}, 0, "none"),
    ],
    ids=["no-beat-host", "two-in-the-group", "group-plus-inventory-flag", "group-host-switched-off"],
)
def test_zero_or_two_beat_hosts_fail_the_preflight_naming_them(
    tmp_path: Path, beat_group: list[str], beat_enabled: dict[str, bool] | None, count: int, named: str
) -> None:
    result = run_role(tmp_path, beat_group, beat_enabled)
    out = " ".join((result.stdout + result.stderr).split())  # the message is folded over lines
    assert result.returncode != 0, out
    message = (
        "Exactly one host must run Celery beat (a second beat sends every scheduled task twice); "
        f"the inventory has {count}: {named}. Put one host in the celery_beat group."
    )
    assert message in out, out
    assert "UNREACHABLE" not in out, "a task past the preflight ran:\n" + out
    assert "Check the app's secrets" not in out, out


def test_one_beat_host_passes_the_beat_check(tmp_path: Path) -> None:
    # The control case: the same run with one beat host gets past the beat check and stops at the
    # next check of the role (the missing app secrets), still on the controller.
    result = run_role(tmp_path, [WORKERS[0]])
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, out
    assert "Exactly one host must run Celery beat" not in out, out
    assert "app_release_database_password is missing, shorter than 16 characters or a placeholder" in out, out
    assert "UNREACHABLE" not in out, out


def test_a_play_without_the_beat_host_passes_the_beat_check(tmp_path: Path) -> None:
    """Under --limit (site.yml --check --limit lb:api on a host that also runs a worker) the beat
    host is outside the play and still runs beat: the inventory's one beat host counts."""
    result = run_role(tmp_path, [WORKERS[0]], play_hosts=WORKERS[1])
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, out
    assert "Exactly one host must run Celery beat" not in out, out
    assert "app_release_database_password is missing" in out, out
