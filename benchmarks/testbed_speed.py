"""How fast the test bed is, against the aims of issue 16: prints the figures and saves them as JSON.

    python benchmarks/testbed_speed.py [--skip up,idempotent,rolling] [--fresh-image] [--rate 100]

  up          `make down`, then `make up`: the local cluster from no container at all (containers,
              secrets, site.yml on eleven hosts, verify). With --fresh-image the test-host image is
              removed first, so its build counts too (Docker and the venv are kept: see below).
  idempotent  `make up` again on the running cluster: site.yml must report changed=0 on every host.
  rolling     benchmarks/rolling_update.py --steps update,back on the local cluster at --rate
              requests/s (3 API hosts, 2 Celery hosts): rolling_update.yml to the next patch release
              and back, with zero failed requests; the playbook's seconds and each API host's
              seconds out of the pool.

A fresh machine also installs Docker (about 30 s) and builds the venv (about a minute); those are
the same for every revision and are not measured here (`.ci/run` prints them per stage).
Figures go to benchmarks/results/testbed_speed-<time>.json. Correctness (changed=0, zero failed
requests) is checked and makes the exit status non-zero; the times are reported against their
aims, never asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
# The aims of issue 16 (seconds).
AIMS = {"up": 360.0, "idempotent": 60.0, "rolling_playbook": 90.0, "api_host_out_of_pool": 10.0}
RECAP = re.compile(r"(?m)^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
STAGE = re.compile(r"(?m)^\s+(containers|secrets|site\.yml|verify)\s+(\d+) s$")


def run(argv: list[str], log: Path, timeout: float) -> tuple[int, float, str]:
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    seconds = round(time.monotonic() - start, 1)
    output = proc.stdout + proc.stderr
    log.write_text(output)
    return proc.returncode, seconds, output


def recap(output: str) -> dict[str, dict[str, int]]:
    """Host -> changed, unreachable, failed, from the last PLAY RECAP of ``output``."""
    last = output.rsplit("PLAY RECAP", 1)[-1]
    return {
        host: {"changed": int(c), "unreachable": int(u), "failed": int(f)}
        for host, c, u, f in RECAP.findall(last)
        if host != "localhost"
    }


def make_up(stamp: str, label: str) -> dict[str, Any]:
    rc, seconds, output = run(["make", "up"], RESULTS / f"testbed_speed-{stamp}-{label}.log", 3600)
    # scripts/up.sh prints "==> [time] site.yml", then the playbook, then "==> [time] verify".
    site = output.split("] site.yml\n", 1)[-1].split("] verify\n", 1)[0]
    hosts = recap(site)
    return {
        "rc": rc,
        "seconds": seconds,
        "stages": {name: int(s) for name, s in STAGE.findall(output)},
        "hosts": len(hosts),
        "changed": sum(h["changed"] for h in hosts.values()),
        "failed": sum(h["failed"] + h["unreachable"] for h in hosts.values()),
    }


def rolling(stamp: str, rate: float) -> dict[str, Any]:
    argv = [sys.executable, "benchmarks/rolling_update.py", "--steps", "update,back", "--rate", str(rate),
            "--min-rate", str(rate * 0.9), "--warmup", "20", "--baseline", "10", "--after", "5"]  # fmt: skip
    rc, seconds, output = run(argv, RESULTS / f"testbed_speed-{stamp}-rolling.log", 3600)
    match = re.search(r"report (\S+\.json)", output)
    report = json.loads(Path(match[1]).read_text()) if match else {}
    steps = {s["name"]: s for s in report.get("steps", [])}
    update = steps.get("update", {}).get("figures", {})
    return {
        "rc": rc,
        "seconds": seconds,
        "report": match[1] if match else None,
        "ok": bool(report.get("ok")),
        "playbook_seconds": {name: s["figures"].get("playbook_seconds") for name, s in steps.items()},
        "requests": {name: s["figures"].get("requests") for name, s in steps.items()},
        "failed": {name: s["figures"].get("failed") for name, s in steps.items()},
        "api_host_seconds": update.get("api_host_seconds", {}),
        "failed_checks": [f"{n}: {c['name']}" for n, s in steps.items() for c in s["checks"] if not c["ok"]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: up, idempotent, rolling")
    parser.add_argument("--fresh-image", action="store_true", help="remove the test-host image before `make up`")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s during the rolling update")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    figures: dict[str, Any] = {"stamp": stamp, "aims_s": AIMS}
    problems: list[str] = []

    if "up" not in skip:
        subprocess.run(["make", "down"], cwd=REPO, check=True, capture_output=True)  # noqa: S607
        if args.fresh_image:
            build = str(REPO / "images" / "testhost" / "build.sh")
            tag = subprocess.run([build, "print-tag"], check=True, capture_output=True, text=True).stdout.strip()  # noqa: S603
            rmi = ["docker", "rmi", "-f", tag, "tutormax-testhost:bookworm"]
            subprocess.run(rmi, check=False, capture_output=True)  # noqa: S603
        figures["up"] = make_up(stamp, "up") | {"fresh_image": args.fresh_image}
        if figures["up"]["rc"] != 0 or figures["up"]["failed"]:
            problems.append(f"make up failed (rc {figures['up']['rc']})")
    if "idempotent" not in skip:
        figures["idempotent"] = make_up(stamp, "idempotent")
        if figures["idempotent"]["changed"] or figures["idempotent"]["rc"] != 0:
            problems.append(f"the second make up changed {figures['idempotent']['changed']} task(s)")
    if "rolling" not in skip:
        figures["rolling"] = rolling(stamp, args.rate)
        if not figures["rolling"]["report"]:
            problems.append(f"benchmarks/rolling_update.py ended (rc {figures['rolling']['rc']}) without a report")
        elif not figures["rolling"]["ok"]:
            problems.append(f"rolling update checks failed: {figures['rolling']['failed_checks']}")

    rows = []
    if "up" in figures:
        rows.append(("make up from no container" + (" (image rebuilt)" if args.fresh_image else ""),
                     figures["up"]["seconds"], AIMS["up"]))  # fmt: skip
    if "idempotent" in figures:
        rows.append((f"second make up (changed={figures['idempotent']['changed']})",
                     figures["idempotent"]["stages"].get("site.yml"), AIMS["idempotent"]))  # fmt: skip
    if "rolling" in figures:
        r = figures["rolling"]
        rows.append((f"rolling_update.yml, {args.rate:g} req/s, failed {r['failed'].get('update')}",
                     r["playbook_seconds"].get("update"), AIMS["rolling_playbook"]))  # fmt: skip
        slowest = max(r["api_host_seconds"].values(), default=None)
        rows.append(("slowest API host out of the pool", slowest, AIMS["api_host_out_of_pool"]))
    print(f"\n{'what':<52} {'seconds':>8} {'aim':>6}  within")
    for what, seconds, aim in rows:
        within = "yes" if seconds is not None and seconds <= aim else "no"
        print(f"{what:<52} {seconds!s:>8} {aim:>6g}  {within}")
    figures["rows"] = [{"what": w, "seconds": s, "aim_s": a} for w, s, a in rows]
    figures["problems"] = problems
    path = RESULTS / f"testbed_speed-{stamp}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nsaved {path}")
    for problem in problems:
        print("  problem:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
