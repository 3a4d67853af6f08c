"""site.yml on a live cluster (issue 17), last in file order but test_sizing.py: after converge, the
drills and the rolling update (test_rolling_update.py leaves every app host on the next patch release,
not the release the collection ships).

1. A settings change that rewrites the environment file of every API and Celery host, applied as an
   operator applies an app setting (`site.yml --tags api,celery --diff`), under load through the load
   balancer: no failed request, rc 0, every API and Celery process runs with the new setting, no host
   was restarted outside its turn (the API hosts went one at a time), only the API and Celery hosts
   changed and only by the tasks a settings change runs (anything else is drift the rolling update
   left), and no secret value in the output, --diff included.
2. The next run, the whole of site.yml at -vvv and without a version: changed=0, every host still
   on the release the rolling update installed, the Redis master and the PostgreSQL leader the
   drills left kept (the leader is not the inventory's postgres_primary by then), and no secret
   value in Ansible's output.
3. No secret value on any host: journal, /var/log, world-readable files under /etc and /opt, and the
   command lines of every process (secret_scan.py).

Figures go to benchmarks/results/site_live_drill.json and are printed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import testinfra.utils.ansible_runner
from cluster_hosts import REPO, SITE_LIVE_CHANGE, assert_served, secret, sh, site_yml, site_yml_under_load
from cluster_hosts import secrets as all_secrets
from secret_scan import scan_host, scan_text

sys.path.insert(0, str(REPO / "benchmarks"))
from pg_failover import Drill
from rolling_update import changed_tasks

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
ALL_HOSTS = sorted(RUNNER.get_hosts("all"))
WORKER_HOSTS = sorted(set(RUNNER.get_hosts("celery_worker")) | set(RUNNER.get_hosts("celery_beat")))
BEAT_HOSTS = sorted(RUNNER.get_hosts("celery_beat"))
RESULTS = REPO / "benchmarks" / "results"
FIGURES: dict[str, Any] = {}
#: The drill's settings change, given to both runs (an operator keeps it in the inventory).
CHANGE = SITE_LIVE_CHANGE
#: What a settings change of the app does on an API or Celery host (site.yml --tags api,celery): the
#: environment file, the check that finds the services on an older environment, their restarts, and
#: the drain and return of each API host on the load balancers.
SETTING_CHANGE_TASKS = {
    "tutormax.cluster.app_release : Write the environment file (holds secrets; root-owned, group-readable, "
    "never logged)",
    "tutormax.cluster.app_release : Find the services that run another release or environment than the live ones",
    "Wait for the requests in flight, switch to the release, restart and pass the health gate",
    "tutormax.cluster.nginx_lb : Write the upstreams, check them with nginx -t, reload and wait until nginx answers",
    "Switch to the release and restart (warm shutdown)",
}

# Per process of a unit (main process and its children): the value of one environment variable.
# The environment holds secrets: only that one value leaves the host.
ENV_OF_UNIT = r"""
import os, subprocess, sys
unit, name = sys.argv[1], sys.argv[2].encode()
main = int(subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit], capture_output=True,
                          text=True).stdout.strip() or 0)
parents = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
        parents[int(pid)] = int(stat[stat.rindex(")") + 2:].split()[1])
    except OSError:
        pass
tree, grew = {main} if main else set(), True
while grew:
    more = {p for p, pp in parents.items() if pp in tree} - tree
    grew, tree = bool(more), tree | more
for pid in sorted(tree):
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        continue
    values = [e.split(b"=", 1)[1].decode() for e in env if e.startswith(name + b"=")]
    print(pid, values[0] if values else "-")
