"""Throughput and p99 latency of the nginx_lb role's full configuration against a minimal proxy_pass.

Both nginx instances run in one throwaway test-host container on the host network, bound to
127.0.0.1 only, in front of the same backend: a small FastAPI app under uvicorn (two workers) on
127.0.0.1 of this machine. wrk (on this machine) loads each for a short fixed time, in rounds that
alternate the proxies; the ratios are taken within each round (runs seconds apart, so the load of a
shared machine hits both alike) and their median is reported, with the median req/s and p99.
Because throughput on a busy shared machine swings with everybody else's load, each run also
measures the CPU time nginx's workers spent per request (utime+stime from /proc), which depends far
less on the neighbours: it is the cost of the configuration itself.

- direct:   wrk -> uvicorn (context: what any proxy costs)
- minimal:  nginx with only `proxy_pass` (no logging, a new backend connection per request)
- minimal+keepalive: the same plus upstream keepalive, to tell what the full configuration's
            features cost apart from what its upstream keepalive saves
- full:     the role's configuration (JSON access log, rate limit zone lookup on every request,
            security headers, upstream keepalive, retries); the rate is set high so nothing is
            refused, and the allowlist is empty so the limit is really evaluated
- full+gzip and full over HTTPS: one round each, for information

Usage: python benchmarks/nginx_lb_overhead.py [--duration 4] [--rounds 5] [--connections 32]
Writes benchmarks/results/nginx_lb_overhead-<time>.json (and .png when matplotlib is installed).
Needs Docker, the tutormax-testhost image, wrk, and the project's virtualenv (uvicorn, fastapi).
Everything it starts is removed at the end; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
IMAGE = os.environ.get("TUTORMAX_TEST_IMAGE", "tutormax-testhost:bookworm")
CONTAINER = "nginx_lb-bench"
BACKEND_PORT, MINIMAL_PORT, FULL_PORT, FULL_TLS_PORT, KEEPALIVE_PORT, STATUS_PORT = (
    18400, 18480, 18481, 18482, 18483, 18489,
)  # fmt: skip
PATH = "/api/items"

APP = """
from fastapi import FastAPI

app = FastAPI()
ITEMS = [{"id": i, "name": f"item-{i}", "status": "available"} for i in range(20)]


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/items")
async def items() -> dict[str, object]:
    return {"host": "bench", "items": ITEMS}
