"""Benchmark: one gunicorn with 2 uvicorn workers against one bare uvicorn process, same machine,
same run, on ``/api/health`` and on a cached tutor read (``GET /api/tutors/{id}``).

Starts its own PostgreSQL (primary + replica) and Redis (master + replica + Sentinel) on loopback
with the test harness, serves the app one way at a time, and loads it with wrk (or, without wrk,
a small asyncio httpx client) for a fixed time. Loopback only; every load run stops by itself.

    python benchmarks/app_serving.py [--duration 10] [--connections 32]

Prints a table and writes benchmarks/results/app_serving.json. The machine is shared: compare the
two servers within one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "app" / "tests"), str(ROOT / "app" / "src")]

import httpx  # noqa: E402
from harness import LOCALHOST, Stack, free_port, stop_process, wait_for_health  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "app_serving.json"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def run_wrk(url: str, duration: int, connections: int) -> dict[str, float]:
    """wrk with latency percentiles; returns requests/s, p50 and p99 in ms, and error count."""
    wrk = shutil.which("wrk") or "wrk"
    command = [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s", url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True).stdout  # noqa: S603
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(g) for g in errors.groups()) if errors else 0)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": failed}


async def _httpx_load(url: str, duration: int, connections: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + duration

    async def one_client(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            start = time.perf_counter()
            response = await client.get(url)
            latencies.append((time.perf_counter() - start) * 1000)
            errors += response.status_code >= 400

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=5) as client:
        began = time.monotonic()
        await asyncio.gather(*(one_client(client) for _ in range(connections)))
        took = time.monotonic() - began
    latencies.sort()
    return {
        "rps": len(latencies) / took,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "errors": errors,
    }


def load(url: str, duration: int, connections: int) -> dict[str, float]:
    """Load ``url`` for ``duration`` seconds with wrk, or with httpx when wrk is missing."""
    if shutil.which("wrk"):
        return run_wrk(url, duration, connections) | {"tool": "wrk"}  # type: ignore[operator]
    return asyncio.run(_httpx_load(url, duration, connections)) | {"tool": "httpx"}  # type: ignore[operator]


def serve(stack: Stack, mode: str, port: int) -> subprocess.Popen[bytes]:
    """Start the app as gunicorn with 2 uvicorn workers, or as one bare uvicorn process."""
    env = stack.env(API_INSTANCE_ID=f"bench-{mode}", LOG_LEVEL="WARNING", CACHE_TTL_SECONDS="3600")
    if mode == "gunicorn-2-workers":
        env |= {"WORKERS": "2", "BIND": f"{LOCALHOST}:{port}", "PROMETHEUS_MULTIPROC_DIR": str(stack.base / "prom")}
        args = ["-m", "tutormax", "api"]
    else:
        args = ["-m", "uvicorn", "--factory", "tutormax.api.app:create_app", "--host", LOCALHOST,
                "--port", str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    proc = stack.spawn(args, env, mode)
    wait_for_health(f"http://{LOCALHOST}:{port}", proc)
    return proc


def main() -> None:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (max 60)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (max 256)")
    args = parser.parse_args()
    duration, connections = min(args.duration, 60), min(args.connections, 256)

    stack = Stack.start()
    results: list[dict[str, Any]] = []
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "tutormax", "migrate"],
            env={
                "PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "app" / "src"),
                "DATABASE_URL": stack.pg.primary_url,
            },
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if migrate.returncode != 0:
            raise SystemExit(migrate.stderr)
        for mode in ("gunicorn-2-workers", "uvicorn-1-process"):
            port = free_port()
            proc = serve(stack, mode, port)
            base = f"http://{LOCALHOST}:{port}"
            try:
                tutor = httpx.post(
                    f"{base}/api/tutors", json={"name": "Bench", "email": f"bench-{time.time_ns()}@example.test"}
                ).json()
                read_url = f"{base}/api/tutors/{tutor['id']}"
                assert httpx.get(read_url).headers["x-read-source"] == "cache"
                for endpoint, url in (("/api/health", f"{base}/api/health"), ("cached tutor read", read_url)):
                    load(url, 2, connections)  # warm-up, not recorded
                    figures = load(url, duration, connections)
                    results.append({"server": mode, "endpoint": endpoint, **figures})
                    print(f"  {mode:20} {endpoint:18} {figures['rps']:9.0f} req/s", flush=True)
            finally:
                stop_process(proc)
    finally:
        stack.stop()

    print(f"\n{'server':20} {'endpoint':18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for row in results:
        print(
            f"{row['server']:20} {row['endpoint']:18} {row['rps']:9.0f} {row['p50_ms']:8.2f} "
            f"{row['p99_ms']:8.2f} {row['errors']:7.0f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "app_serving",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
                },
                "duration_s": duration,
                "connections": connections,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
