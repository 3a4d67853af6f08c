"""gunicorn configuration for ``tutormax-api``: uvicorn workers, everything else from the settings.

Loaded by gunicorn in the master process before any worker starts, so a bad environment stops
start-up here, with one message naming the setting.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tutormax.settings import SettingsError, load_settings

try:
    _settings = load_settings()
except SettingsError as exc:
    sys.stderr.write(f"tutormax-api: {exc}\n")
    sys.exit(2)

# prometheus_client picks its storage when first imported, in each worker after the fork: the
# directory must be in the environment before that.
_created_metrics_dir: str | None = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    if _settings.prometheus_multiproc_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _settings.prometheus_multiproc_dir
    else:
        _created_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tutormax-prometheus-")

wsgi_app = "tutormax.api.app:create_app()"
worker_class = "uvicorn_worker.UvicornWorker"
bind = [_settings.bind]
workers = _settings.workers
graceful_timeout = _settings.graceful_timeout
timeout = 30
keepalive = 5
forwarded_allow_ips = _settings.forwarded_allow_ips
proc_name = "tutormax-api"
errorlog = "-"
accesslog = None
loglevel = _settings.log_level.lower()


def on_starting(server: Any) -> None:
    """Start with an empty metrics directory: samples of dead processes from an earlier run would add up."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """Remove the metrics directory if this process made it (a temporary one)."""
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
