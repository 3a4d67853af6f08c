#!/usr/bin/env python3
"""What the monitoring costs on a running cluster (issue 21): CPU and memory of every monitoring
process (Prometheus, Alertmanager, the blackbox exporter, the dashboard's nginx, journal-remote on
the monitoring host; the exporters and journal-upload on every host): CPU time over an interval and
resident memory of each unit's main process and its children, from /proc. Optionally under load
(--load: requests/s of mixed reads and writes to --url, benchmarks/loadgen.py), since every request
adds a line to two journals (nginx's access log and the API's) that journal-upload forwards.

Usage: python benchmarks/monitoring_cost.py [--prefix tutormax-] [--seconds 60] [--load 100 --url URL]
  --prefix   the cluster's container prefix: tutormax- (make up) or cluster- (the cluster scenario).
  --url      where the load goes: the floating address (http://10.203.10.250 for make up).
Prints a table and saves benchmarks/results/monitoring_cost.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
UNITS = (
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-blackbox-exporter",
    "systemd-journal-remote",
    "prometheus-node-exporter",
    "prometheus-postgres-exporter",
    "prometheus-redis-exporter",
    "tutormax-sentinel-exporter",
    "prometheus-nginx-exporter",
    "systemd-journal-upload",
)
#: nginx counts only on the monitoring host (it serves the dashboard there; on the load balancers it is the stack).
MONITORING_ONLY = ("nginx",)


def containers(prefix: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}"],  # noqa: S607 - the Docker CLI on PATH
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(n for n in out.stdout.split() if n.startswith(prefix))


def sample(host: str, units: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """CPU time (ns) and resident bytes of each active unit of ``units`` on ``host``: its main
    process and that process's children, from /proc (the containers' systemd has no CPU accounting
    under cgroup v1)."""
    script = (
        "tick=$(getconf CLK_TCK); for u in " + " ".join(units) + "; do "
        'm=$(systemctl show -P MainPID "$u"); [ "${m:-0}" -gt 0 ] || continue; '
        "cpu=0; rss=0; "
        'for p in $m $(pgrep -P "$m"); do '
        "t=$(awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null); cpu=$((cpu + ${t:-0})); "
        "r=$(awk '/^VmRSS/ {print $2}' /proc/$p/status 2>/dev/null); rss=$((rss + ${r:-0})); done; "
        'echo "$u $cpu $rss $tick"; done'
    )
    out = subprocess.run(  # noqa: S603 - fixed arguments and a container name
        ["docker", "exec", host, "sh", "-c", script],  # noqa: S607 - the Docker CLI on PATH
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = {}
    for line in out.stdout.splitlines():
        unit, ticks, rss, tick = line.split()
        found[unit] = {"cpu_ns": int(ticks) * 1_000_000_000 // int(tick), "rss_bytes": int(rss) * 1024}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="tutormax-")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--load", type=float, default=0.0, help="requests/s during the measurement (0: none)")
    parser.add_argument("--url", default="http://10.203.10.250")
    args = parser.parse_args()
    hosts = containers(args.prefix)
    if not hosts:
        raise SystemExit(f"no running container named {args.prefix}*")

    def units_of(host: str) -> tuple[str, ...]:
        return UNITS + (MONITORING_ONLY if "-mon" in host else ())

    load = None
    if args.load > 0:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import loadgen

        load = loadgen.LoadGenerator(args.url, args.load)
        load.start(args.seconds + 120)
        time.sleep(5)
    first = {h: sample(h, units_of(h)) for h in hosts}
    start = time.monotonic()
    time.sleep(args.seconds)
    second = {h: sample(h, units_of(h)) for h in hosts}
    wall = time.monotonic() - start
    sent: dict[str, Any] = {}
    if load is not None:
        overall = loadgen.summarize(load.stop())["overall"]
        sent = {"requests": overall["requests"], "failed": overall["failed"], "rate_per_s": overall["rate_per_s"]}
    rows: list[dict[str, Any]] = []
    for host in hosts:
        for unit, now in second[host].items():
            before = first[host].get(unit)
            if before is None:
                continue
            cpu_pct = 100.0 * (now["cpu_ns"] - before["cpu_ns"]) / 1e9 / wall
            rows.append(
                {
                    "host": host,
                    "unit": unit,
                    "cpu_percent": round(cpu_pct, 2),
                    "rss_mib": round(now["rss_bytes"] / 2**20, 1),
                }
            )
    monitoring_host = [r for r in rows if "-mon" in r["host"]]
    other = [r for r in rows if "-mon" not in r["host"]]
    summary = {
        "hosts": len(hosts),
        "seconds": round(wall, 1),
        "load": sent or None,
        "monitoring_host_cpu_percent": round(sum(r["cpu_percent"] for r in monitoring_host), 1),
        "monitoring_host_rss_mib": round(sum(r["rss_mib"] for r in monitoring_host), 1),
        "agents_cpu_percent_total": round(sum(r["cpu_percent"] for r in other), 1),
        "agents_rss_mib_total": round(sum(r["rss_mib"] for r in other), 1),
        "agents_rss_mib_per_host": round(sum(r["rss_mib"] for r in other) / max(1, len(hosts) - 1), 1),
    }
    by_unit: dict[str, dict[str, float]] = {}
    for r in rows:
        u = by_unit.setdefault(r["unit"], {"hosts": 0, "cpu_percent": 0.0, "rss_mib": 0.0})
        u["hosts"] += 1
        u["cpu_percent"] = round(u["cpu_percent"] + r["cpu_percent"], 2)
        u["rss_mib"] = round(u["rss_mib"] + r["rss_mib"], 1)
    print(f"{'unit':32} {'hosts':>5} {'CPU % (sum)':>12} {'RSS MiB (sum)':>14}")
    for unit, u in sorted(by_unit.items(), key=lambda kv: -kv[1]["rss_mib"]):
        print(f"{unit:32} {u['hosts']:>5} {u['cpu_percent']:>12.2f} {u['rss_mib']:>14.1f}")
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "monitoring_cost.json"
    out.write_text(json.dumps({"summary": summary, "by_unit": by_unit, "rows": rows}, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
