"""What the cluster scenario's tests share: the local secrets and commands in the hosts' containers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
import loadgen  # noqa: E402 - benchmarks/ is not a package

SCENARIO = Path(__file__).resolve().parents[1]
SECRETS = REPO / "inventories" / "local" / "group_vars" / "all" / "secrets.yml"
#: The load balancers' floating address (host_vars/cluster-lb*.yml).
FLOATING_ADDRESS = str(yaml.safe_load((SCENARIO / "host_vars" / "cluster-lb1.yml").read_text())["tutormax_lb_address"])
#: Where the drills send their load: the floating address (127.0.0.1:18080, published by cluster-lb1,
#: is the Quick start's way in, test_cluster.py's).
LB = os.environ.get("TUTORMAX_CLUSTER_LB", f"http://{FLOATING_ADDRESS}")
#: Where the drills write their figures (git-ignored).
RESULTS = REPO / "benchmarks" / "results"
#: The drills' load through the load balancer, requests per second (the issues ask for at least 100).
RATE = 110.0
#: site.yml's forks here (ansible.cfg has 20, for a fleet of real hosts). The sixteen containers share
#: two cores with the controller and the load generator: with 20 forks a task on every host (the
#: baseline, the exporters) took the CPU from the data path, p99 4.4 s and max 10 s over an
#: environment change under 110 requests/s, with one or two requests failed per run; with 5 the same
#: run took the same 395 s with p99 0.37 s and max 2.8 s (docs/TESTING.md).
FORKS = 5
#: test_site_live.py's settings change; the later site.yml runs (test_sizing.py) give it too, as an
#: operator keeps it in the inventory, so that they change nothing else.
SITE_LIVE_CHANGE = {"app_release_log_level": "WARNING"}
#: And at this nice level, like benchmarks/rolling_update.py's Ansible runs: the controller's
#: processes yield to the load generator (in production they have a machine of their own).
NICE = 10


def save_figures(name: str, figures: Mapping[str, Any]) -> None:
    """Write a drill's figures to benchmarks/results/<name>.json and print them."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(json.dumps(figures, indent=2, default=str))


def secrets() -> dict[str, str]:
    """The local cluster's secrets file: every secret's name and value."""
    return {k: str(v) for k, v in yaml.safe_load(SECRETS.read_text()).items()}


def secret(name: str) -> str:
    """A value of the local cluster's secrets file."""
    return secrets()[name]


def sh(host: str, *argv: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run a command in one of the cluster's containers and return its output. ``env`` reaches the
    command by name only (`docker exec -e NAME`, the value from this process's environment), so no
    secret is on a command line."""
    names = [x for k in (env or {}) for x in ("-e", k)]
    done = subprocess.run(
        ["docker", "exec", *names, host, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if check:
        assert done.returncode == 0, f"{host}: {argv}: {done.stderr}"
    return done.stdout


def inventory_copy(tmp: Path, leave: Mapping[str, Sequence[str]], retired: Sequence[str] = ()) -> str:
    """The scenario's inventory with each host of ``leave`` taken out of the groups it names (of every
    group when it names none) and ``retired`` in the group `retired`, written beside links to the
    scenario's group_vars and host_vars (Molecule's own inventory folder is read whole, so the copy goes
    elsewhere). Its path."""
    tree = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())

    def drop(name: str, group: dict[str, Any]) -> None:
        hosts = group.get("hosts") or {}
        for host, groups in leave.items():
            if not groups or name in groups:
                hosts.pop(host, None)
        for child_name, child in (group.get("children") or {}).items():
            drop(child_name, child or {})

    # Molecule writes every group at the top level (and `all` with each host's connection); `all`
    # keeps the hosts, every other group loses them.
    for name, group in tree.items():
        if name == "all":
            for child_name, child in (group.get("children") or {}).items():
                drop(child_name, child or {})
        else:
            drop(name, group or {})
    if retired:
        tree["retired"] = {"hosts": {h: {} for h in retired}}
    folder = tmp / "inventory"
    folder.mkdir(parents=True, exist_ok=True)
    for link, target in (("group_vars", REPO / "inventories" / "local" / "group_vars"),
                         ("host_vars", SCENARIO / "host_vars")):  # fmt: skip
        if not (folder / link).exists():
            (folder / link).symlink_to(target)
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def address_of(host: str) -> str:
    """The container's (first) address."""
    return sh(host, "hostname", "-I").split()[0]


