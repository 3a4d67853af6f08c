"""Migrations: up from an empty database, down and up again, and from an installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg

from conftest import migrate_env, run_migrate
from harness import APP_SRC, Stack

TABLES = {
    "tutors", "tutoring_sessions", "ratings", "daily_metrics", "performance_scores",
    "score_notifications", "churn_models", "exports", "beat_heartbeats",
}  # fmt: skip
#: The newest revision.
HEAD = "0002"


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {str(r[0]) for r in rows}


def _revision(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def test_upgrade_head_from_empty_database_then_downgrade_and_upgrade_again(stack: Stack) -> None:
    url = stack.pg.create_database("migrate_empty")
    assert _tables(url) == set()

    done = run_migrate(url)
    assert done.returncode == 0, done.stderr
    assert _tables(url) == TABLES | {"alembic_version"}
    assert _revision(url) == HEAD

    # Re-running is a no-op.
    assert run_migrate(url).returncode == 0

    done = run_migrate(url, "downgrade", "base")
    assert done.returncode == 0, done.stderr
    assert _tables(url) == {"alembic_version"}
    assert _revision(url) is None

    assert run_migrate(url).returncode == 0
    assert _revision(url) == HEAD


def test_database_url_from_stdin_keeps_it_off_the_command_line_and_the_environment(stack: Stack) -> None:
    # How the deployment runs it (roles/app_release/tasks/migrate.yml): the URL on stdin, none in
    # the environment. Without the option the same environment fails with status 2.
    url = stack.pg.create_database("migrate_stdin")
    env = {k: v for k, v in migrate_env(url).items() if k != "DATABASE_URL"}
    argv = [sys.executable, "-m", "tutormax", "migrate"]
    bare = subprocess.run(argv, env=env, input=url + "\n", capture_output=True, text=True, timeout=120, check=False)
    assert bare.returncode == 2, bare.stderr
    assert "DATABASE_URL" in bare.stderr

    done = subprocess.run(
        [*argv, "--database-url-stdin"], env=env, input=url + "\n", capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _revision(url) == HEAD
    assert url not in done.stdout + done.stderr


def test_wheel_built_as_another_version_installs_and_migrates_with_only_database_url(
    stack: Stack, tmp_path: Path
) -> None:
    # Build the same source as 1.0.1 without touching a file (TUTORMAX_VERSION).
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "dist"), str(APP_SRC.parent)],
        env={**os.environ, "TUTORMAX_VERSION": "1.0.1"},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    wheels = list((tmp_path / "dist").glob("tutormax-1.0.1-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        assert whl.read("tutormax/VERSION").decode().strip() == "1.0.1"
    assert {"tutormax/migrations/alembic.ini", "tutormax/migrations/env.py"} <= names
    assert any(n.startswith("tutormax/migrations/versions/0001") for n in names)
    assert (APP_SRC / "tutormax" / "VERSION").read_text().strip() == "1.0.0"

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheels[0])],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]

    url = stack.pg.create_database("migrate_wheel")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(target), "DATABASE_URL": url}
    migrate = subprocess.run(
        [str(target / "bin" / "tutormax-migrate")], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    assert _revision(url) == HEAD

    # Plain alembic with the ini shipped inside the installed package works too.
    url2 = stack.pg.create_database("migrate_alembic")
    ini = subprocess.run(
        [sys.executable, "-c", "import tutormax, tutormax.migrations as m; print(tutormax.__version__, m.INI)"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert ini[0] == "1.0.1"
    assert ini[1].startswith(str(target))
    alembic = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", ini[1], "upgrade", "head"],
        env={**env, "DATABASE_URL": url2}, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert alembic.returncode == 0, alembic.stderr[-2000:]
    assert _revision(url2) == HEAD
