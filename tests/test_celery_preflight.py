"""The celery role refuses an inventory without a beat host, or a beat lock timeout outside 5-30 s,
in its preflight, before anything changes; two beat hosts pass (one is active at a time).

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
    tmp_path: Path,
    beat_group: list[str],
    beat_enabled: dict[str, bool] | None = None,
    play_hosts: str = "",
    lock_timeout: int = 25,
) -> subprocess.CompletedProcess[str]:
    # No app secrets: a run that gets past the beat check stops at app_release's secret check,
    # which names the first missing secret (still before any host is touched).
    hosts = {
        h: ({"celery_beat_enabled": beat_enabled[h]} if beat_enabled and h in beat_enabled else None) for h in WORKERS
    }
    inventory = {
        "all": {
            "vars": {**UNREACHABLE, "celery_beat_lock_timeout": lock_timeout},
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


BEAT_CHECK = "One or more hosts must run Celery beat"


def folded(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())  # the message is folded over lines


@pytest.mark.parametrize(
    ("beat_group", "beat_enabled", "lock_timeout", "named"),
    [
        ([], None, 25, "the inventory has 0: none."),
        # An inventory value of celery_beat_enabled counts as much as the group.
        ([WORKERS[0]], {WORKERS[0]: False}, 25, "the inventory has 0: none."),
        ([WORKERS[0]], None, 4, "celery_beat_lock_timeout must be 5-30 seconds (is 4)"),
        ([WORKERS[0]], None, 31, "celery_beat_lock_timeout must be 5-30 seconds (is 31)"),
    ],
    ids=["no-beat-host", "group-host-switched-off", "lock-timeout-4", "lock-timeout-31"],
)
def test_no_beat_host_or_a_bad_lock_timeout_fails_the_preflight(
    tmp_path: Path, beat_group: list[str], beat_enabled: dict[str, bool] | None, lock_timeout: int, named: str
) -> None:
    result = run_role(tmp_path, beat_group, beat_enabled, lock_timeout=lock_timeout)
    out = folded(result)
    assert result.returncode != 0, out
    assert BEAT_CHECK in out, out
    assert named in out, out
    assert "UNREACHABLE" not in out, "a task past the preflight ran:\n" + out
    assert "Check the app's secrets" not in out, out


@pytest.mark.parametrize(
    ("beat_group", "beat_enabled", "play_hosts"),
    [
        ([WORKERS[0]], None, ""),
        (WORKERS, None, ""),
        ([WORKERS[0]], {WORKERS[1]: True}, ""),
        # Under --limit (site.yml --check --limit lb:api on a host that also runs a worker) the beat
        # host is outside the play and still runs beat: the inventory's beat host counts.
        ([WORKERS[0]], None, WORKERS[1]),
    ],
    ids=["one-beat-host", "two-in-the-group", "group-plus-inventory-flag", "beat-host-outside-the-play"],
)
def test_one_or_more_beat_hosts_pass_the_beat_check(
    tmp_path: Path, beat_group: list[str], beat_enabled: dict[str, bool] | None, play_hosts: str
) -> None:
    # The run gets past the beat check and stops at the next check of the role (the missing app
    # secrets), still on the controller.
    result = run_role(tmp_path, beat_group, beat_enabled, play_hosts=play_hosts)
    out = folded(result)
    assert result.returncode != 0, out
    assert BEAT_CHECK not in out, out
    assert "app_release_database_password is missing, shorter than 16 characters or a placeholder" in out, out
    assert "UNREACHABLE" not in out, out
