"""What the api role leaves on the API hosts, and what deploying 0.9.0 and going back to 1.0.0 did.

side_effect_api.yml deployed 0.9.0 (built from the same source, raising WORKERS to 3) and then
1.0.0 again with the inventory's settings, on every API host, with --diff and -v; it saved each
run's output and snapshots of the hosts (side_effect_api.json) in the ephemeral directory. The
hosts now run 1.0.0 as converge left them. cluster-api3 also runs a Celery worker (test_celery.py).
/health's answer is checked through the load balancer and by playbooks/verify.yml (test_cluster.py).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import testinfra
import testinfra.utils.ansible_runner
import yaml

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
API_HOSTS = sorted(RUNNER.get_hosts("api"))
CELERY_HOSTS = sorted(RUNNER.get_hosts("celery_worker"))
testinfra_hosts = API_HOSTS

REPO = Path(__file__).resolve().parents[3]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
# The local inventory's secrets (the scenario links its group_vars; prepare.yml generates them).
SECRETS = {
    name: str(value)
    for name, value in yaml.safe_load(
        (REPO / "inventories" / "local" / "group_vars" / "all" / "secrets.yml").read_text()
    ).items()
}
SIDE_EFFECT = json.loads((EPHEMERAL / "side_effect_api.json").read_text())
FIRST, SECOND = "1.0.0", "0.9.0"
RUNS = [f"deploy-{SECOND}", f"back-to-{FIRST}"]
ENV_FILE = "/etc/tutormax/tutormax.env"
ROOT = "/opt/tutormax"
ORPHAN_LAYER = f"{ROOT}/deps/0000000000000000-py3.11"
# Task names of the roles, as the deployments' output shows them.
ENV_TASK = "Write the environment file (holds secrets; root-owned, group-readable, never logged)"
SWITCH_TASK = "Point current at the release and remove the releases beyond app_release_keep"
STALE_TASK = "Find the services that run another release or environment than the live ones"
# site.yml restarts an API host that serves through the rolling restart (playbooks/rolling_api.yml).
ROLLING_TASK = "Wait for the requests in flight, switch to the release, restart and pass the health gate"


def snapshots(host) -> dict:
    return SIDE_EFFECT["hosts"][host.backend.get_hostname()]


def run_output(label: str) -> str:
    return (EPHEMERAL / f"{label}.log").read_text()


def results(output: str, host: str) -> list[tuple[str, str, str]]:
    """(task, status, result text) of every task and handler that ran on ``host``, in a run's output."""
    found: list[tuple[str, str, str]] = []
    task, current = None, None
    for line in output.splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(?:[\w.]+ : )?(.*?)\]", line)
        result = re.match(rf"^(ok|changed|skipping|failed|fatal): \[{re.escape(host)}\]", line)
        if header:
            task, current = header.group(1), None
        elif result and task:
            current = [line]
            found.append((task, result.group(1), ""))
        elif current is not None and line[:1].isspace():
            current.append(line)
            found[-1] = (found[-1][0], found[-1][1], "\n".join(current))
        else:
            current = None
    return found


def changed_tasks(output: str, host: str) -> list[str]:
    """Names of the tasks (and handlers) that reported `changed` on ``host`` in a run's output."""
    return [task for task, status, _ in results(output, host) if status == "changed"]


def env_file(host) -> dict[str, str]:
    text = host.check_output(f"cat {ENV_FILE}")
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def address(host, name: str) -> str:
    return host.check_output(f"getent hosts {name}").split()[0]


def test_the_api_runs_as_the_tutormax_user_with_the_configured_number_of_workers(host) -> None:
    assert host.service("tutormax-api").is_running
    assert host.service("tutormax-api").is_enabled
    main_pid = host.check_output("systemctl show -P MainPID tutormax-api")
    users = host.check_output(f"ps -o user= -p {main_pid} --ppid {main_pid}").split()
    assert set(users) == {"tutormax"}
    # gunicorn and its workers: app_release_workers of the inventory (2), as WORKERS says.
    assert len(users) == 1 + int(env_file(host)["WORKERS"]) == 3


