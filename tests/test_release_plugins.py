"""What a host runs and how it switches releases, without a cluster.

module_utils/release.py (shared by the modules), the modules release_info and release_switch run by
ansible-playbook on localhost against a release tree in a temporary directory (a fake systemctl
and journalctl first on PATH, a stand-in HTTP server for /health, a real process whose interpreter
is a release's bin/python), in normal mode, check mode and with --diff, and their refusal of bad
arguments. The same modules on real hosts under load: the cluster scenario's rolling-update test.
"""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import JsonHandler, collection_import, run_task, serving

release = collection_import("plugins.module_utils.release")
# As root the switch gives the link and the release this group: one other than root's own, so a
# link left root:root shows.
GROUP = "nogroup" if os.geteuid() == 0 else grp.getgrgid(os.getegid()).gr_name
GID = grp.getgrnam(GROUP).gr_gid


# ------------------------------------------------------------------------------------ fixtures
class Answer(JsonHandler):
    """/health with the version and instance the test sets (a 503 when status is set so)."""

    version = "1.0.1"
    instance = "api1"
    status = 200
    asks = 0

    def do_GET(self) -> None:
        Answer.asks += 1
        self.send_json(Answer.status, {"status": "healthy", "version": Answer.version, "instance_id": Answer.instance})


@pytest.fixture
def health() -> Iterator[int]:
    Answer.version, Answer.instance, Answer.status, Answer.asks = "1.0.1", "api1", 200, 0
    with serving(Answer) as port:
        yield port


def make_release(root: Path, version: str, layer: str | None = None) -> Path:
    """ROOT/releases/VERSION as install.yml leaves it (bin/python, .installed, the deps link)."""
    directory = root / "releases" / version
    (directory / "bin").mkdir(parents=True)
    (directory / "bin" / "python").symlink_to(sys.executable)
    (directory / ".installed").write_text(f"{version}\n")
    if layer:
        (root / "deps" / layer).mkdir(parents=True, exist_ok=True)
        (directory / "deps").symlink_to(root / "deps" / layer)
    return directory


