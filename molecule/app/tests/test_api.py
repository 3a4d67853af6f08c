"""What the api role leaves on the API host, and what deploying 1.0.1 and going back to 1.0.0 did.

side_effect_api.yml deployed 1.0.1 (built from the same source) and then 1.0.0 again, with --diff
and -v, and saved each run's output and snapshots of the host (side_effect_api.json) in the
ephemeral directory. The host now runs 1.0.0. It also runs a Celery worker (test_celery.py).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("api")

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SECRETS = {p.name: p.read_text().strip() for p in (EPHEMERAL / "secrets").iterdir()}
SIDE_EFFECT = json.loads((EPHEMERAL / "side_effect_api.json").read_text())
RUNS = ["deploy-1.0.1", "back-to-1.0.0"]
ENV_FILE = "/etc/tutormax/tutormax.env"
ROOT = "/opt/tutormax"


def snapshots(host) -> dict:
    return SIDE_EFFECT["hosts"][host.backend.get_hostname()]


def run_output(label: str) -> str:
    return (EPHEMERAL / f"{label}.log").read_text()


def changed_tasks(output: str, host: str) -> list[str]:
    """Names of the tasks (and handlers) that reported `changed` on ``host`` in a run's output."""
    changed, task = [], None
    for line in output.splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(?:[\w.]+ : )?(.*?)\]", line)
        if header:
            task = header.group(1)
        elif re.match(rf"^changed: \[{re.escape(host)}\]", line) and task:
            changed.append(task)
    return changed


def env_file(host) -> dict[str, str]:
    text = host.check_output(f"cat {ENV_FILE}")
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_the_api_runs_as_the_tutormax_user_under_systemd(host) -> None:
    assert host.service("tutormax-api").is_running
    assert host.service("tutormax-api").is_enabled
    main_pid = host.check_output("systemctl show -P MainPID tutormax-api")
    users = host.check_output(f"ps -o user= -p {main_pid} --ppid {main_pid}").split()
    assert len(users) == 4  # gunicorn and its three workers (app_release_workers of the side effect)
    assert set(users) == {"tutormax"}


def test_gunicorn_serves_the_configured_number_of_workers(host) -> None:
    main_pid = host.check_output("systemctl show -P MainPID tutormax-api")
    workers = host.check_output(f"ps -o pid= --ppid {main_pid}").split()
    # molecule.yml says 2; side_effect_api.yml's deployments raised app_release_workers to 3.
    assert len(workers) == 3


def test_health_returns_the_seed_json_with_the_version_and_this_hosts_instance_id(host) -> None:
    reply = json.loads(host.check_output("curl -sf http://127.0.0.1:8000/health"))
    assert reply == {
        "status": "healthy",
        "database": "connected",
        "redis": "connected",
        "version": "1.0.0",
        "instance_id": host.backend.get_hostname(),
    }


def test_the_environment_file_is_root_tutormax_0640(host) -> None:
    f = host.file(ENV_FILE)
    assert (f.user, f.group, f.mode) == ("root", "tutormax", 0o640)
    assert host.file("/etc/tutormax").mode & 0o007 == 0


def test_the_environment_file_names_the_primary_the_sentinels_and_this_instance(host) -> None:
    env = env_file(host)
    primary = host.check_output("getent hosts app-db").split()[0]
    assert re.fullmatch(rf"postgresql://tutormax:[^@]+@{re.escape(primary)}:5432/tutormax", env["DATABASE_URL"])
    # No replica in this scenario: reads go to the primary too.
    assert env["DATABASE_READ_URL"] == env["DATABASE_URL"]
    assert len(env["REDIS_SENTINELS"].split(",")) == 3
    assert all(s.endswith(":26379") for s in env["REDIS_SENTINELS"].split(","))
    assert env["REDIS_USERNAME"] == "tutormax"
    assert env["REDIS_PASSWORD"] == SECRETS["redis_app_password"]
    assert env["REDIS_SENTINEL_PASSWORD"] == SECRETS["redis_sentinel_password"]
    assert env["API_INSTANCE_ID"] == host.backend.get_hostname()
    assert env["WORKERS"] == "3"