def test_the_environment_file_is_root_tutormax_0640(host) -> None:
    f = host.file(ENV_FILE)
    assert (f.user, f.group, f.mode) == ("root", "tutormax", 0o640)
    assert host.file("/etc/tutormax").mode & 0o007 == 0


def test_the_environment_file_names_every_postgres_member_the_sentinels_and_this_instance(host) -> None:
    env = env_file(host)
    # Every Patroni member, the first deployment's leader first: libpq finds the leader for writes
    # and a replica for reads, so a failover changes nothing here.
    members = re.escape(",".join(f"{address(host, f'cluster-pg{n}')}:5432" for n in (1, 2, 3)))
    assert re.fullmatch(
        rf"postgresql://tutormax:[^@]+@{members}/tutormax\?target_session_attrs=read-write", env["DATABASE_URL"]
    )
    assert re.fullmatch(
        rf"postgresql://tutormax:[^@]+@{members}/tutormax\?target_session_attrs=standby", env["DATABASE_READ_URL"]
    )
    sentinels = env["REDIS_SENTINELS"].split(",")
    assert sorted(sentinels) == sorted(f"{address(host, f'cluster-redis{n}')}:26379" for n in (1, 2, 3))
    assert env["REDIS_USERNAME"] == "tutormax"
    assert env["REDIS_PASSWORD"] == SECRETS["vault_redis_app_password"]
    assert env["REDIS_SENTINEL_PASSWORD"] == SECRETS["vault_redis_sentinel_password"]
    assert env["API_INSTANCE_ID"] == host.backend.get_hostname()
    assert env["WORKERS"] == "2"
    # The scenario's host_vars of the Celery hosts (the drill's statement timeout), whichever of the
    # api and celery roles wrote the file last on a host that runs both.
    expected = "120000" if host.backend.get_hostname() in CELERY_HOSTS else None
    assert env.get("DATABASE_STATEMENT_TIMEOUT_MS") == expected


@pytest.mark.parametrize("label", RUNS)
def test_no_secret_appears_in_the_output_of_a_deployment(label: str) -> None:
    output = run_output(label)
    # The run did touch the secrets: it ran the migrations with the database URL, and rewrote the
    # environment file on every API host (WORKERS, two lines below the Redis passwords).
    assert "Apply the database migrations of release" in output
    for api_host in API_HOSTS:
        assert ENV_TASK in changed_tasks(output, api_host), f"{label} did not rewrite {ENV_FILE} on {api_host}"
    leaked = sorted(name for name, value in SECRETS.items() if value in output)
    assert not leaked, f"secrets {leaked} appear in the output of {label}"


def test_the_migrations_are_at_head() -> None:
    host = testinfra.get_host(f"ansible://{API_HOSTS[0]}", ansible_inventory=INVENTORY)
    head = host.check_output(f"DATABASE_URL=postgresql://unused {ROOT}/current/bin/tutormax-migrate heads")
    current = host.run(
        f"runuser -u tutormax -- bash -c 'set -a; . {ENV_FILE}; exec {ROOT}/current/bin/tutormax-migrate current'"
    )
    assert current.rc == 0, current.stderr
    assert head.split()[0] + " (head)" in current.stdout + current.stderr


def test_the_second_version_was_installed_beside_the_first_and_went_live(host) -> None:
    first, second = snapshots(host)["first"], snapshots(host)["second"]
    assert first["current"] == FIRST
    assert first["health"]["version"] == FIRST
    assert second["current"] == SECOND
    assert second["health"]["version"] == SECOND
    assert second["health"]["instance_id"] == host.backend.get_hostname()
    # The first release is still there, untouched (not reinstalled).
    assert second["installed"][FIRST] == first["installed"][FIRST]
    assert second["main_pid"] != first["main_pid"]
    # The run's app_release_workers (3) reached gunicorn: the environment file changed, the API restarted.
    assert (first["workers"], second["workers"]) == (2, 3)