@pytest.fixture
def host(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A host as the STAGE phase leaves it: 1.0.0 live and running, 1.0.1 installed, its
    configuration staged; fake systemctl (a unit whose main process is a real process of the live
    release) and journalctl log what they are asked."""
    root, staged, etc, bin_dir = tmp_path / "opt", tmp_path / "staged", tmp_path / "etc", tmp_path / "bin"
    for directory in (staged, etc / "systemd" / "system", bin_dir):
        directory.mkdir(parents=True)
    make_release(root, "1.0.0", "aaaa-py3.11")
    make_release(root, "1.0.1", "aaaa-py3.11")
    (root / "current").symlink_to(root / "releases" / "1.0.0")
    if os.geteuid() == 0:  # as app_release leaves them: link and releases root:GROUP
        os.chown(root / "current", 0, GID, follow_symlinks=False)
        for version in ("1.0.0", "1.0.1"):
            os.chown(root / "releases" / version, 0, GID)
    env_file, unit = etc / "tutormax.env", etc / "systemd" / "system" / "tutormax-api.service"
    env_file.write_text("LOG_LEVEL=INFO\nDATABASE_URL=postgresql://tutormax:hunter2-secret@db/tutormax\n")
    env_file.chmod(0o640)
    unit.write_text("[Service]\n")
    (staged / release.staged_name(str(env_file))).write_text(
        "LOG_LEVEL=DEBUG\nDATABASE_URL=postgresql://x:s3cr3t@db/t\n"
    )
    (staged / release.staged_name(str(env_file))).chmod(0o640)
    (staged / release.staged_name(str(unit))).write_text("[Service]\n")
    (staged / release.staged_name(str(unit))).chmod(unit.stat().st_mode & 0o7777)
    dropin = etc / "systemd" / "system" / "tutormax-api.service.d" / "10-hardening.conf"
    (staged / release.staged_name(str(dropin))).write_text("[Service]\nNoNewPrivileges=yes\n")
    process = subprocess.Popen(
        [str(root / "releases" / "1.0.0" / "bin" / "python"), "-c", "import time; time.sleep(60)"]
    )
    log = tmp_path / "calls.log"
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\n"
        f'echo "systemctl $*" >> {log}\n'
        'case "$1" in show) echo "MainPID=${FAKE_PID:-' + str(process.pid) + '}"; echo "ActiveState=active";; '
        'restart) [ -z "$FAKE_RESTART_FAILS" ] || { echo "Job failed" >&2; exit 1; };; esac\n'
    )
    (bin_dir / "journalctl").write_text(
        f'#!/bin/sh\necho "journalctl $*" >> {log}\necho "CACHE_TTL_SECONDS: refused"\n'
    )
    for tool in ("systemctl", "journalctl"):
        (bin_dir / tool).chmod(0o755)
    try:
        yield {
            "tmp": tmp_path,
            "root": root,
            "staged": staged,
            "env_file": env_file,
            "unit": unit,
            "dropin": dropin,
            "log": log,
            "path": f"{bin_dir}:{os.environ['PATH']}",
            "pid": process.pid,
        }
    finally:
        process.kill()
        process.wait()


def run_module(
    host: dict[str, Any], module: str, args: dict[str, Any], *flags: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One task of ``module`` on localhost, the fake systemctl and journalctl first on PATH."""
    environment = {"PATH": host["path"], **(env or {})}
    return run_task(host["tmp"], {f"tutormax.cluster.{module}": args}, *flags, environment=environment)


def switch_args(host: dict[str, Any], port: int, **more: Any) -> dict[str, Any]:  # noqa: ANN401
    return {
        "root": str(host["root"]),
        "version": "1.0.1",
        "group": GROUP,
        "staged_dir": str(host["staged"]),
        "hidden_files": [str(host["env_file"])],
        "units": ["tutormax-api.service"],
        "restart": "always",
        "health": {"port": port, "instance": "api1", "retries": 3, "delay": 0.05},
        **more,
    }


# ------------------------------------------------------------------------------------ module_utils
@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (b"/opt/tutormax/releases/1.0.1/bin/python\0/opt/tutormax/current/bin/tutormax-api\0", "1.0.1"),
        (b"/opt/tutormax/releases/2.0.0rc1/bin/python3\0-m\0x\0", "2.0.0rc1"),
        (b"/opt/tutormax/deps/0123abcd-py3.11/bin/python\0", None),
        (b"/usr/bin/python3\0/opt/tutormax/releases/1.0.1/bin/tutormax-api\0", None),
        (b"/opt/tutormax/releases/1.0.1/lib/x.so\0", None),
        (b"", None),
    ],
)
def test_release_of_reads_the_release_from_the_interpreter_path(cmdline: bytes, expected: str | None) -> None:
    assert release.release_of("/opt/tutormax/", cmdline) == expected


def test_versions_sort_as_numbers_not_as_text() -> None:
    assert release.sort_versions(["1.0.10", "1.0.9", "1.10.0", "1.2.0", "1.0.9rc1"]) == [
        "1.0.9",
        "1.0.9rc1",
        "1.0.10",
        "1.2.0",
        "1.10.0",
    ]


@pytest.mark.parametrize(
    ("releases", "live", "keep", "removed"),
    [
        (["1.0.0", "1.0.1", "1.0.2", "1.0.3"], "1.0.3", 3, ["1.0.0"]),
        (["1.0.0", "1.0.1", "1.0.2", "1.0.3"], "1.0.1", 3, ["1.0.0"]),  # going back: the newest others stay
        (["1.0.0", "1.0.1", "1.0.2", "1.0.10"], "1.0.10", 2, ["1.0.0", "1.0.1"]),
        (["1.0.0"], "1.0.0", 2, []),
    ],
)
def test_prune_plan_keeps_the_live_release_and_the_newest_others(
    releases: list[str], live: str, keep: int, removed: list[str]
) -> None:
    assert release.prune_plan(releases, live, keep) == removed


def test_prune_removes_old_releases_and_the_layers_no_kept_release_links_to(tmp_path: Path) -> None:
    root = tmp_path / "opt"
    make_release(root, "1.0.0", "old-py3.11")
    make_release(root, "1.0.1", "new-py3.11")
    make_release(root, "1.0.2", "new-py3.11")
    (root / "releases" / "1.0.3.unpack").mkdir()  # an install in progress is never a release
    (root / "deps" / "orphan-py3.11").mkdir()
    planned = release.prune(str(root), "1.0.2", 2, check=True)
    assert planned == {
        "releases": [f"{root}/releases/1.0.0"],
        "layers": [str(root / "deps" / "old-py3.11"), str(root / "deps" / "orphan-py3.11")],
    }
    assert (root / "releases" / "1.0.0").exists(), "check=True removed something"
    assert release.prune(str(root), "1.0.2", 2) == planned
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["1.0.1", "1.0.2", "1.0.3.unpack"]
    assert sorted(p.name for p in (root / "deps").iterdir()) == ["new-py3.11"]


