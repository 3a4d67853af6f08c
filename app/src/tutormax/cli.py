"""Console entry points: ``tutormax-api``, ``tutormax-worker``, ``tutormax-beat``, ``tutormax-migrate``.

Each reads its configuration from the environment first and exits with status 2 and one line
naming the bad setting when it is not usable. Extra arguments go to gunicorn, ``celery worker``,
``celery beat`` and alembic respectively.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

from tutormax.settings import Settings, SettingsError, load_settings


def _settings_or_exit(prog: str) -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        raise SystemExit(2) from None


def api(argv: list[str] | None = None) -> None:
    """Serve the API with gunicorn and WORKERS uvicorn workers (see tutormax.gunicorn_conf)."""
    _settings_or_exit("tutormax-api")
    from gunicorn.app.wsgiapp import WSGIApplication

    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["tutormax-api", "--config", "python:tutormax.gunicorn_conf", *args]
    WSGIApplication("%(prog)s [OPTIONS]").run()


def worker(argv: list[str] | None = None) -> None:
    """Run a Celery worker (prefork, CELERY_WORKER_CONCURRENCY processes), serving its Prometheus
    metrics when WORKER_METRICS_PORT is set (tutormax.worker.observability)."""
    settings = _settings_or_exit("tutormax-worker")
    # prometheus_client picks its storage when first imported (with the app, below): a worker that
    # serves metrics needs a multiprocess directory by then, or its server would never see what the
    # pool's children count. The unit gives each instance one; otherwise a temporary one.
    if settings.worker_metrics_port is not None and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tutormax-worker-prometheus-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    from tutormax.worker.app import app

    args = sys.argv[1:] if argv is None else argv
    app.worker_main(
        ["worker", "--loglevel", settings.log_level, "--hostname", f"tutormax@{settings.api_instance_id}", *args]
    )


def beat(argv: list[str] | None = None) -> None:
    """Run Celery beat with the schedule. Any number may run: the one holding RedBeat's lock in
    Redis schedules, the others wait to take it over (tutormax.data.taskqueue.beat_config)."""
    settings = _settings_or_exit("tutormax-beat")
    from celery.signals import before_task_publish

    from tutormax.worker.app import app
    from tutormax.worker.schedule import mark_beat_messages

    before_task_publish.connect(mark_beat_messages(settings.api_instance_id), weak=False)

    args = sys.argv[1:] if argv is None else argv
    app.start(["beat", "--loglevel", settings.log_level, "--schedule", settings.celery_beat_schedule_file, *args])


def migrate(argv: list[str] | None = None) -> None:
    """``alembic upgrade head`` (or the alembic command given) with only DATABASE_URL needed.

    ``--database-url-stdin`` first reads DATABASE_URL from the first line of standard input instead
    of the environment: how the deployment passes it, since an environment given through sudo is
    logged with the command line, and a command line is visible to every local user.
    """
    from alembic.config import CommandLine

    from tutormax.migrations import INI

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--database-url-stdin"]:
        args = args[1:]
        os.environ["DATABASE_URL"] = sys.stdin.readline().strip()
    if not os.environ.get("DATABASE_URL", "").strip():
        sys.stderr.write("tutormax-migrate: invalid configuration: DATABASE_URL: is required but not set\n")
        raise SystemExit(2)
    CommandLine(prog="tutormax-migrate").main(argv=["--config", INI, *(args or ["upgrade", "head"])])


COMMANDS = {"api": api, "worker": worker, "beat": beat, "migrate": migrate}


def main() -> None:
    """``python -m tutormax COMMAND [ARGS]``."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.stderr.write(f"usage: python -m tutormax {{{','.join(COMMANDS)}}} [ARGS...]\n")
        raise SystemExit(2)
    COMMANDS[sys.argv[1]](sys.argv[2:])