def test_both_releases_share_one_dependency_layer_and_hold_the_app_alone(host) -> None:
    layers = {v: host.file(f"{ROOT}/releases/{v}/deps").linked_to for v in (FIRST, SECOND)}
    assert layers[FIRST] == layers[SECOND], f"the second release installed its dependencies again: {layers}"
    layer = layers[FIRST]
    name = host.backend.get_hostname()
    deployed = results(run_output(f"deploy-{SECOND}"), name)
    changed = [task for task, status, _ in deployed if status == "changed"]
    # side_effect_api.yml left an orphan layer before deploying the second version; that deploy's
    # switch (tutormax.cluster.release_switch with keep) pruned it and kept the shared one.
    assert host.file(f"{ROOT}/deps").listdir() == [layer.rsplit("/", 1)[1]]
    switched = [text for task, status, text in deployed if task == SWITCH_TASK and status == "changed"]
    assert len(switched) == 1, switched
    assert ORPHAN_LAYER in switched[0], switched
    # The layer was there: the second release came without the wheelhouse and installed one package.
    assert "Unpack the lock's wheelhouse" not in changed
    # uv came once, with the first release, and is not part of a release.
    assert "Copy the uv binary" not in changed
    assert host.file(f"{ROOT}/tools").listdir() == ["uv-0.13.9"]
    assert host.file(f"{ROOT}/tools/uv-0.13.9/uv").mode == 0o755
    assert not host.file(f"{ROOT}/releases/{SECOND}/bin/uv").exists
    assert "Install the app offline into the release (its dependencies are the layer's)" in changed
    assert host.file(f"{layer}/.installed").exists
    site = "lib/python3.11/site-packages"
    pth = host.file(f"{ROOT}/releases/{SECOND}/{site}/tutormax-deps.pth").content_string.strip()
    assert pth == f"{layer}/{site}"
    assert host.file(f"{layer}/{site}/fastapi").is_directory
    assert not host.file(f"{ROOT}/releases/{SECOND}/{site}/fastapi").exists, "a dependency inside the release"
    # Compiled as root once, so the service user (who cannot write there) never compiles at start.
    assert host.file(f"{layer}/{site}/fastapi/__pycache__").is_directory
    # The running API is the release's interpreter, with the layer on its path.
    pid = host.check_output("systemctl show --property=MainPID --value tutormax-api")
    argv0 = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/cmdline | head -n1")
    assert argv0 == host.file(f"{ROOT}/current").linked_to + "/bin/python"


def test_switching_back_is_a_link_switch_and_a_restart_without_reinstalling(host) -> None:
    second, back = snapshots(host)["second"], snapshots(host)["back"]
    assert back["current"] == FIRST
    assert back["health"]["version"] == FIRST
    assert back["main_pid"] != second["main_pid"]
    assert back["installed"] == second["installed"], "a release was installed again"
    assert host.file(f"{ROOT}/releases/{SECOND}/.installed").exists, "the other release is kept"
    assert back["workers"] == 2
    changed = changed_tasks(run_output(f"back-to-{FIRST}"), host.backend.get_hostname())
    # The link moved, the check that follows found the API on the other release, the rolling restart
    # restarted it (once, drained); the environment file went back to the inventory's WORKERS.
    # Nothing else.
    assert sorted(changed) == sorted([ENV_TASK, SWITCH_TASK, STALE_TASK, ROLLING_TASK])


def test_the_api_deployments_restart_the_api_and_leave_the_worker_on_a_shared_host() -> None:
    # The topology keeps the case: an API host that also runs a Celery worker (molecule.yml).
    shared = sorted(set(API_HOSTS) & set(CELERY_HOSTS))
    assert shared, "no API host runs a Celery worker"
    for name in shared:
        snaps = SIDE_EFFECT["hosts"][name]
        # The worker kept its process and its release through both deployments of the API alone
        # (the api role's stale check names only tutormax-api), and runs the live release again.
        assert {snaps[s]["worker_main_pid"] for s in ("first", "second", "back")} == {snaps["first"]["worker_main_pid"]}
        assert snaps["first"]["worker_main_pid"] > 0
        assert {snaps[s]["worker_release"] for s in ("first", "second", "back")} == {FIRST}
        for label in RUNS:
            changed = changed_tasks(run_output(label), name)
            assert ROLLING_TASK in changed, (label, changed)
            assert not any("Celery" in task for task in changed), (label, changed)


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