def psql(host: str, sql: str, database: str = "postgres") -> str:
    """``sql`` run by psql as postgres on ``host`` (unaligned, tuples only, no psqlrc): its output."""
    return sh(host, "runuser", "-u", "postgres", "--", "psql", "-d", database, "-XAtq", "-c", sql)


def site_yml(
    *args: str,
    inventories: tuple[str, ...] = (),
    timeout: float = 900,
    log: str = "",
    base: str = "",
    playbook: str = "site.yml",
) -> tuple[int, dict[str, int], str]:
    """site.yml (or another ``playbook`` of the repository) on the scenario's inventory (or ``base``, a
    changed copy of it; plus ``inventories``) with ``args``: exit status, changed count per host from
    the recap, and the output (stdout and stderr), also written to
    benchmarks/results/<log>.ansible.log when ``log`` names one (profile_tasks stamps each task, so a
    drill's slow or failed requests can be matched with the task that ran then)."""
    argv = ["nice", "-n", str(NICE), "ansible-playbook", "--forks", str(FORKS)]
    argv += ["-i", base or os.environ["MOLECULE_INVENTORY_FILE"]]
    argv += [x for inv in inventories for x in ("-i", inv)]
    done = subprocess.run(
        [*argv, str(REPO / playbook), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    changed = {m[0]: int(m[1]) for m in re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", done.stdout, re.M)}
    if log:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{log}.ansible.log").write_text(done.stdout + done.stderr)
    return done.returncode, changed, done.stdout + done.stderr


def load_figures(label: str, result: loadgen.LoadResult) -> dict[str, Any]:
    """A drill's load summarized and saved (benchmarks/results/<label>_load.*: every request and a plot):
    its figures."""
    summary = loadgen.summarize(result)
    loadgen.write_results(f"{label}_load", result, summary, [], title=label)
    overall = summary["overall"]
    return {
        "requests": overall["requests"],
        "failed": overall["failed"],
        "rate_per_s": overall["rate_per_s"] or 0.0,
        "writes": overall["writes"],
        "p50_ms": overall.get("p50_ms"),
        "p99_ms": overall.get("p99_ms"),
        "max_ms": overall.get("max_ms"),
        "duration_s": summary["duration_s"],
        "failures": summary["failures"][:10],
    }


def assert_served(figures: Mapping[str, Any]) -> None:
    """No request of the load failed, and it held at least 100 requests/s."""
    assert figures["failed"] == 0, f"{figures['failed']} of {figures['requests']} failed: {figures['failures']}"
    assert figures["rate_per_s"] >= 100, f"only {figures['rate_per_s']:.0f} requests/s were sent"


#: Seconds site_yml_under_load() keeps the load on after the playbook returned.
AFTER_S = 3.0


def site_yml_under_load(
    label: str, *args: str, inventories: tuple[str, ...] = (), base: str = "", playbook: str = "site.yml"
) -> tuple[int, dict[str, int], str, dict[str, Any]]:
    """site_yml() while RATE requests/s go through the load balancer, its output saved as <label>: exit
    status, changed count per host, output, and the figures of the run and its load."""
    load = loadgen.LoadGenerator(LB, RATE)
    load.start(900)
    start = time.monotonic()
    try:
        rc, changed, output = site_yml(*args, inventories=inventories, base=base, log=label, playbook=playbook)
        ended = time.time()
        # A few seconds of load after the run: what serves once it returned.
        time.sleep(AFTER_S)
    finally:
        result = load.stop()
    figures = {"rc": rc, "seconds": round(time.monotonic() - start - AFTER_S, 1)} | load_figures(label, result)
    figures["instances_after"] = instances_after(result, ended)
    return rc, changed, output, figures


def instances_after(result: loadgen.LoadResult, t: float) -> dict[str, int]:
    """The API instances that answered the load's requests sent after ``t`` (epoch seconds), with counts."""
    found: dict[str, int] = {}
    for record in result.records:
        if record.t >= t and record.instance:
            found[record.instance] = found.get(record.instance, 0) + 1
    return found


def scrape_targets(prometheus: str) -> list[dict[str, Any]]:
    """The active scrape targets of the Prometheus at ``prometheus`` (its URL)."""
    data = httpx.get(f"{prometheus}/api/v1/targets", params={"state": "active"}, timeout=10).json()
    return list(data["data"]["activeTargets"])
