"""site.yml's release preflight (playbooks/preflight_release.yml) on hosts faked on this machine.

Each API and Celery host is this machine (local connection) with its own release root, where
`current` points at the release it "runs". The preflight keeps the release every host runs, takes
the shipped source on a first deployment and an asked one with -e tutormax_version, and refuses a
cluster on two releases, naming the hosts and the command that converges them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_playbook

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / "playbooks" / "preflight_release.yml"
SHIPPED = (REPO / "app" / "src" / "tutormax" / "VERSION").read_text().strip()
HOSTS = ["api1", "api2", "w1"]


def inventory(tmp_path: Path, running: dict[str, str]) -> dict[str, Any]:
    """Hosts whose root holds `current` -> releases/<version> (none for an empty version)."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    for host, version in running.items():
        root = tmp_path / "roots" / host
        (root / "releases" / "1.0.0").mkdir(parents=True, exist_ok=True)
        if version:
            (root / "releases" / version).mkdir(parents=True, exist_ok=True)
            (root / "current").symlink_to(root / "releases" / version)
    roots = {h: {"tutormax_release_root": str(tmp_path / "roots" / h)} for h in running}
    return {
        "all": {
            "vars": local,
            "children": {
                "api": {"hosts": {"api1": roots["api1"], "api2": roots["api2"]}},
                "celery_worker": {"hosts": {"w1": roots["w1"]}},
                "celery_beat": {"hosts": {"w1": roots["w1"]}},
            },
        }
    }


def run(tmp_path: Path, running: dict[str, str], *args: str) -> tuple[int, str]:
    done = run_playbook(tmp_path, inventory(tmp_path, running), PLAYBOOK, args=args)
    return done.returncode, done.stdout + done.stderr


def test_keeps_the_release_every_app_host_runs(tmp_path: Path) -> None:
    rc, out = run(tmp_path, dict.fromkeys(HOSTS, "1.0.1"))
    assert rc == 0, out[-3000:]
    assert "Release 1.0.1 (what the app hosts run)" in out


def test_a_first_deployment_takes_the_shipped_source(tmp_path: Path) -> None:
    rc, out = run(tmp_path, dict.fromkeys(HOSTS, ""))
    assert rc == 0, out[-3000:]
    assert f"Release {SHIPPED} (nothing deployed yet: the shipped app source)" in out


def test_refuses_two_releases_naming_the_hosts_and_the_command(tmp_path: Path) -> None:
    rc, out = run(tmp_path, {"api1": "1.0.0", "api2": "1.0.1", "w1": "1.0.1"})
    assert rc != 0
    flat = " ".join(out.split())
    assert "1.0.0 on api1; 1.0.1 on api2, w1" in flat, out[-3000:]
    assert "ansible-playbook rolling_update.yml -e tutormax_version=1.0.1" in flat
    assert "Nothing was changed" in flat


@pytest.mark.parametrize("asked", ["1.0.2", "1.0.0"])
def test_an_asked_release_is_deployed_even_on_two_releases(tmp_path: Path, asked: str) -> None:
    rc, out = run(tmp_path, {"api1": "1.0.0", "api2": "1.0.1", "w1": "1.0.1"}, "-e", f"tutormax_version={asked}")
    assert rc == 0, out[-3000:]
    assert f"Release {asked} (asked with -e tutormax_version)" in out


def test_refuses_a_malformed_asked_release(tmp_path: Path) -> None:
    rc, out = run(tmp_path, dict.fromkeys(HOSTS, "1.0.1"), "-e", "tutormax_version=latest")
    assert rc != 0
    assert "tutormax_version must look like 1.0.1" in out
