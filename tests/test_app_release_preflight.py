"""A missing or placeholder secret of the app stops the api and celery roles in app_release's preflight.

The roles run against hosts that cannot be reached (SSH to a closed local port), without facts: the
preflight's asserts run on the controller, so a run that fails there touched no host, built nothing
and changed nothing; a run that gets past it fails as UNREACHABLE at the first task on a host.
"""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import run_playbook

REPO = Path(__file__).resolve().parent.parent
VERSION = (REPO / "app" / "src" / "tutormax" / "VERSION").read_text().strip()
BUILD_SCRIPT = REPO / "roles" / "app_release" / "files" / "build_release.sh"
UV_VERSION = yaml.safe_load((REPO / "roles" / "app_release" / "defaults" / "main.yml").read_text())[
    "app_release_uv_version"
]
SECRETS = {
    "app_release_database_password": "q8Vt3mN0xR2pL7sK1wZ9aa",
    "app_release_redis_password": "b4Nc8xT2mQ7vL1pZ9kR3bb",
    "app_release_redis_sentinel_password": "h6Wd1yU5nE8cJ3qA7sF2cc",
}
UNREACHABLE = {
    "ansible_connection": "ssh",
    "ansible_host": "127.0.0.1",
    "ansible_port": 9,  # discard: nothing listens, the connection is refused
    "ansible_ssh_common_args": "-o ConnectTimeout=3",
}


def fake_release(build_dir: Path) -> None:
    """An archive where the build step looks for one, with the key of the app's inputs, the lock's
    wheelhouse and uv, so a run that gets past the preflight builds nothing (the build script sees
    them and stops)."""
    target = build_dir / VERSION / f"tutormax-release-{VERSION}.tar"
    target.parent.mkdir(parents=True)
    key = subprocess.run(
        [str(BUILD_SCRIPT), "--key", str(REPO / "app"), VERSION, UV_VERSION],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    lock = hashlib.sha256((REPO / "app" / "requirements.lock").read_bytes()).hexdigest()[:16]
    (build_dir / f"wheelhouse-{lock}.tar").write_bytes(b"")
    uv = build_dir / f"uv-{UV_VERSION}" / "uv"
    uv.parent.mkdir()
    uv.write_text("#!/bin/sh\n")
    uv.chmod(0o755)
    with tarfile.open(target, "w") as tar:
        tar.add(uv, arcname="./VERSION")
    Path(f"{target}.key").write_text(key + "\n")


def run_role(tmp_path: Path, role: str, secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    fake_release(tmp_path / "build")
    inventory = {
        "all": {
            "vars": {**UNREACHABLE, **secrets, "app_release_build_dir": str(tmp_path / "build")},
            "children": {
                "postgres_primary": {"hosts": {"pg-unreachable": None}},
                "redis_sentinel": {"hosts": {"pg-unreachable": None}},
                "api": {"hosts": {"app-unreachable": None}},
                "celery_worker": {"hosts": {"app-unreachable": None}},
                "celery_beat": {"hosts": {"app-unreachable": None}},
            },
        }
    }
    hosts = {"api": "api", "celery": "celery_worker:celery_beat"}[role]
    play = [{"name": "Apply the role", "hosts": hosts, "gather_facts": False, "roles": [f"tutormax.cluster.{role}"]}]
    return run_playbook(tmp_path, inventory, play)


# Every secret, missing and placeholder, through the api role; the celery role includes the same
# preflight, so one case shows it there.
CASES = [
    *(("api", variable, value) for variable in sorted(SECRETS) for value in (None, "CHANGE_ME_app_secret")),
    ("celery", "app_release_redis_password", "CHANGE_ME_app_secret"),
]


@pytest.mark.parametrize(
    ("role", "variable", "value"),
    CASES,
    ids=[f"{r}-{v.removeprefix('app_release_')}-{'placeholder' if x else 'missing'}" for r, v, x in CASES],
)
def test_a_missing_or_placeholder_secret_fails_the_preflight_naming_it(
    tmp_path: Path, role: str, variable: str, value: str | None
) -> None:
    secrets = {k: v for k, v in SECRETS.items() if k != variable}
    if value is not None:
        secrets[variable] = value
    result = run_role(tmp_path, role, secrets)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"{variable} is missing, shorter than 16 characters or a placeholder" in out, out
    assert "UNREACHABLE" not in out, "a task past the preflight ran:\n" + out
    assert "Build the release archive" not in out, out
    assert not any(v in out for v in secrets.values() if v != value), "a secret was printed"


@pytest.mark.parametrize("role", ["api", "celery"])
def test_with_every_secret_set_the_run_gets_past_the_preflight_to_the_first_host_task(
    tmp_path: Path, role: str
) -> None:
    # The control case: the same run with good secrets passes the checks, finds the (fake)
    # archive and fails only at the first task that needs the host.
    result = run_role(tmp_path, role, SECRETS)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "is missing, shorter than 16 characters or a placeholder" not in out, out
    # The build step ran and found the fake archive current: nothing built, nothing changed.
    assert "Build the release archive" in out, out
    assert "changed=0" in out, out
    assert "UNREACHABLE" in out, out
    assert "Look for the release on the host" in out, out
    assert not any(v in out for v in SECRETS.values()), "a secret was printed"
