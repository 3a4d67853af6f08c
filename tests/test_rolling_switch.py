"""The one-call steps of a host's drain window, without a cluster.

rolling_update_probe.py switch (staged configuration into place, `current` moved, restart, health
gate) and the nginx_lb role's nginx_lb_upstreams.py (upstreams written, nginx -t, reload, wait),
each against fake systemctl/nginx commands and a local HTTP server standing in for /health and
/ping. The same steps on real hosts, under load: the cluster scenario's rolling-update test.
"""

from __future__ import annotations

import base64
import grp
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, JsonHandler, load_module, serving

probe = load_module("rolling_update_probe", REPO / "playbooks" / "files" / "rolling_update_probe.py")
upstreams = load_module("nginx_lb_upstreams", REPO / "roles" / "nginx_lb" / "files" / "nginx_lb_upstreams.py")


class Answer(JsonHandler):
    """/health with the version and instance the test sets; /ping 200."""

    version = "1.0.1"
    instance = "api1"
    asks = 0

    def do_GET(self) -> None:
        Answer.asks += 1
        self.send_json(200, {"status": "healthy", "version": Answer.version, "instance_id": Answer.instance})


@pytest.fixture
def server() -> Iterator[int]:
    Answer.version, Answer.instance, Answer.asks = "1.0.1", "api1", 0
    with serving(Answer) as port:
        yield port


def fake_command(path: Path, log: Path, rc: int = 0, stderr: str = "") -> Path:
    path.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> {log}\necho "{stderr}" >&2\nexit {rc}\n')
    path.chmod(0o755)
    return path