@pytest.mark.parametrize(
    "live",
    ["/etc/tutormax/tutormax.env", "/etc/systemd/system/tutormax-worker@.service.d/10-hardening.conf", "/a/50%/b"],
)
def test_staged_names_are_flat_and_say_where_the_file_goes(live: str) -> None:
    name = release.staged_name(live)
    assert "/" not in name
    assert release.live_path(name) == live


@pytest.mark.parametrize("bad", ["relative/path", "/etc/dir/", ""])
def test_staged_name_refuses_what_is_not_an_absolute_file_path(bad: str) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        release.staged_name(bad)


def test_apply_staged_moves_only_what_differs_and_keeps_the_staged_mode(tmp_path: Path) -> None:
    staged, live = tmp_path / "staged", tmp_path / "live"
    staged.mkdir()
    live.mkdir()
    same, changed, new = live / "same.conf", live / "changed.env", live / "sub" / "new.conf"
    same.write_text("x\n")
    changed.write_text("old\n")
    for path, text, mode in (
        (same, "x\n", same.stat().st_mode & 0o7777),
        (changed, "new\n", 0o640),
        (new, "n\n", 0o644),
    ):
        (staged / release.staged_name(str(path))).write_text(text)
        (staged / release.staged_name(str(path))).chmod(mode)
    assert [c["live"] for c in release.staged_changes(staged)] == [str(changed), str(new)]
    assert release.apply_staged(staged) == [str(changed), str(new)]
    assert changed.read_text() == "new\n"
    assert stat.S_IMODE(changed.stat().st_mode) == 0o640
    assert new.read_text() == "n\n"
    assert list(staged.iterdir()) == [], "staged copies stay behind"


def test_point_current_refuses_a_release_that_is_not_installed(tmp_path: Path) -> None:
    (tmp_path / "releases" / "1.0.1").mkdir(parents=True)  # no .installed: a failed install
    with pytest.raises(FileNotFoundError, match="not installed"):
        release.point_current(str(tmp_path), "1.0.1", None)


def test_addresses_of_proc_net_tcp_read_as_text() -> None:
    assert release._address("0100007F") == "127.0.0.1"
    assert release._address("0500120A") == "10.18.0.5"
    assert release._address("0000000000000000FFFF00000500120A") == "10.18.0.5"
    assert release._address("00000000000000000000000001000000") == "::1"


def test_only_established_connections_from_the_load_balancers_count(tmp_path: Path) -> None:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    rows = [
        "0: 0500120A:1F40 0300120A:A001 01 00000000:00000000 00:00000000 00000000 0 0 1",  # lb -> :8000 established
        "1: 0500120A:1F40 0300120A:A002 06 00000000:00000000 00:00000000 00000000 0 0 2",  # lb, TIME_WAIT
        "2: 0500120A:1F40 0900120A:A003 01 00000000:00000000 00:00000000 00000000 0 0 3",  # another peer
        "3: 0500120A:1F41 0300120A:A004 01 00000000:00000000 00:00000000 00000000 0 0 4",  # another port
        "4: 0100007F:1F40 0100007F:A005 01 00000000:00000000 00:00000000 00000000 0 0 5",  # loopback health check
    ]
    table = tmp_path / "tcp"
    table.write_text(header + "\n".join(rows) + "\n")
    assert release.connections(8000, {"10.18.0.3"}, (str(table),)) == ["10.18.0.3:40961"]
    assert release.connections(8000, {"10.18.0.7"}, (str(table),)) == []


def test_wait_idle_returns_when_the_last_connection_closes() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()

    def close() -> None:
        client.close()
        accepted.close()

    threading.Timer(0.6, close).start()
    result = release.wait_idle(port, {"127.0.0.1"}, 5)
    server.close()
    assert result["at_start"] == 1
    assert result["remaining"] == 0
    assert not result["timed_out"]
    assert 0.4 < result["waited_s"] < 3


