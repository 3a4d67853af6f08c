"""pgBackRest's backup ages for the node exporter (roles/exporters/files/pgbackrest-metrics, issue 21):
the newest backup of each type from `pgbackrest info --output=json`, and info_ok 0 when pgBackRest
does not answer or a stanza is not ok. `runuser` is replaced by a script that prints the JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent.parent / "roles" / "exporters" / "files" / "pgbackrest-metrics"


def run(tmp_path: Path, info: Any, exit_code: int = 0) -> tuple[int, str]:  # noqa: ANN401 - JSON
    fake = tmp_path / "bin" / "runuser"
    fake.parent.mkdir()
    (tmp_path / "info.json").write_text(json.dumps(info))
    fake.write_text(f"#!/bin/sh\ncat {tmp_path / 'info.json'}\nexit {exit_code}\n")
    fake.chmod(0o755)
    out = tmp_path / "textfile" / "pgbackrest.prom"
    out.parent.mkdir()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "pgbackrest", str(out)],
        env={**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, out.read_text()


def backup(kind: str, stop: int) -> dict[str, Any]:
    return {"type": kind, "timestamp": {"start": stop - 60, "stop": stop}}


def test_the_newest_backup_of_each_type_is_written(tmp_path: Path) -> None:
    info = [
        {
            "name": "tutormax",
            "status": {"code": 0, "message": "ok"},
            "backup": [backup("full", 1000), backup("diff", 2000), backup("full", 3000), backup("incr", 2500)],
        }
    ]
    rc, text = run(tmp_path, info)
    assert rc == 0
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "tutormax_pgbackrest_info_ok 1",
        'tutormax_pgbackrest_last_backup_timestamp_seconds{stanza="tutormax",type="diff"} 2000',
        'tutormax_pgbackrest_last_backup_timestamp_seconds{stanza="tutormax",type="full"} 3000',
        'tutormax_pgbackrest_last_backup_timestamp_seconds{stanza="tutormax",type="incr"} 2500',
    ]
    assert "# TYPE tutormax_pgbackrest_info_ok gauge" in text
    assert oct((tmp_path / "textfile" / "pgbackrest.prom").stat().st_mode & 0o777) == "0o644"


def test_a_stanza_in_error_or_no_answer_reports_info_not_ok(tmp_path: Path) -> None:
    info = [{"name": "tutormax", "status": {"code": 2, "message": "no valid backups"}, "backup": []}]
    rc, text = run(tmp_path, info)
    assert rc == 1
    assert "tutormax_pgbackrest_info_ok 0" in text
    assert "last_backup_timestamp_seconds{" not in text


def test_pgbackrest_failing_reports_info_not_ok(tmp_path: Path) -> None:
    rc, text = run(tmp_path, "not json", exit_code=1)
    assert rc == 1
    assert "tutormax_pgbackrest_info_ok 0" in text