@pytest.mark.parametrize("label", RUNS)
def test_no_secret_appears_in_the_output_of_a_deployment(label: str) -> None:
    output = run_output(label)
    # The run did touch the secrets: it ran the migrations with the database URL, and the first
    # one rewrote the environment file (WORKERS, two lines below the Redis passwords).
    assert "Apply the database migrations of release" in output
    if label == "deploy-1.0.1":
        assert any(t.startswith("Write the environment file") for t in changed_tasks(output, "app-api"))
    leaked = sorted(name for name, value in SECRETS.items() if value in output)
    assert not leaked, f"secrets {leaked} appear in the output of {label}"


def test_the_migrations_are_at_head(host) -> None:
    head = host.check_output(f"DATABASE_URL=postgresql://unused {ROOT}/current/bin/tutormax-migrate heads")
    current = host.run(
        f"runuser -u tutormax -- bash -c 'set -a; . {ENV_FILE}; exec {ROOT}/current/bin/tutormax-migrate current'"
    )
    assert current.rc == 0, current.stderr
    assert head.split()[0] + " (head)" in current.stdout + current.stderr


def test_the_second_version_was_installed_beside_the_first_and_went_live(host) -> None:
    first, second = snapshots(host)["first"], snapshots(host)["second"]
    assert first["current"] == "1.0.0"
    assert second["current"] == "1.0.1"
    assert second["health"]["version"] == "1.0.1"
    assert second["health"]["instance_id"] == host.backend.get_hostname()
    # 1.0.0 is still there, untouched (not reinstalled).
    assert second["installed"]["1.0.0"] == first["installed"]["1.0.0"]
    assert second["main_pid"] != first["main_pid"]


def test_both_releases_share_one_dependency_layer_and_hold_the_app_alone(host) -> None:
    layers = {v: host.file(f"{ROOT}/releases/{v}/deps").linked_to for v in ("1.0.0", "1.0.1")}
    assert layers["1.0.0"] == layers["1.0.1"], f"the second release installed its dependencies again: {layers}"
    layer = layers["1.0.0"]
    # side_effect_api.yml left an orphan layer before deploying 1.0.1; that deploy's prune removed it.
    assert host.file(f"{ROOT}/deps").listdir() == [layer.rsplit("/", 1)[1]]
    deployed = changed_tasks(run_output("deploy-1.0.1"), host.backend.get_hostname())
    assert "Remove the dependency layers no kept release links to" in deployed
    # The layer was there: 1.0.1 came without the wheelhouse and installed one package.
    assert "Unpack the lock's wheelhouse" not in deployed
    # uv came once, with the first release, and is not part of a release.
    assert "Copy the uv binary" not in deployed
    assert host.file(f"{ROOT}/tools").listdir() == ["uv-0.13.9"]
    assert host.file(f"{ROOT}/tools/uv-0.13.9/uv").mode == 0o755
    assert not host.file(f"{ROOT}/releases/1.0.1/bin/uv").exists
    assert "Install the app offline into the release (its dependencies are the layer's)" in deployed
    assert host.file(f"{layer}/.installed").exists
    site = "lib/python3.11/site-packages"
    assert host.file(f"{ROOT}/releases/1.0.1/{site}/tutormax-deps.pth").content_string.strip() == f"{layer}/{site}"
    assert host.file(f"{layer}/{site}/fastapi").is_directory
    assert not host.file(f"{ROOT}/releases/1.0.1/{site}/fastapi").exists, "a dependency inside the release"
    # Compiled as root once, so the service user (who cannot write there) never compiles at start.
    assert host.file(f"{layer}/{site}/fastapi/__pycache__").is_directory
    # The running API is the release's interpreter, with the layer on its path.
    pid = host.check_output("systemctl show --property=MainPID --value tutormax-api")
    argv0 = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/cmdline | head -n1")
    assert argv0 == host.file(f"{ROOT}/current").linked_to + "/bin/python"


def test_switching_back_is_a_link_switch_and_a_restart_without_reinstalling(host) -> None:
    second, back = snapshots(host)["second"], snapshots(host)["back"]
    assert back["current"] == "1.0.0"
    assert back["health"]["version"] == "1.0.0"
    assert back["main_pid"] != second["main_pid"]
    assert back["installed"] == second["installed"], "a release was installed again"
    assert host.file(f"{ROOT}/releases/1.0.1/.installed").exists, "the newer release is kept"
    changed = changed_tasks(run_output("back-to-1.0.0"), host.backend.get_hostname())
    # The link moved, the check that follows found the API on the other release, the handler restarted it.
    assert sorted(changed) == [
        "Find the services that run another release than the live one",
        "Point current at the release",
        "Restart tutormax-api",
    ]


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