def test_wait_idle_gives_up_after_its_timeout() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    try:
        result = release.wait_idle(port, {"127.0.0.1"}, 0.5)
    finally:
        client.close()
        accepted.close()
        server.close()
    assert result["timed_out"]
    assert result["remaining"] == 1


@pytest.mark.parametrize(
    ("version", "instance", "status", "passed"),
    [("1.0.1", "api1", 200, True), ("1.0.0", "api1", 200, False), ("1.0.1", "api2", 200, False),
     ("1.0.1", "api1", 503, False)],
)  # fmt: skip
def test_health_gate_needs_200_the_version_and_the_instance(
    health: int, version: str, instance: str, status: int, passed: bool
) -> None:
    Answer.version, Answer.instance, Answer.status = version, instance, status
    ok, asks, answer = release.health_gate(health, "1.0.1", "api1", 3, 0.01)
    assert ok is passed
    assert asks == (1 if passed else 3)
    assert answer["status"] == status


def test_health_of_a_closed_port_is_status_0() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    assert release.health(port, timeout=1)["status"] == 0


# ------------------------------------------------------------------------------------ release_info
def test_release_info_reports_releases_current_units_and_health(host: dict[str, Any], health: int) -> None:
    args = {"root": str(host["root"]), "version": "1.0.1", "units": ["tutormax-api.service"], "health_port": health}
    proc, result = run_module(host, "release_info", args)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert result["changed"] is False
    assert result["installed"] == ["1.0.0", "1.0.1"]
    assert result["version_installed"] is True
    assert result["current"] == "1.0.0"
    assert result["units"]["tutormax-api.service"] == {"active": "active", "pid": host["pid"], "releases": ["1.0.0"]}
    assert result["stale"] == []
    assert result["health"] == {"status": 200, "version": "1.0.1", "instance_id": "api1"}


def test_release_info_names_the_units_that_run_another_release_than_current(host: dict[str, Any]) -> None:
    (host["root"] / "current").unlink()
    (host["root"] / "current").symlink_to(host["root"] / "releases" / "1.0.1")
    proc, result = run_module(host, "release_info", {"root": str(host["root"]), "units": ["tutormax-api.service"]})
    assert proc.returncode == 0
    assert result["stale"] == ["tutormax-api.service"]


def test_release_info_names_the_units_whose_process_runs_another_environment(host: dict[str, Any]) -> None:
    # The fixture's process started with this test's environment; the file names one of its variables.
    args = {"root": str(host["root"]), "units": ["tutormax-api.service"], "env_file": str(host["env_file"])}
    host["env_file"].write_text(f'# managed\nHOME="{os.environ["HOME"]}"\n')
    proc, result = run_module(host, "release_info", args)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert result["stale"] == []
    host["env_file"].write_text("HOME=/elsewhere\nDATABASE_URL=postgresql://tutormax:hunter2-secret@db/tutormax\n")
    proc, result = run_module(host, "release_info", args)
    assert result["stale"] == ["tutormax-api.service"]
    assert "hunter2" not in proc.stdout  # only unit names leave the host
    args["env_file"] = str(host["tmp"] / "missing.env")
    assert run_module(host, "release_info", args)[1]["stale"] == []


def test_env_file_reading_follows_systemd(tmp_path: Path) -> None:
    path = tmp_path / "tutormax.env"
    path.write_text("# comment\n; also\n\nA=1\n B = two words \nC=\"quoted\"\nD='single'\nE=x=y\nbroken line\n")
    expected = {"A": "1", "B": "two words", "C": "quoted", "D": "single", "E": "x=y"}
    assert release.read_env_file(str(path)) == expected
    assert release.read_env_file(str(tmp_path / "missing")) is None
    me = {"pid": os.getpid(), "releases": []}
    assert release.stale_units({"u": me}, "1.0.0", {"PATH": os.environ["PATH"]}) == []
    assert release.stale_units({"u": me}, "1.0.0", {"PATH": "/nowhere"}) == ["u"]


