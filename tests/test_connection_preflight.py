"""site.yml's connection budget (playbooks/preflight_connections.yml) on hosts faked on this machine.

The API and Celery hosts count the connections their processes may open (the app_release and celery
roles' `connections` entry points); the postgresql role adds them up and refuses, naming the numbers
and the fix, an inventory whose clients need more than max_connections minus the reserve.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from conftest import run_playbook

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / "playbooks" / "preflight_connections.yml"


def inventory(**settings: Any) -> dict[str, Any]:  # noqa: ANN401 - inventory values
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "app_release_workers": 4}
    return {
        "all": {
            "vars": {**local, **settings},
            "children": {
                "api": {"hosts": {"api1": None, "api2": None, "api3": None}},
                "celery_worker": {"hosts": {"w1": None, "w2": None}},
                "postgres": {"hosts": {"pg1": None, "pg2": None}},
            },
        }
    }


def run(tmp_path: Path, **settings: Any) -> tuple[int, str]:  # noqa: ANN401
    done = run_playbook(tmp_path, inventory(**settings), PLAYBOOK)
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def test_the_defaults_fit_and_the_run_says_how_many_are_left(tmp_path: Path) -> None:
    rc, out = run(tmp_path)
    assert rc == 0, out[-3000:]
    # 3 API hosts x 4 workers x (10 + 2) = 144; 2 Celery hosts x 1 x 2 processes x 3 = 12; 200 - 10 reserved.
    assert "The clients need 156 connections and 190 are available" in out
    assert "34 to spare" in out


def test_too_many_workers_are_refused_naming_every_number_and_the_fix(tmp_path: Path) -> None:
    rc, out = run(tmp_path, app_release_workers=6, app_release_database_pool_size=12, celery_worker_concurrency=4)
    assert rc != 0
    # 3 x 6 x 14 = 252 and 2 x 4 x 3 = 24: 276 > 190.
    assert "The clients need 276 connections but only 190 are available" in out, out[-3000:]
    assert "(postgresql_max_connections 200 minus 10 reserved)" in out
    assert "raise postgresql_max_connections to 286 or more" in out
    assert "API on api1: 1 host x 6 processes x 14 connections = 84" in out
    assert "Celery on w1: 1 host x 4 processes x 3 connections = 12" in out


def test_a_smaller_max_connections_is_refused_and_a_larger_one_fits(tmp_path: Path) -> None:
    rc, out = run(tmp_path, postgresql_max_connections=100)
    assert rc != 0
    assert "The clients need 156 connections but only 90 are available" in out
    rc, out = run(tmp_path, postgresql_max_connections=166)
    assert rc == 0, out[-3000:]
    assert "0 to spare" in out