"""

MINIMAL_CONF = f"""
worker_processes auto;
pid /run/nginx-minimal.pid;
error_log /var/log/nginx/minimal-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{MINIMAL_PORT};
        location / {{
            proxy_pass http://127.0.0.1:{BACKEND_PORT};
        }}
    }}
    upstream backend {{
        server 127.0.0.1:{BACKEND_PORT};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{KEEPALIVE_PORT};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }}
    }}
}}
"""

ROLE_VARS = {
    "nginx_lb_backends": [{"name": "bench", "address": "127.0.0.1", "port": BACKEND_PORT}],
    "nginx_lb_listen_addresses": ["127.0.0.1"],
    "nginx_lb_http_port": FULL_PORT,
    "nginx_lb_https_port": FULL_TLS_PORT,
    "nginx_lb_status_port": STATUS_PORT,
    # Evaluate the limit on every request without refusing any. nginx's leaky bucket works in
    # milliseconds of its cached clock, so requests handled in one event-loop turn do not leak:
    # a high rate alone is not enough, the burst must cover a turn's worth of requests too.
    "nginx_lb_rate_limit_allowlist": [],
    "nginx_lb_rate_limit_rate": "1000000r/s",
    "nginx_lb_rate_limit_burst": 100000,
}


def sh(*cmd: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:  # noqa: ANN401
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kwargs)  # noqa: S603 - fixed commands


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL built here
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within {seconds}s")
        time.sleep(0.5)


def start_backend(tmp: Path) -> subprocess.Popen[bytes]:
    (tmp / "benchapp.py").write_text(APP)
    uvicorn = shutil.which("uvicorn") or str(Path(sys.executable).with_name("uvicorn"))
    options = ["--workers", "2", "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(  # noqa: S603 - fixed command
        [uvicorn, "benchapp:app", "--host", "127.0.0.1", "--port", str(BACKEND_PORT), *options],
        cwd=tmp,
    )
    wait_for(f"http://127.0.0.1:{BACKEND_PORT}{PATH}")
    return proc


def start_container() -> None:
    sh("docker", "rm", "-f", CONTAINER, check=False)
    # The test-host settings (see molecule/common/molecule.yml), on the host network so nginx,
    # uvicorn and wrk all meet on 127.0.0.1; without NET_ADMIN, which would reach the host's network.
    sh(
        "docker", "run", "-d", "--name", CONTAINER, "--network", "host",
        "--cap-add", "SYS_ADMIN", "--cap-add", "SETPCAP", "--cap-add", "SYS_PTRACE",
        "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",  # noqa: S108 - the container's /tmp
        IMAGE, "/lib/systemd/systemd",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while sh("docker", "exec", CONTAINER, "systemctl", "is-system-running", check=False).stdout.strip() not in (
        "running",
        "degraded",
    ):
        if time.monotonic() > deadline:
            raise SystemExit("the benchmark container's systemd did not come up")
        time.sleep(0.5)
    # Debian starts nginx on install with its default site on port 80: on the host network that
    # would be this machine's port 80. Forbid service starts by the package; the role starts nginx.
    sh("docker", "exec", CONTAINER, "sh", "-c", "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d")
    sh("docker", "exec", CONTAINER, "chmod", "0755", "/usr/sbin/policy-rc.d")


def apply_role(tmp: Path) -> None:
    inventory = {
        "lb": {
            "hosts": {
                CONTAINER: {
                    "ansible_connection": "community.docker.docker",
                    "ansible_python_interpreter": "/usr/bin/python3",
                }
            }
        }
    }
    play = [
        {
            "name": "Apply nginx_lb for the benchmark",
            "hosts": "lb",
            "gather_facts": True,
            "gather_subset": ["network"],
            "roles": [{"role": "tutormax.cluster.nginx_lb"}],
        }
    ]
    (tmp / "hosts.json").write_text(json.dumps(inventory))
    (tmp / "play.json").write_text(json.dumps(play))
    (tmp / "vars.json").write_text(json.dumps(ROLE_VARS))
    result = sh(
        "ansible-playbook", "-i", str(tmp / "hosts.json"), str(tmp / "play.json"), "-e", f"@{tmp / 'vars.json'}",
        cwd=REPO, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit("applying the role failed:\n" + result.stdout[-4000:] + result.stderr[-2000:])


def start_minimal() -> None:
    sh("docker", "exec", CONTAINER, "mkdir", "-p", "/etc/nginx-minimal")
    sh("docker", "exec", "-i", CONTAINER, "sh", "-c", "cat > /etc/nginx-minimal/nginx.conf", input=MINIMAL_CONF)
    sh("docker", "exec", CONTAINER, "nginx", "-c", "/etc/nginx-minimal/nginx.conf")


def nginx_cpu_seconds(pid_file: str) -> float:
    """CPU time (user + system) used so far by the workers of the nginx whose master is in pid_file."""
    script = f"for p in $(pgrep -P $(cat {pid_file})); do cut -d' ' -f14,15 /proc/$p/stat; done"
    ticks = sum(int(t) for t in sh("docker", "exec", CONTAINER, "sh", "-c", script).stdout.split())
    return ticks / os.sysconf("SC_CLK_TCK")


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    url: str, duration: int, connections: int, headers: list[str] | None = None, pid_file: str | None = None
) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for header in headers or []:
        cmd += ["-H", header]
    cpu_before = nginx_cpu_seconds(pid_file) if pid_file else 0.0
    out = sh(*cmd, url, timeout=duration + 30).stdout
    cpu = nginx_cpu_seconds(pid_file) - cpu_before if pid_file else None
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "requests": requests,
        "nginx_cpu_us_per_request": cpu / requests * 1e6 if cpu is not None and requests else None,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = [r["nginx_cpu_us_per_request"] for r in runs if r["nginx_cpu_us_per_request"] is not None]
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "nginx_cpu_us_per_request": statistics.median(cpu) if cpu else None,
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "rounds": runs,
    }


def save_png(path: Path, summary: dict[str, dict[str, Any]]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(summary)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.bar(names, [summary[n]["rps"] for n in names])
    ax1.set_title("requests/s (median)")
    ax2.bar(names, [summary[n]["p99_ms"] for n in names], color="tab:orange")
    ax2.set_title("p99 latency, ms")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run (at most 30)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds alternating the three proxies (at most 9)")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    duration, rounds = min(args.duration, 30), min(args.rounds, 9)
    for tool in ("docker", "wrk", "ansible-playbook"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed")

    urls = {
        "direct": f"http://127.0.0.1:{BACKEND_PORT}{PATH}",
        "minimal": f"http://127.0.0.1:{MINIMAL_PORT}{PATH}",
        "minimal+keepalive": f"http://127.0.0.1:{KEEPALIVE_PORT}{PATH}",
        "full": f"http://127.0.0.1:{FULL_PORT}{PATH}",
        "full+gzip": f"http://127.0.0.1:{FULL_PORT}{PATH}",
        "full https": f"https://127.0.0.1:{FULL_TLS_PORT}{PATH}",
    }
    pid_files = {
        "minimal": "/run/nginx-minimal.pid",
        "minimal+keepalive": "/run/nginx-minimal.pid",
        "full": "/run/nginx.pid",
        "full+gzip": "/run/nginx.pid",
        "full https": "/run/nginx.pid",
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="nginx_lb_bench-") as tmpdir:
        tmp = Path(tmpdir)
        backend = start_backend(tmp)
        try:
            print("setting up: container, nginx_lb role, minimal nginx ...", flush=True)
            start_container()
            apply_role(tmp)
            start_minimal()
            for name in ("minimal", "minimal+keepalive", "full"):
                wait_for(urls[name])
            print(f"running: {duration}s per run, {args.connections} connections, one wrk thread", flush=True)
            runs["direct"].append(wrk(urls["direct"], duration, args.connections))
            for _ in range(rounds):
                for name in ("minimal", "minimal+keepalive", "full"):
                    runs[name].append(wrk(urls[name], duration, args.connections, pid_file=pid_files[name]))
            gzip = ["Accept-Encoding: gzip"]
            runs["full+gzip"].append(wrk(urls["full+gzip"], duration, args.connections, gzip, pid_files["full"]))
            runs["full https"].append(wrk(urls["full https"], duration, args.connections, pid_file=pid_files["full"]))
            statuses = sh(
                "docker", "exec", CONTAINER, "sh", "-c",
                "grep -o '\"status\":[0-9]*' /var/log/nginx/access.log | sort | uniq -c",
            ).stdout.split()  # fmt: skip
        finally:
            sh("docker", "rm", "-f", CONTAINER, check=False)
            backend.terminate()
            backend.wait(timeout=30)

    summary = {name: median_of(r) for name, r in runs.items()}
    full_statuses = {statuses[i + 1].split(":")[1]: int(statuses[i]) for i in range(0, len(statuses), 2)}
    # Ratios within each round, then their median.
    ratio = statistics.median(f["rps"] / m["rps"] for f, m in zip(runs["full"], runs["minimal"], strict=True))
    ratio_keepalive = statistics.median(
        f["rps"] / k["rps"] for f, k in zip(runs["full"], runs["minimal+keepalive"], strict=True)
    )
    cpu_ratio = statistics.median(
        f["nginx_cpu_us_per_request"] / m["nginx_cpu_us_per_request"]
        for f, m in zip(runs["full"], runs["minimal+keepalive"], strict=True)
    )
    print()
    header = f"{'configuration':<18} {'req/s':>9} {'vs minimal':>11} {'p50 ms':>8} {'p99 ms':>8}"
    print(header + f" {'nginx CPU us/req':>17} {'non-2xx':>8}")
    for name, s in summary.items():
        cpu = s["nginx_cpu_us_per_request"]
        print(
            f"{name:<18} {s['rps']:>9.0f} {s['rps'] / summary['minimal']['rps']:>10.0%} "
            f"{s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} {'-' if cpu is None else f'{cpu:.0f}':>17} {s['non_2xx']:>8}"
        )
    verdict = "met" if ratio >= 0.95 else "NOT met"
    print(f"\nfull keeps {ratio:.1%} of minimal's requests/s (median of per-round ratios; aim: 95%, {verdict})")
    print("minimal/direct ", end="")
    print(
        f"{summary['minimal']['rps'] / summary['direct']['rps']:.2f}. nproc={os.cpu_count()}, load: {os.getloadavg()}"
    )
    print(f"full keeps {ratio_keepalive:.1%} of minimal+keepalive's requests/s (median of per-round ratios)")
    print(f"nginx CPU per request, full / minimal+keepalive: {cpu_ratio:.2f} (median of per-round ratios)")
    print(f"statuses in the full configuration's access log: {full_statuses}")
    if any(s["non_2xx"] for s in summary.values()):
        print("WARNING: some responses were not 2xx; those runs do not measure proxying")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    out = RESULTS / f"nginx_lb_overhead-{stamp}.json"
    report = {
        "started": started,
        "duration_s": duration,
        "rounds": rounds,
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "load_after": os.getloadavg(),
        "full_vs_minimal": ratio,
        "full_vs_minimal_keepalive": ratio_keepalive,
        "nginx_cpu_per_request_full_vs_minimal_keepalive": cpu_ratio,
        "full_access_log_statuses": full_statuses,
        "results": summary,
    }
    out.write_text(json.dumps(report, indent=2))
    print(f"saved {out.relative_to(REPO)}", end="")
    if save_png(out.with_suffix(".png"), summary):
        print(f" and {out.with_suffix('.png').relative_to(REPO)}", end="")
    print()


if __name__ == "__main__":
    main()