"""


def api_hosts() -> list[str]:
    """The `api` group as the rolling update left it: the scenario's hosts, and cluster-api4 when that
    test added it (it then runs the API)."""
    hosts = sorted(RUNNER.get_hosts("api"))
    extra = [h for h in ALL_HOSTS if h not in hosts and h.startswith("cluster-api")]
    running = [h for h in extra if sh(h, "systemctl", "is-active", "tutormax-api", check=False).strip() == "active"]
    return sorted(hosts + running)


def extra_inventory(tmp: Path) -> tuple[str, ...]:
    """The inventory file that puts the API hosts the rolling update added into `api` (as its harness did)."""
    added = [h for h in api_hosts() if h not in RUNNER.get_hosts("api")]
    if not added:
        return ()
    path = tmp / "api-added.json"
    path.write_text(json.dumps({"api": {"hosts": {h: {} for h in added}}}))
    return (str(path),)


def values_of(host: str, unit: str, name: str) -> list[str]:
    out = sh(host, "python3", "-c", ENV_OF_UNIT, unit, name)
    return [line.split(" ", 1)[1] for line in out.splitlines() if " " in line]


def live_release(host: str) -> str:
    return Path(sh(host, "readlink", "-f", "/opt/tutormax/current").strip()).name


def save() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "site_live_drill.json").write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")
    print(json.dumps(FIGURES, indent=2, default=str))


def leaders() -> dict[str, str]:
    """Who leads now: the Redis master as the first Sentinel names it, and Patroni's leader."""
    auth = {"REDISCLI_AUTH": secret("vault_redis_sentinel_password")}
    sentinel = sorted(RUNNER.get_hosts("redis_sentinel"))[0]
    master = sh(sentinel, "redis-cli", "--no-auth-warning", "-p", "26379", "SENTINEL", "get-master-addr-by-name",
                "tutormax-master", env=auth).split()  # fmt: skip
    pg = Drill(members=tuple(sorted(RUNNER.get_hosts("postgres"))), client="", app_password="")
    return {"redis_master": master[0] if master else "", "patroni_leader": pg.leader() or ""}


@pytest.fixture(scope="module")
def drilled() -> dict[str, str]:
    """The leaders the drills left (test_pg_failover.py, test_redis_failover.py), before site.yml runs here."""
    found = leaders()
    FIGURES["leaders_before"] = found
    # The PostgreSQL drills moved the leader off the inventory's postgres_primary (a failover, then a
    # switchover to the synchronous standby): keeping it is then something site.yml has to do.
    assert found["patroni_leader"], "no Patroni leader"
    assert found["patroni_leader"] not in RUNNER.get_hosts("postgres_primary"), found
    return found


