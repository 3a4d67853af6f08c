"""The worker's Prometheus metrics: counted in the prefork children, served by the main process on
WORKER_METRICS_PORT (+ WORKER_INSTANCE - 1) while the worker runs; the receivers and the server
alone in this process (single-process mode)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from celery import Celery
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from harness import LOCALHOST, Stack, free_port, stop_process, wait_until
from tutormax.data.taskqueue import BUILD_EXPORT, PURGE_EXPIRED_EXPORTS
from tutormax.worker import observability


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus exposition, or None when it is absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def start_worker(stack: Stack, worker_env: dict[str, str], name: str, **extra: str) -> subprocess.Popen[bytes]:
    """``python -m tutormax worker`` (what tutormax-worker runs), consuming only the queue ``name``."""
    return stack.spawn(
        ["-m", "tutormax", "worker", "--without-gossip", "--without-mingle", "--queues", name],
        {**worker_env, "API_INSTANCE_ID": name, **extra},
        name,
    )


def listening_socket(port: int) -> str:
    """``socket:[inode]`` of the TCP socket listening on ``port``, as /proc/PID/fd links name it."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
                return f"socket:[{fields[9]}]"
    raise AssertionError(f"nothing listens on port {port}")


def open_files(pid: int) -> set[str]:
    """What the file descriptors of process ``pid`` point at."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            found.add(os.readlink(fd))
    return found


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    return response.text


@pytest.fixture(scope="module")
def metrics_worker(
    stack: Stack, worker_env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], str, str, Path]]:
    """Instance 2 of a templated worker (2 pool processes): its process, metrics URL, queue and directory."""
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    directory = stack.base / "prometheus-worker-2"
    directory.mkdir()
    (directory / "counter_4242424.db").write_bytes(b"left by an earlier run")
    port = free_port()
    proc = start_worker(
        stack,
        worker_env,
        queue,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        WORKER_METRICS_PORT=str(port - 1),  # the base; instance 2 listens on base + 1
        WORKER_INSTANCE="2",
        WORKER_METRICS_BIND=LOCALHOST,
    )
    url = f"http://{LOCALHOST}:{port}/metrics"

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}: {stack.log(queue)[-2000:]}")
        return sample(scrape(url), "tutormax_celery_worker_concurrency") == 2

    wait_until(serving, 60, "the worker's metrics server", interval=0.2)
    yield proc, url, queue, directory
    stop_process(proc)


def test_tasks_that_succeed_and_fail_are_counted_and_timed_by_the_worker_that_ran_them(
    metrics_worker: tuple[subprocess.Popen[bytes], str, str, Path], celery_client: Celery, stack: Stack
) -> None:
    proc, url, queue, directory = metrics_worker
    assert not (directory / "counter_4242424.db").exists()  # an earlier run's samples are gone
    assert "worker metrics on http://127.0.0.1:" in stack.log(queue)
    # Only the main process holds the port: the pool's children close the socket they inherit.
    listening = listening_socket(int(url.rsplit(":", 1)[1].split("/")[0]))
    children: list[int] = []

    def pool_started() -> bool:
        tasks = Path(f"/proc/{proc.pid}/task").iterdir()
        children[:] = [int(pid) for task in tasks for pid in (task / "children").read_text().split()]
        return len(children) == 2

    wait_until(pool_started, 30, "the pool's 2 processes")
    assert listening in open_files(proc.pid)
    wait_until(
        lambda: not any(listening in open_files(child) for child in children),
        10,
        "the pool's children closing the metrics socket",
    )

    results = [celery_client.send_task(PURGE_EXPIRED_EXPORTS, queue=queue) for _ in range(4)]
    for result in results:
        assert "deleted" in result.get(timeout=60)
    failed = celery_client.send_task(BUILD_EXPORT, args=["not-a-uuid"], queue=queue)
    failed.get(timeout=60, propagate=False)
    assert failed.state == "FAILURE"

    purge, export = {"task": PURGE_EXPIRED_EXPORTS}, {"task": BUILD_EXPORT}
    # The result is stored before the success and postrun signals fire: wait for the counts.
    wait_until(
        lambda: (
            sample(scrape(url), "tutormax_celery_task_runtime_seconds_count", **purge) == 4
            and sample(scrape(url), "tutormax_celery_task_runtime_seconds_count", **export) == 1
        ),
        10,
        "the runs in the histogram",
    )
    text = scrape(url)
    assert sample(text, "tutormax_celery_tasks_total", **purge, state="succeeded") == 4
    assert sample(text, "tutormax_celery_tasks_total", **export, state="failed") == 1
    assert sample(text, "tutormax_celery_tasks_total", **purge, state="failed") is None
    assert sample(text, "tutormax_celery_tasks_total", **export, state="succeeded") is None
    assert 0 < (sample(text, "tutormax_celery_task_runtime_seconds_sum", **purge) or 0) < 60
    assert sample(text, "tutormax_celery_task_runtime_seconds_bucket", **purge, le="600.0") == 4
    assert sample(text, "tutormax_celery_task_runtime_seconds_bucket", **purge, le="0.01") is not None
    assert sample(text, "tutormax_celery_worker_concurrency") == 2
    # Counted in the pool's children, whose sample files the main process sums.
    pids = {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("counter_*.db")}
    assert pids
    assert proc.pid not in pids


def test_the_server_stops_with_the_worker(
    metrics_worker: tuple[subprocess.Popen[bytes], str, str, Path],
) -> None:
    proc, url, _, _ = metrics_worker
    stop_process(proc)
    assert proc.returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


def test_a_worker_without_a_multiprocess_directory_still_counts_its_children(
    stack: Stack, worker_env: dict[str, str], celery_client: Celery
) -> None:
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {key: value for key, value in worker_env.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    proc = start_worker(stack, env, queue, WORKER_METRICS_PORT=str(port), WORKER_METRICS_BIND=LOCALHOST)
    url = f"http://{LOCALHOST}:{port}/metrics"
    try:
        wait_until(lambda: proc.poll() is None and bool(scrape(url)), 60, "the worker's metrics server", interval=0.2)
        celery_client.send_task(PURGE_EXPIRED_EXPORTS, queue=queue).get(timeout=60)
        wait_until(
            lambda: (
                sample(scrape(url), "tutormax_celery_tasks_total", task=PURGE_EXPIRED_EXPORTS, state="succeeded") == 1
            ),
            10,
            "the run counted",
        )
    finally:
        stop_process(proc)
    assert "Traceback" not in stack.log(queue)


# --------------------------------------------------------------------------- in this process
def test_receivers_count_each_outcome_and_time_each_run(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"tests.unit_{uuid.uuid4().hex[:8]}"
    task = SimpleNamespace(name=name)
    # Every run takes 5 ms by a clock the test controls: the bucket asserted below must not
    # depend on the machine's load (CI's run of 96899d9 measured one run over 10 ms).
    ticks = iter(x * 0.005 for x in range(100))
    monkeypatch.setattr(observability, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))

    def value(metric: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(metric, {"task": name, **labels}) or 0.0

    for outcome, receiver in [
        ("succeeded", observability.on_task_success),
        ("retried", observability.on_task_retry),
        ("failed", observability.on_task_failure),
    ]:
        observability.on_task_prerun(sender=task, task_id=f"id-{outcome}", task=task)
        receiver(sender=task)
        observability.on_task_postrun(sender=task, task_id=f"id-{outcome}", task=task, state="x")
    assert value("tutormax_celery_tasks_total", state="succeeded") == 1
    assert value("tutormax_celery_tasks_total", state="retried") == 1
    assert value("tutormax_celery_tasks_total", state="failed") == 1
    assert value("tutormax_celery_task_runtime_seconds_count") == 3
    assert value("tutormax_celery_task_runtime_seconds_bucket", le="0.01") == 3
    # A postrun without its prerun (a task the main process failed) is not timed.
    observability.on_task_postrun(sender=task, task_id="never-started", task=task)
    assert value("tutormax_celery_task_runtime_seconds_count") == 3


def test_server_serves_the_registry_and_an_address_in_use_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    observability.concurrency_gauge().set(3)
    port = free_port()
    server = observability.start_server((LOCALHOST, port))
    assert server is not None
    try:
        assert sample(scrape(f"http://{LOCALHOST}:{port}/metrics"), "tutormax_celery_worker_concurrency") == 3
        with caplog.at_level(logging.ERROR, logger=observability.log.name):
            assert observability.start_server((LOCALHOST, port)) is None
        assert f"cannot serve the worker's metrics on {LOCALHOST} port {port}" in caplog.text
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as probe:
        assert probe.connect_ex((LOCALHOST, port)) != 0
