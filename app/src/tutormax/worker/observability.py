"""Prometheus metrics of a Celery worker, served over HTTP by its main process.

* ``tutormax_celery_tasks_total{task,state}``: task runs that ended, ``state`` ``succeeded``,
  ``failed`` or ``retried`` (signals task_success, task_failure, task_retry);
* ``tutormax_celery_task_runtime_seconds{task}``: run time of every run, task_prerun to task_postrun;
* ``tutormax_celery_worker_concurrency``: the pool's processes.

Tasks run in the prefork pool's child processes, where those signals fire. prometheus_client's
multiprocess mode (the ``PROMETHEUS_MULTIPROC_DIR`` environment variable, a directory per worker
instance) lets the main process report what every child counted: children write their samples to
files there, the server sums them. Without the variable, metrics stay in each process's memory
(tests, a solo pool); ``tutormax-worker`` makes a temporary directory when it serves metrics and none
is set, since a server in the main process would otherwise never see a child's count.

The server listens on ``Settings.worker_metrics_address`` from the moment the worker is set up
(celeryd_after_setup, in the main process, before the pool starts) until it shuts down
(worker_shutdown). An address it cannot listen on is logged as an error and the worker runs on
without metrics: its scrape target is then down, which alerts, while background work goes on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from celery import signals
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.registry import Collector

from tutormax.settings import Settings

log = logging.getLogger(__name__)

TASKS = Counter("tutormax_celery_tasks_total", "Task runs that ended, by outcome", ["task", "state"])
RUNTIME = Histogram(
    "tutormax_celery_task_runtime_seconds",
    "Run time of a task run",
    ["task"],
    # From the 10 ms heartbeat to the 10 min hard limit of the longest tasks (TIME_LIMITS).
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
#: Created when the worker starts (concurrency_gauge()), after the stale samples are gone: an
#: unlabelled metric writes its sample file as soon as it exists.
_concurrency: Gauge | None = None
#: Start of each running task in this process, by task id.
_started: dict[str, float] = {}
_server: Any = None
_lock = threading.Lock()


def multiprocess_dir() -> Path | None:
    """The multiprocess directory, or None in single-process mode."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(directory) if directory else None


def reset_multiprocess_dir() -> None:
    """Delete the samples of an earlier run (dead processes' counts would add up); create the directory."""
    directory = multiprocess_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def registry() -> Collector:
    """What the server exposes: every process's samples in multiprocess mode, else this process's."""
    if multiprocess_dir() is None:
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
    return collected


def concurrency_gauge() -> Gauge:
    """``tutormax_celery_worker_concurrency``, created on first use (one per process)."""
    global _concurrency
    with _lock:
        if _concurrency is None:
            # Set in the main process only; the pool's children hold a 0 for it (prometheus_client
            # resets every value in a forked process), so "max" reports the main process's value, no pid label.
            _concurrency = Gauge(
                "tutormax_celery_worker_concurrency", "Processes of the worker's pool", multiprocess_mode="max"
            )
        return _concurrency


def start_server(address: tuple[str, int]) -> Any:
    """Serve the metrics on ``address`` in a daemon thread; the server, or None if it cannot listen."""
    host, port = address
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry())
    except OSError as exc:
        log.error(
            "cannot serve the worker's metrics on %s port %d: %s; the worker runs on without them",
            host,
            port,
            exc.strerror or exc,
        )
        return None
    log.info("worker metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", port)
    return server


def stop_server() -> None:
    """Stop serving (worker shutdown)."""
    global _server
    server, _server = _server, None
    if server is not None:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------- receivers
def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or "unknown")


def on_task_prerun(task_id: str | None = None, **_: Any) -> None:
    """A run starts (in the process that runs it)."""
    if task_id is not None:
        _started[task_id] = time.perf_counter()


def on_task_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    """A run ended, whatever its outcome: observe its run time."""
    start = _started.pop(task_id, None) if task_id is not None else None
    if start is not None:
        RUNTIME.labels(_task_name(sender)).observe(time.perf_counter() - start)


def on_task_success(sender: Any = None, **_: Any) -> None:
    """A run succeeded."""
    TASKS.labels(_task_name(sender), "succeeded").inc()


def on_task_failure(sender: Any = None, **_: Any) -> None:
    """A run failed for good (no retry left, or not retryable). The main process sends this for a
    task killed at its hard time limit."""
    TASKS.labels(_task_name(sender), "failed").inc()


def on_task_retry(sender: Any = None, **_: Any) -> None:
    """A run failed and the task is retried later."""
    TASKS.labels(_task_name(sender), "retried").inc()


def on_process_init(**_: Any) -> None:
    """A pool child starts: close its copy of the main process's listening socket (inherited by
    fork), so only the main process holds the port."""
    if _server is not None:
        _server.socket.close()


def on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    """A pool child exits: drop its live gauges (its counters and histograms keep counting)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


def on_worker_shutdown(**_: Any) -> None:
    """The worker stops: so does its metrics server."""
    stop_server()


def install(settings: Settings) -> None:
    """Connect the receivers. Task signals count in whichever process runs the task; the server
    starts in the main process once the worker is set up, when WORKER_METRICS_PORT is set."""
    address = settings.worker_metrics_address

    def on_after_setup(instance: Any = None, **_: Any) -> None:
        global _server
        reset_multiprocess_dir()
        concurrency = getattr(instance, "concurrency", None)
        if isinstance(concurrency, int):
            concurrency_gauge().set(concurrency)
        if address is not None and _server is None:
            _server = start_server(address)

    receivers = [
        (signals.task_prerun, on_task_prerun),
        (signals.task_postrun, on_task_postrun),
        (signals.task_success, on_task_success),
        (signals.task_failure, on_task_failure),
        (signals.task_retry, on_task_retry),
        (signals.worker_process_init, on_process_init),
        (signals.worker_process_shutdown, on_process_shutdown),
        (signals.worker_shutdown, on_worker_shutdown),
        (signals.celeryd_after_setup, on_after_setup),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=False, dispatch_uid=f"tutormax.worker.observability.{receiver.__name__}")
