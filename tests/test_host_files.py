"""tutormax.cluster.host_files: several directories and files of a host in one call, without a host.

The module runs by ansible-playbook on localhost against a temporary directory: it creates what is
missing, rewrites what differs (content, owner, mode) and nothing else, reports the paths it changed
for the handlers, shows a diff, changes nothing in check mode, refuses a file its validate command
rejects (the old file stays), and names a bad argument.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_task

OWNER = pwd.getpwuid(os.geteuid()).pw_name
GROUP = grp.getgrgid(os.getegid()).gr_name


def run(tmp_path: Path, args: dict[str, Any], *flags: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    return run_task(tmp_path, {"tutormax.cluster.host_files": args}, *flags)


def spec(tmp_path: Path, text: str = "a = 1\n", mode: str = "0644") -> dict[str, Any]:
    return {
        "directories": [{"path": str(tmp_path / "etc" / "conf.d"), "owner": OWNER, "group": GROUP, "mode": "0750"}],
        "files": [
            {"path": str(tmp_path / "etc" / "conf.d" / "a.conf"), "content": text, "owner": OWNER, "group": GROUP,
             "mode": mode},
            {"path": str(tmp_path / "etc" / "b.conf"), "content": "b\n", "owner": OWNER, "group": GROUP,
             "mode": "0600"},
        ],
    }  # fmt: skip


def test_creates_what_is_missing_then_changes_nothing(tmp_path: Path) -> None:
    proc, first = run(tmp_path, spec(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:]
    directory, a, b = (str(tmp_path / p) for p in ("etc/conf.d", "etc/conf.d/a.conf", "etc/b.conf"))
    assert first["changed"] is True
    assert first["changed_paths"] == [directory, a, b]
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o750
    assert Path(a).read_text() == "a = 1\n"
    assert stat.S_IMODE(os.stat(b).st_mode) == 0o600
    proc, second = run(tmp_path, spec(tmp_path))
    assert second["changed"] is False
    assert second["changed_paths"] == []


def test_rewrites_only_what_differs_and_says_what(tmp_path: Path) -> None:
    run(tmp_path, spec(tmp_path))
    os.chmod(tmp_path / "etc" / "b.conf", 0o644)
    proc, result = run(tmp_path, spec(tmp_path, text="a = 2\n"), "--diff")
    assert proc.returncode == 0
    assert result["changes"] == {
        str(tmp_path / "etc/conf.d/a.conf"): ["content"],
        str(tmp_path / "etc/b.conf"): ["mode"],
    }
    assert stat.S_IMODE(os.stat(tmp_path / "etc" / "b.conf").st_mode) == 0o600
    diff = json.dumps(result["diff"])
    assert "a = 1" in diff
    assert "a = 2" in diff


def test_check_mode_changes_nothing_and_reports_the_same(tmp_path: Path) -> None:
    proc, result = run(tmp_path, spec(tmp_path), "--check", "--diff")
    assert proc.returncode == 0
    assert result["changed"] is True
    assert len(result["changed_paths"]) == 3
    assert not (tmp_path / "etc").exists()


def test_validate_refusal_keeps_the_old_file(tmp_path: Path) -> None:
    run(tmp_path, spec(tmp_path))
    refused = spec(tmp_path, text="broken\n")
    refused["files"][0]["validate"] = "grep -q '=' %s"
    proc, result = run(tmp_path, refused)
    assert proc.returncode != 0
    assert "validate" in result["msg"]
    assert "a.conf" in result["msg"]
    assert (tmp_path / "etc/conf.d/a.conf").read_text() == "a = 1\n"
    assert [p.name for p in (tmp_path / "etc/conf.d").iterdir()] == ["a.conf"], "a temporary file stayed behind"
    accepted = spec(tmp_path, text="a = 3\n")
    accepted["files"][0]["validate"] = "grep -q '=' %s"
    proc, result = run(tmp_path, accepted)
    assert proc.returncode == 0
    assert (tmp_path / "etc/conf.d/a.conf").read_text() == "a = 3\n"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s["files"][0].update(mode="644x"), "files[0].mode"),
        (lambda s: s["files"][1].update(path="relative/b.conf"), "files[1].path"),
        (lambda s: s["files"].append(dict(s["files"][0])), "given twice"),
        (lambda s: s["files"][0].update(validate="true"), "files[0].validate"),
        (lambda s: s["directories"][0].update(owner="no-such-user-here"), "no-such-user-here"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, change: Any, named: str) -> None:  # noqa: ANN401
    args = spec(tmp_path)
    change(args)
    proc, result = run(tmp_path, args)
    assert proc.returncode != 0
    assert named in result["msg"]