@pytest.fixture(scope="module")
def inventories(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    return extra_inventory(tmp_path_factory.mktemp("inventory"))


@pytest.fixture(scope="module")
def change_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("vars") / "change.json"
    path.write_text(json.dumps(CHANGE))
    return str(path)


@pytest.mark.timeout(1200)
def test_an_environment_change_rolls_over_api_and_celery_hosts_without_a_failed_request(
    inventories: tuple[str, ...], change_file: str, drilled: dict[str, str]
) -> None:
    api = api_hosts()
    units = {h: ["tutormax-api.service"] for h in api}
    for h in WORKER_HOSTS:
        units.setdefault(h, [])
        units[h] += ["tutormax-worker@1.service"] + (["tutormax-beat.service"] if h in BEAT_HOSTS else [])
    before = {h: {u: values_of(h, u, "LOG_LEVEL") for u in us} for h, us in units.items()}
    assert all(v and "WARNING" not in v for us in before.values() for v in us.values()), before
    releases = {h: live_release(h) for h in units}
    args = ("--tags", "api,celery", "--diff", "-e", f"@{change_file}")
    rc, changed, output, figures = site_yml_under_load("site_live_drill", *args, inventories=inventories)
    after = {h: {u: values_of(h, u, "LOG_LEVEL") for u in us} for h, us in units.items()}
    # The order the API hosts came back in, from the rolling restart's report lines.
    returned = re.findall(r"(\S+) runs \S+ and serves through every load balancer again, ([\d.]+) s", output)
    tasks = sorted({t.rsplit(": ", 1)[0] for t in changed_tasks(output)})
    secrets = all_secrets()
    FIGURES["environment_change"] = figures | {
        "command": "site.yml " + " ".join(args),
        "changed": {h: n for h, n in changed.items() if n},
        "changed_tasks": tasks,
        "api_hosts_out_of_pool_s": {h: float(s) for h, s in returned},
        "processes_checked": sum(len(v) for us in after.values() for v in us.values()),
        "secrets_found": scan_text(output, secrets),
    }
    save()
    assert rc == 0, output[-4000:]
    assert_served(figures)
    # Every API host went through the drain, restart, gate and return, one after the other.
    assert [h for h, _ in returned] == api, returned
    # Every process of every unit (gunicorn's workers, Celery's pool) runs with the new setting.
    wrong = {h: {u: v for u, v in us.items() if not v or set(v) != {"WARNING"}} for h, us in after.items()}
    assert not any(wrong.values()), wrong
    assert {h: live_release(h) for h in units} == releases, "site.yml changed the release"
    assert leaders() == drilled, "site.yml moved the Redis master or the PostgreSQL leader"
    # Only the hosts whose setting changed, and only by what a settings change does: anything else
    # is something the rolling update (rolling_update.yml, the test before) left unlike site.yml.
    # (The load balancers change too: the rolling restart drains each API host there and returns it.)
    hosts_changed = {h for h, n in changed.items() if n}
    assert set(units) <= hosts_changed <= set(units) | set(RUNNER.get_hosts("lb")), changed
    assert set(tasks) <= SETTING_CHANGE_TASKS, sorted(set(tasks) - SETTING_CHANGE_TASKS)
    assert not FIGURES["environment_change"]["secrets_found"], "secret values in the output of site.yml --diff"


@pytest.mark.timeout(900)
def test_the_next_run_at_vvv_changes_nothing_keeps_the_release_and_the_leaders_and_prints_no_secret(
    inventories: tuple[str, ...], change_file: str, drilled: dict[str, str]
) -> None:
    shipped = (REPO / "app" / "src" / "tutormax" / "VERSION").read_text().strip()
    hosts = sorted({*api_hosts(), *WORKER_HOSTS})
    releases = {h: live_release(h) for h in hosts}
    # After the rolling update (test_rolling_update.py), the hosts run a release site.yml does not ship.
    assert set(releases.values()) != {shipped}, f"run after test_rolling_update.py: every host runs {shipped}"
    assert len(set(releases.values())) == 1, releases
    rc, changed, output = site_yml("-vvv", "-e", f"@{change_file}", inventories=inventories)
    secrets = all_secrets()
    leaked = scan_text(output, secrets)
    versions = {h: live_release(h) for h in hosts}
    FIGURES["next_run_vvv"] = {
        "rc": rc,
        "changed": {h: n for h, n in changed.items() if n},
        "output_bytes": len(output),
        "secrets_searched": len(secrets),
        "secrets_found": leaked,
        "release": sorted(set(versions.values())),
        "shipped": shipped,
        "leaders_after": leaders(),
    }
    save()
    assert rc == 0, output[-4000:]
    assert changed, "no PLAY RECAP in the output"
    assert not any(changed.values()), f"site.yml changed: {FIGURES['next_run_vvv']['changed']}"
    assert versions == releases, "site.yml without a version changed the release"
    assert FIGURES["next_run_vvv"]["leaders_after"] == drilled, "site.yml moved the Redis master or PostgreSQL leader"
    assert f"Release {releases[hosts[0]]} (what the app hosts run)" in " ".join(output.split())
    assert not leaked, f"secret values in site.yml -vvv output: {leaked}"


@pytest.mark.timeout(600)
def test_no_secret_value_in_any_journal_log_readable_file_or_command_line() -> None:
    secrets = all_secrets()
    # Two hosts at a time: the scan of the log host's journal (every host's, a few hundred MB by now)
    # takes as long as most of the others together.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(ALL_HOSTS, pool.map(lambda h: scan_host(h, secrets), ALL_HOSTS), strict=True))
    hits = {h: r["hits"] for h, r in results.items() if r["hits"]}
    FIGURES["secret_scan"] = {
        "hosts": len(results),
        "secrets": len(secrets),
        "scanned": {h: r["scanned"] for h, r in results.items()},
        "hits": hits,
    }
    save()
    assert all(r["scanned"]["journal_bytes"] > 0 and r["scanned"]["processes"] > 0 for r in results.values())
    assert not hits, f"secret values found (name, place): {hits}"