def test_release_info_health_gate_fails_with_the_last_answer(host: dict[str, Any], health: int) -> None:
    Answer.version = "1.0.0"
    gate = {"version": "1.0.1", "instance": "api1", "retries": 2, "delay": 0.01}
    proc, result = run_module(
        host, "release_info", {"root": str(host["root"]), "health_port": health, "health_gate": gate}
    )
    assert proc.returncode != 0
    assert result["failed"] is True
    assert "health gate" in result["msg"]
    assert "1.0.0" in result["msg"]
    assert Answer.asks == 2


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"health_port": 70000}, "health_port"),
        ({"version": "latest"}, "version"),
        ({"health_gate": {"version": "1.0.1", "instance": "api1"}}, "health_gate needs health_port"),
        ({"units": "tutormax-api.service", "bogus": 1}, "bogus"),
    ],
)
def test_release_info_refuses_bad_arguments_and_names_them(
    host: dict[str, Any], args: dict[str, Any], named: str
) -> None:
    proc, result = run_module(host, "release_info", {"root": str(host["root"]), **args})
    assert proc.returncode != 0
    assert named in result["msg"]


# ------------------------------------------------------------------------------------ release_switch
def test_release_switch_moves_files_and_current_restarts_and_passes_the_gate(host: dict[str, Any], health: int) -> None:
    proc, result = run_module(host, "release_switch", switch_args(host, health))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] is True
    assert result["previous"] == "1.0.0"
    assert os.readlink(host["root"] / "current") == str(host["root"] / "releases" / "1.0.1")
    assert host["env_file"].read_text().startswith("LOG_LEVEL=DEBUG")
    assert stat.S_IMODE(host["env_file"].stat().st_mode) == 0o640  # the staged file's mode, kept
    assert host["dropin"].read_text().endswith("NoNewPrivileges=yes\n")
    # The unit did not change; the new drop-in did, so systemd reloads before the restart.
    assert sorted(result["changed_files"]) == sorted([str(host["env_file"]), str(host["dropin"])])
    calls = [c for c in host["log"].read_text().splitlines() if not c.startswith("systemctl show")]
    assert calls == ["systemctl daemon-reload", "systemctl restart tutormax-api.service"]
    assert result["restarted"] == ["tutormax-api.service"]
    assert result["health"]["passed"] is True
    assert list(host["staged"].iterdir()) == []
    # The new link and the release belong to root and the group (what a second run checks).
    link = (host["root"] / "current").lstat()
    assert (link.st_uid, link.st_gid) == (os.geteuid(), GID)
    assert (host["root"] / "releases" / "1.0.1").stat().st_gid == GID