# ------------------------------------------------------------------------------------ the switch
@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A host as the STAGE phase leaves it: 1.0.0 live, 1.0.1 installed, its configuration staged."""
    root, staged, etc, log = tmp_path / "opt", tmp_path / "staged", tmp_path / "etc", tmp_path / "systemctl.log"
    for version in ("1.0.0", "1.0.1"):
        (root / "releases" / version).mkdir(parents=True)
        (root / "releases" / version / ".installed").touch()
    (root / "current").symlink_to(root / "releases" / "1.0.0")
    (etc / "systemd" / "system").mkdir(parents=True)
    staged.mkdir()
    live = {
        "tutormax.env": etc / "tutormax.env",
        "tutormax-api.service": etc / "systemd" / "system" / "tutormax-api.service",
        "tutormax-api.service.d-10-hardening.conf": etc / "systemd" / "system" / "tutormax-api.service.d" / "10.conf",
    }
    live["tutormax.env"].write_text("LOG_LEVEL=info\n")
    live["tutormax.env"].chmod(0o640)
    live["tutormax-api.service"].write_text("[Service]\n")
    (staged / "tutormax.env").write_text("LOG_LEVEL=debug\n")
    (staged / "tutormax.env").chmod(0o640)
    (staged / "tutormax-api.service").write_text("[Service]\n")
    (staged / "tutormax-api.service").chmod(live["tutormax-api.service"].stat().st_mode & 0o7777)
    (staged / "tutormax-api.service.d-10-hardening.conf").write_text("[Service]\nNoNewPrivileges=yes\n")
    monkeypatch.setattr(probe, "SYSTEMCTL", str(fake_command(tmp_path / "systemctl", log)))
    return {"root": root, "staged": staged, "log": log, **{k: v for k, v in live.items()}}


def run_switch(
    host: dict[str, Path], port: int, version: str = "1.0.1", retries: int = 3
) -> tuple[int, dict[str, object]]:
    files = [
        f"{name}={host[name]}"
        for name in ("tutormax.env", "tutormax-api.service", "tutormax-api.service.d-10-hardening.conf")
    ]
    group = grp.getgrgid(os.getegid()).gr_name
    args = [str(host["root"]), version, group, "tutormax-api.service", str(port), "api1", str(retries), "0.05"]
    rc, result = probe.switch([*args, str(host["staged"]), *files])
    return int(rc), dict(result)


def test_switch_moves_staged_files_and_current_restarts_and_passes_the_gate(host: dict[str, Path], server: int) -> None:
    rc, result = run_switch(host, server)
    assert rc == 0, result
    assert result["ok"] is True
    assert os.readlink(host["root"] / "current") == str(host["root"] / "releases" / "1.0.1")
    assert host["tutormax.env"].read_text() == "LOG_LEVEL=debug\n"
    assert stat.S_IMODE(host["tutormax.env"].stat().st_mode) == 0o640  # the staged file's mode, kept
    assert host["tutormax-api.service.d-10-hardening.conf"].read_text().endswith("NoNewPrivileges=yes\n")
    # The unit did not change: it is not in the list, but the new drop-in is, so systemd reloads.
    changed = result["changed_files"]
    assert isinstance(changed, list)
    assert sorted(changed) == sorted([str(host["tutormax.env"]), str(host["tutormax-api.service.d-10-hardening.conf"])])
    assert host["log"].read_text().splitlines() == ["systemctl daemon-reload", "systemctl restart tutormax-api.service"]
    assert list(host["staged"].iterdir()) == []


def test_switch_without_a_changed_unit_file_does_not_reload_systemd(host: dict[str, Path], server: int) -> None:
    (host["staged"] / "tutormax-api.service.d-10-hardening.conf").unlink()
    rc, result = run_switch(host, server)
    assert rc == 0, result
    assert result["changed_files"] == [str(host["tutormax.env"])]
    assert host["log"].read_text().splitlines() == ["systemctl restart tutormax-api.service"]


def test_switch_fails_the_health_gate_when_the_old_version_answers(host: dict[str, Path], server: int) -> None:
    Answer.version = "1.0.0"
    rc, result = run_switch(host, server, retries=4)
    assert rc == 1
    assert result["ok"] is False
    assert "health gate" in str(result["msg"])
    assert "1.0.0" in str(result["msg"])
    assert Answer.asks == 4


def test_switch_fails_the_health_gate_when_another_instance_answers(host: dict[str, Path], server: int) -> None:
    Answer.instance = "api2"
    rc, result = run_switch(host, server, retries=2)
    assert rc == 1
    assert "api2" in str(result["msg"])


def test_switch_refuses_a_release_not_installed_and_restarts_nothing(host: dict[str, Path], server: int) -> None:
    rc, result = run_switch(host, server, version="9.9.9")
    assert rc == 1
    assert "not installed" in str(result["msg"])
    assert os.readlink(host["root"] / "current") == str(host["root"] / "releases" / "1.0.0")
    assert "restart" not in (host["log"].read_text() if host["log"].exists() else "")


# ------------------------------------------------------------------------------------ nginx upstreams
@pytest.fixture
def lb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "commands.log"
    bin_dir.mkdir()
    fake_command(bin_dir / "nginx", log)
    fake_command(bin_dir / "systemctl", log)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    dest = tmp_path / "tutormax-upstreams.conf"
    dest.write_text("upstream tutormax_api { server 10.0.0.1:8000; }\n")
    dest.chmod(0o644)
    return {"dest": dest, "log": log, "bin": bin_dir}


def test_upstreams_unchanged_touch_nothing(lb: dict[str, Path], server: int) -> None:
    rc, result = upstreams.apply(lb["dest"], lb["dest"].read_bytes(), server)
    assert (rc, result["changed"], result["reloaded"]) == (0, False, False)
    assert not lb["log"].exists()


def test_upstreams_changed_are_written_checked_and_reloaded(lb: dict[str, Path], server: int) -> None:
    new = b"upstream tutormax_api { server 10.0.0.1:8000 down; }\n"
    rc, result = upstreams.apply(lb["dest"], new, server)
    assert (rc, result["changed"], result["reloaded"]) == (0, True, True), result
    assert lb["dest"].read_bytes() == new
    assert stat.S_IMODE(lb["dest"].stat().st_mode) == 0o644
    assert lb["log"].read_text().splitlines() == ["nginx -t -q", "systemctl reload nginx"]
    assert Answer.asks >= 1  # waited for /ping
    assert [p.name for p in lb["dest"].parent.iterdir() if "tutormax-new" in p.name] == []


def test_upstreams_refused_by_nginx_put_the_previous_file_back_unreloaded(lb: dict[str, Path], server: int) -> None:
    fake_command(lb["bin"] / "nginx", lb["log"], rc=1, stderr="invalid parameter")
    before = lb["dest"].read_bytes()
    rc, result = upstreams.apply(lb["dest"], b"upstream broken {\n", server)
    assert rc == 1
    assert "refused" in str(result["msg"])
    assert "invalid parameter" in str(result["msg"])
    assert lb["dest"].read_bytes() == before
    assert "reload" not in lb["log"].read_text()


def test_upstreams_check_mode_only_tells(lb: dict[str, Path], server: int) -> None:
    before = lb["dest"].read_bytes()
    assert upstreams.main(["--check", str(lb["dest"]), base64.b64encode(b"x\n").decode(), str(server)]) == 0
    assert lb["dest"].read_bytes() == before
    assert not lb["log"].exists()


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
    assert probe.release_of("/opt/tutormax/", cmdline) == expected
