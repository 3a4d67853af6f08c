"""The time of a blue-green switch on the local cluster, under load through the load balancer.

    python benchmarks/blue_green_switch.py -i inventories/local -i COLOURS.yml --lb-url http://127.0.0.1:8080

COLOURS.yml gives every API host its colour (tutormax_api_colour), and blue_green.yml has deployed
to the idle colour once (``-e blue_green_action=deploy``). The script then runs
``blue_green.yml -e blue_green_action=switch`` ``--switches`` times (back and forth) while
``--rate`` requests/s go through ``--lb-url``, and for each switch prints and saves:

- ``command_s``: ansible-playbook from start to exit (the preflight, the smoke test on every load
  balancer, the switch, the check that only the new colour answers);
- ``switch_s``: the switch itself as the playbook measures it, from the gate's pass to the last load
  balancer's reload (every load balancer writes and checks its file first, then all reload), and
  ``reloads_apart_s``, how far apart the load balancers reloaded (the time they served different
  colours);
- the requests sent during the command, failed ones, p99 and max latency.

Figures: benchmarks/results/blue_green_switch.json (and the load's requests and a plot, with each
switch's start and end marked). Speed figures only: nothing here is asserted; the cluster scenario's
test_sizing_blue_green.py asserts the correctness (no failed request, the expected colour answers).
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

import loadgen

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def switch_times(output: str) -> dict[str, float | None]:
    """What blue_green.yml's report says of a switch: its seconds (from the smoke test's pass to the last
    load balancer's reload) and how far apart the load balancers reloaded."""
    text = " ".join(output.split())
    took = re.search(r"the switch took ([0-9.]+) s", text)
    apart = re.search(r"the reloads ([0-9.]+) s apart", text)
    return {
        "switch_s": float(took.group(1)) if took else None,
        "reloads_apart_s": float(apart.group(1)) if apart else None,
    }


def switch(inventories: list[str], forks: int, nice: int) -> tuple[int, float, dict[str, float | None], str]:
    """One switch: exit status, the command's seconds, the switch's own times, the output."""
    argv = ["nice", "-n", str(nice), "ansible-playbook", "--forks", str(forks)]
    argv += [x for inv in inventories for x in ("-i", inv)]
    argv += [str(REPO / "blue_green.yml"), "-e", "blue_green_action=switch"]
    start = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
    seconds = time.monotonic() - start
    return done.returncode, seconds, switch_times(done.stdout), done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--inventory", action="append", required=True, help="inventory (repeat: the colours)")
    parser.add_argument("--lb-url", default="http://127.0.0.1:8080", help="where the load goes")
    parser.add_argument("--switches", type=int, default=2, help="switches, back and forth (1-10)")
    parser.add_argument("--rate", type=float, default=110.0, help="requests/s through the load balancer")
    parser.add_argument("--forks", type=int, default=5, help="ansible-playbook --forks")
    parser.add_argument("--controller-nice", type=int, default=10, help="nice level of ansible-playbook")
    args = parser.parse_args(argv)
    if not 1 <= args.switches <= 10:
        parser.error("--switches must be 1-10")

    load = loadgen.LoadGenerator(args.lb_url, args.rate)
    load.start(args.switches * 600)
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    try:
        time.sleep(5)  # a baseline before the first switch
        for n in range(1, args.switches + 1):
            began = time.time()
            rc, seconds, times, output = switch(args.inventory, args.forks, args.controller_nice)
            ended = time.time()
            events += [{"t": began, "host": "controller", "event": f"switch {n}"},
                       {"t": ended, "host": "controller", "event": f"switch {n} done"}]  # fmt: skip
            window = [r for r in load.result.records if began <= r.t <= ended]
            stats = loadgen.stats(window)
            rows.append({
                "switch": n, "rc": rc, "command_s": round(seconds, 1), **times,
                "requests": stats["requests"], "failed": stats["failed"],
                "p99_ms": stats.get("p99_ms"), "max_ms": stats.get("max_ms"),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
            if rc != 0:
                print(output[-3000:], file=sys.stderr)
                break
            time.sleep(5)
    finally:
        result = load.stop()
    summary = loadgen.summarize(result)
    loadgen.write_results("blue_green_switch_load", result, summary, events, title="blue_green.yml switches")
    figures = {"rate": args.rate, "switches": rows, "overall": summary["overall"]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "blue_green_switch.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"{'switch':>6} {'rc':>3} {'command s':>10} {'switch s':>9} {'reloads apart s':>16} {'requests':>9} "
          f"{'failed':>7} {'p99 ms':>8}")  # fmt: skip
    for r in rows:
        print(f"{r['switch']:>6} {r['rc']:>3} {r['command_s']:>10} {r['switch_s']!s:>9} {r['reloads_apart_s']!s:>16} "
              f"{r['requests']:>9} {r['failed']:>7} {r['p99_ms']!s:>8}")  # fmt: skip
    print(f"saved {RESULTS / 'blue_green_switch.json'}")
    return 0 if rows and all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