def test_release_switch_in_check_mode_changes_nothing_and_says_what_would(host: dict[str, Any], health: int) -> None:
    proc, result = run_module(host, "release_switch", switch_args(host, health), "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] is True
    assert sorted(result["changed_files"]) == sorted([str(host["env_file"]), str(host["dropin"])])
    assert result["restarted"] == ["tutormax-api.service"]
    assert os.readlink(host["root"] / "current") == str(host["root"] / "releases" / "1.0.0")
    assert host["env_file"].read_text().startswith("LOG_LEVEL=INFO")
    assert len(list(host["staged"].iterdir())) == 3
    assert "restart" not in host["log"].read_text()
    assert Answer.asks == 0, "check mode asked the health gate"
    diff = json.dumps(result["diff"])
    assert "NoNewPrivileges=yes" in diff
    assert f"{host['root']}/releases/1.0.1" in diff
    assert "restart tutormax-api.service" in diff
    # The environment file holds secrets: its content never reaches a diff or the output.
    assert "s3cr3t" not in proc.stdout
    assert "hunter2" not in proc.stdout


def test_release_switch_second_run_changes_nothing(host: dict[str, Any], health: int) -> None:
    args = switch_args(host, health, restart="changed")
    proc, first = run_module(host, "release_switch", args)
    assert proc.returncode == 0
    assert first["changed"] is True
    # The unit's main process now runs 1.0.1 (as systemd would report after the restart).
    process = subprocess.Popen(
        [str(host["root"] / "releases" / "1.0.1" / "bin" / "python"), "-c", "import time; time.sleep(60)"]
    )
    try:
        proc, second = run_module(host, "release_switch", args, env={"FAKE_PID": str(process.pid)})
    finally:
        process.kill()
        process.wait()
    assert proc.returncode == 0
    assert second["changed"] is False
    assert second["restarted"] == []


def test_release_switch_restarts_units_that_still_run_the_previous_release(host: dict[str, Any], health: int) -> None:
    """Nothing to move (a run that died after the switch, before the restart): restart='changed' still restarts."""
    (host["root"] / "current").unlink()
    (host["root"] / "current").symlink_to(host["root"] / "releases" / "1.0.1")
    for staged in host["staged"].iterdir():
        staged.unlink()
    proc, result = run_module(host, "release_switch", switch_args(host, health, restart="changed"))
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert result["restarted"] == ["tutormax-api.service"]


def test_release_switch_fails_the_gate_and_returns_the_journal(host: dict[str, Any], health: int) -> None:
    Answer.version = "1.0.0"
    proc, result = run_module(host, "release_switch", switch_args(host, health))
    assert proc.returncode != 0
    assert result["failed"] is True
    assert "health gate: /health on api1" in result["msg"]
    assert "1.0.0" in result["msg"]
    assert Answer.asks == 3
    assert any("CACHE_TTL_SECONDS" in line for line in result["journal"])


def test_release_switch_fails_when_the_restart_fails(host: dict[str, Any], health: int) -> None:
    proc, result = run_module(host, "release_switch", switch_args(host, health), env={"FAKE_RESTART_FAILS": "1"})
    assert proc.returncode != 0
    assert "systemctl restart tutormax-api.service failed" in result["msg"]
    assert Answer.asks == 0


def test_release_switch_waits_for_connections_from_the_load_balancers(host: dict[str, Any], health: int) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()

    def close() -> None:
        client.close()
        accepted.close()

    threading.Timer(6, close).start()  # after ansible-playbook has started the module
    try:
        args = switch_args(host, health, drain={"port": port, "peers": ["127.0.0.1"], "timeout": 30})
        proc, result = run_module(host, "release_switch", args)
    finally:
        server.close()
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert result["idle"]["at_start"] == 1
    assert result["idle"]["timed_out"] is False
    assert result["idle"]["waited_s"] >= 0.3


def test_release_switch_link_only_and_prune(host: dict[str, Any]) -> None:
    make_release(host["root"], "0.9.0", "old-py3.11")
    args = {"root": str(host["root"]), "version": "1.0.1", "group": GROUP, "restart": "never", "keep": 2}
    proc, checked = run_module(host, "release_switch", args, "--check")
    assert proc.returncode == 0
    assert checked["pruned"] == {
        "releases": [f"{host['root']}/releases/0.9.0"],
        "layers": [f"{host['root']}/deps/old-py3.11"],
    }
    assert (host["root"] / "releases" / "0.9.0").exists()
    proc, result = run_module(host, "release_switch", args)
    assert proc.returncode == 0
    assert result["changed"] is True
    assert result["restarted"] == []
    assert sorted(p.name for p in (host["root"] / "releases").iterdir()) == ["1.0.0", "1.0.1"]
    assert "restart" not in host["log"].read_text() if host["log"].exists() else True
    proc, again = run_module(host, "release_switch", args)
    assert again["changed"] is False


def test_release_switch_in_check_mode_announces_a_release_not_installed_yet(host: dict[str, Any]) -> None:
    args = {"root": str(host["root"]), "version": "2.0.0", "group": GROUP}
    proc, result = run_module(host, "release_switch", args, "--check")
    assert proc.returncode == 0
    assert result["changed"] is True
    proc, result = run_module(host, "release_switch", args)
    assert proc.returncode != 0
    assert "not installed" in result["msg"]
    assert os.readlink(host["root"] / "current") == str(host["root"] / "releases" / "1.0.0")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"version": "latest"}, "version"),
        ({"keep": 1}, "keep"),
        ({"restart": "sometimes"}, "restart"),
        ({"health": {"port": 8000, "instance": "api1", "retries": 0}}, "health.retries"),
        ({"drain": {"port": 8000}}, "peers"),
        ({"group": "no-such-group-here"}, "group"),
    ],
)
def test_release_switch_refuses_bad_arguments_and_names_them(
    host: dict[str, Any], args: dict[str, Any], named: str
) -> None:
    proc, result = run_module(host, "release_switch", {"root": str(host["root"]), "version": "1.0.1", **args})
    assert proc.returncode != 0
    assert named in result["msg"]
    assert os.readlink(host["root"] / "current") == str(host["root"] / "releases" / "1.0.0")
