"""Scaling in by inventory (issue 22), after test_site_live.py in file order: hosts moved into the group
`retired`, then site.yml's retire plays (`--tags retire`), under load through the load balancers.

1. Retiring Patroni's leader is refused before anything changes (rc != 0, changed=0, the message says
   to switch over first).
2. Two hosts retired in one run (scale-in of two tiers at once): the API host the rolling update added
   (cluster-api4) and a PostgreSQL replica (neither the leader nor the inventory's postgres_primary).
   No failed request. The API host is gone from the upstreams of both load balancers, from pg_hba
   and from Prometheus' targets, tutormax-api stopped and disabled. The replica's Patroni is stopped
   and disabled, the member gone from Patroni's list, its replication slot dropped on the leader,
   pg_hba and Prometheus without it. The next run changes nothing.
3. Celery worker instances on one host raised from 1 to 2 and back (`celery_worker_instances`,
   `site.yml --tags celery --limit <host>,<monitoring host>,localhost`) under load, with export tasks
   held running (rolling_update.py's lock holder): the second instance starts and Prometheus scrapes
   it, then it stops with a clean warm shutdown, during which its own metrics (tasks succeeded) still
   count up (the tasks it ran at SIGTERM finished), and Prometheus drops it; every export requested
   meanwhile ends done; no failed request; nothing changed outside the two hosts. (The journal cannot
   tell: test_site_live.py left the log level at WARNING, which hides Celery's "succeeded" lines.)

Figures go to benchmarks/results/sizing_drill.json and are printed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import testinfra.utils.ansible_runner
from cluster_hosts import (
    LB,
    RATE,
    REPO,
    SITE_LIVE_CHANGE,
    address_of,
    assert_served,
    inventory_copy,
    load_figures,
    psql,
    save_figures,
    scrape_targets,
    sh,
    site_yml,
    site_yml_under_load,
)

sys.path.insert(0, str(REPO / "benchmarks"))
import loadgen
from pg_failover import Drill
from rolling_update import HOLDER, Cluster

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
LB_HOSTS = sorted(RUNNER.get_hosts("lb"))
PG_HOSTS = sorted(RUNNER.get_hosts("postgres"))
SPARE_API = "cluster-api4"
PROMETHEUS = f"http://{address_of(sorted(RUNNER.get_hosts('monitoring'))[0])}:9090"
WORKER = "cluster-worker1"
#: tutormax_celery_metrics_port: instance N of a worker serves its metrics on this port + N - 1.
WORKER_METRICS_PORT = 9808
FIGURES: dict[str, Any] = {}


def inventory_with(tmp: Path, retired: list[str]) -> str:
    """The scenario's inventory with ``retired`` moved out of every group into `retired`."""
    return inventory_copy(tmp, dict.fromkeys(retired, ()), retired)


def upstream_servers(lb: str) -> str:
    return sh(lb, "cat", "/etc/nginx/conf.d/tutormax-upstreams.conf")


def unit_state(host: str, unit: str) -> tuple[str, str]:
    active = sh(host, "systemctl", "is-active", unit, check=False).strip()
    enabled = sh(host, "systemctl", "is-enabled", unit, check=False).strip()
    return active, enabled


def slots(leader: str) -> set[str]:
    return set(psql(leader, "SELECT slot_name FROM pg_replication_slots").split())


def drill() -> Drill:
    return Drill(members=tuple(PG_HOSTS), client="", app_password="")


@pytest.mark.timeout(600)
def test_retiring_the_patroni_leader_is_refused_with_nothing_changed(tmp_path: Path) -> None:
    leader = drill().leader()
    assert leader
    start = time.monotonic()
    rc, changed, output = site_yml("--tags", "retire", base=inventory_with(tmp_path, [leader]))
    FIGURES["leader_refused"] = {"rc": rc, "seconds": round(time.monotonic() - start, 1), "changed": changed}
    save_figures("sizing_drill", FIGURES)
    assert rc != 0
    assert f"{leader} is the Patroni leader: switch over first" in " ".join(output.split()), output[-3000:]
    assert sum(changed.values()) == 0, changed
    assert unit_state(leader, "patroni@15-main.service")[0] == "active"


@pytest.fixture(scope="module")
def retirement(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One scale-in of two hosts at once, under load: the API host the rolling update added
    (cluster-api4) and a PostgreSQL replica (neither the leader nor the inventory's postgres_primary)
    moved into `retired`, then `site.yml --tags retire`. What the tests below check, and the
    inventory (base and extra) that is the cluster's truth from then on."""
    tmp = tmp_path_factory.mktemp("retired")
    assert unit_state(SPARE_API, "tutormax-api.service")[0] == "active", "the rolling update added no API host"
    spare = address_of(SPARE_API)
    assert all(f"{spare}:8000" in upstream_servers(lb) for lb in LB_HOSTS)
    pg = drill()
    leader = pg.leader()
    primary = sorted(RUNNER.get_hosts("postgres_primary"))
    replica = next(h for h in PG_HOSTS if h != leader and h not in primary)
    assert replica.replace("-", "_") in slots(leader)
    # cluster-api4 is in `api` only through the extra inventory the rolling update's tests pass: here it
    # is in `retired` instead, beside the replica.
    extra = tmp / "retired.json"
    extra.write_text(json.dumps({"retired": {"hosts": {SPARE_API: {}}}}))
    base = inventory_with(tmp, [replica])
    rc, changed, output, figures = site_yml_under_load(
        "sizing_retire", "--tags", "retire", base=base, inventories=(str(extra),)
    )
    FIGURES["retire"] = figures | {"changed": changed, "hosts": [SPARE_API, replica]}
    save_figures("sizing_drill", FIGURES)
    return {
        "rc": rc, "output": output, "figures": figures, "base": base, "extra": str(extra),
        "spare": spare, "replica": replica, "leader": leader, "pg": pg,
    }  # fmt: skip


@pytest.mark.timeout(900)
def test_an_api_host_and_a_replica_retired_together_under_load_fail_no_request(retirement: dict[str, Any]) -> None:
    assert retirement["rc"] == 0, retirement["output"][-4000:]
    assert_served(retirement["figures"])


def test_the_retired_api_host_is_drained_from_every_load_balancer_then_stopped(retirement: dict[str, Any]) -> None:
    spare = retirement["spare"]
    assert [lb for lb in LB_HOSTS if f"{spare}:8000" in upstream_servers(lb)] == []
    assert unit_state(SPARE_API, "tutormax-api.service") == ("inactive", "disabled")
    # Prometheus no longer scrapes it: no alert pages for a host taken out on purpose.
    scraped = {t["labels"].get("host") for t in scrape_targets(PROMETHEUS)}
    assert SPARE_API not in scraped, sorted(h for h in scraped if h)
    # The members that still serve (the replica retired beside it keeps the files it had).
    serving = [h for h in PG_HOSTS if h != retirement["replica"]]
    hba = {h: sh(h, "sh", "-c", "cat /etc/postgresql/*/main/pg_hba.conf") for h in serving}
    assert [h for h, text in hba.items() if spare in text] == []


def test_the_retired_replica_leaves_patroni_and_its_slot_is_dropped(retirement: dict[str, Any]) -> None:
    replica, leader = retirement["replica"], retirement["leader"]
    assert unit_state(replica, "patroni@15-main.service") == ("inactive", "disabled")
    assert replica not in [m["Member"] for m in retirement["pg"].cluster()]
    assert replica.replace("-", "_") not in slots(leader)
    gone = address_of(replica)
    hba = {h: sh(h, "sh", "-c", "cat /etc/postgresql/*/main/pg_hba.conf") for h in PG_HOSTS if h != replica}
    assert [h for h, text in hba.items() if gone in text] == []
    scraped = {t["labels"].get("host") for t in scrape_targets(PROMETHEUS)}
    assert replica not in scraped, sorted(h for h in scraped if h)


@pytest.mark.timeout(600)
def test_the_next_retire_run_changes_nothing(retirement: dict[str, Any]) -> None:
    rc, changed, output = site_yml("--tags", "retire", base=retirement["base"], inventories=(retirement["extra"],))
    FIGURES["retire_rerun"] = {"rc": rc, "changed": changed}
    save_figures("sizing_drill", FIGURES)
    assert rc == 0, output[-3000:]
    assert sum(changed.values()) == 0, changed


def worker_units(host: str) -> list[str]:
    out = sh(host, "systemctl", "list-units", "--no-legend", "--plain", "--state=active", "tutormax-worker@*")
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


class Exports:
    """Export tasks requested every ``interval`` s while the instances change, then followed to their end."""

    def __init__(self, cluster: Cluster, interval: float = 0.5, limit: int = 600) -> None:
        self.cluster, self.interval, self.limit = cluster, interval, limit
        self.ids: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set() and len(self.ids) < self.limit:
            self.cluster.request_export(self.ids, self.errors)
            self.stop.wait(self.interval)

    def follow(self, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while True:
            for export_id in self.ids:
                if states.get(export_id) not in ("done", "failed"):
                    try:
                        states[export_id] = self.cluster.http.get(f"/api/exports/{export_id}").json()["status"]
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        states[export_id] = f"unreadable: {type(exc).__name__}"
            if all(v in ("done", "failed") for v in states.values()) or time.monotonic() > deadline:
                return states
            time.sleep(2)


class SucceededCount:
    """Polls one worker instance's own metrics: (time, tasks succeeded so far, or None when it does not
    answer), until stopped."""

    def __init__(self, url: str, interval: float = 0.25) -> None:
        self.url, self.interval = url, interval
        self.samples: list[tuple[float, float | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=1.0) as client:
            while not self.stop.is_set():
                value: float | None = None
                try:
                    text = client.get(self.url).text
                    value = sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in text.splitlines()
                        if line.startswith("tutormax_celery_tasks_total{") and 'state="succeeded"' in line
                    )
                except (httpx.HTTPError, ValueError, IndexError):
                    value = None
                self.samples.append((time.time(), value))
                self.stop.wait(self.interval)

    def after(self, sigterm: float) -> float:
        """Tasks the instance counted as succeeded after ``sigterm`` (epoch), as far as it answered."""
        before = [v for t, v in self.samples if t < sigterm and v is not None]
        later = [v for t, v in self.samples if t >= sigterm and v is not None]
        return max(later) - before[-1] if before and later else 0.0


def worker_targets(expected: list[str], wait: float = 30.0) -> list[str]:
    """The worker instances of WORKER that Prometheus scrapes, once they are ``expected`` or after ``wait``
    seconds (Prometheus applies a reload's scrape jobs a moment after systemd's reload returns)."""
    deadline = time.monotonic() + wait
    while True:
        found = sorted(
            t["labels"].get("worker", "")
            for t in scrape_targets(PROMETHEUS)
            if t["labels"].get("job") == "celery" and t["labels"].get("host") == WORKER
        )
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(1)


@pytest.mark.timeout(900)
def test_worker_instances_raised_to_two_and_back_lose_no_task(tmp_path: Path, retirement: dict[str, Any]) -> None:
    change = tmp_path / "change.json"
    change.write_text(json.dumps(SITE_LIVE_CHANGE))
    two = tmp_path / "two-instances.json"
    two.write_text(json.dumps({"celery_worker": {"hosts": {WORKER: {"celery_worker_instances": 2}}}}))
    assert worker_units(WORKER) == ["tutormax-worker@1.service"]
    # The operator's command for one host's instances: its Celery play, and Prometheus' scrape list
    # (the monitoring host's play), limited to those two hosts. The inventory is the cluster's as the
    # retirement above left it.
    monitoring = sorted(RUNNER.get_hosts("monitoring"))
    argv = ("--tags", "celery", "--limit", ",".join([WORKER, *monitoring, "localhost"]), "-e", f"@{change}")
    base, extra = retirement["base"], (retirement["extra"],)
    cluster = Cluster(INVENTORY, LB, [], [WORKER])
    started = time.time()
    # Every export not yet done waits for a row lock, released every 3 s: a task is running in each
    # instance when the second one gets SIGTERM.
    holder = cluster.hold_unfinished_exports(3.0, seconds=600, log=tmp_path / "holder.log")
    exports = Exports(cluster)
    load = loadgen.LoadGenerator(LB, RATE)
    load.start(900)
    exports.thread.start()
    try:
        t0 = time.monotonic()
        rc_up, changed_up, out_up = site_yml(*argv, base=base, inventories=(*extra, str(two)), log="sizing_workers_up")
        up_s, units_up, targets_up = time.monotonic() - t0, worker_units(WORKER), worker_targets(["1", "2"])
        time.sleep(10)  # the second instance takes its share of the exports
        counter = SucceededCount(f"http://{address_of(WORKER)}:{WORKER_METRICS_PORT + 1}/metrics")
        counter.thread.start()
        t0 = time.monotonic()
        rc_down, changed_down, out_down = site_yml(*argv, base=base, inventories=extra, log="sizing_workers_down")
        down_s, units_down, targets_down = time.monotonic() - t0, worker_units(WORKER), worker_targets(["1"])
        counter.stop.set()
    finally:
        exports.stop.set()
        exports.thread.join(15)
        result = load.stop()
        cluster.psql(
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{HOLDER}'"  # noqa: S608
        )
        holder.kill()
    states = exports.follow(240)
    shutdowns = [d for d in cluster.warm_shutdowns(WORKER, started) if d["unit"] == "tutormax-worker@2.service"]
    finished = [counter.after(d["sigterm"]) for d in shutdowns]
    by_status: dict[str, int] = {}
    for status in states.values():
        by_status[status] = by_status.get(status, 0) + 1
    FIGURES["worker_instances"] = {
        "command": " ".join(argv),
        "up": {"rc": rc_up, "seconds": round(up_s, 1), "changed": changed_up, "units": units_up, "scraped": targets_up},
        "down": {
            "rc": rc_down,
            "seconds": round(down_s, 1),
            "changed": changed_down,
            "units": units_down,
            "scraped": targets_down,
        },
        "exports": {"requested": len(exports.ids), "by_status": by_status, "request_errors": exports.errors[:10]},
        "warm_shutdowns": shutdowns,
        "succeeded_after_sigterm": finished,
        "metrics_answers": sum(v is not None for _, v in counter.samples),
    }
    assert rc_up == 0, out_up[-4000:]
    assert rc_down == 0, out_down[-4000:]
    FIGURES["worker_instances"].update(load_figures("sizing_worker_instances", result))
    save_figures("sizing_drill", FIGURES)
    assert_served(FIGURES["worker_instances"])
    assert units_up == ["tutormax-worker@1.service", "tutormax-worker@2.service"]
    assert units_down == ["tutormax-worker@1.service"]
    assert targets_up == ["1", "2"], targets_up
    assert targets_down == ["1"], targets_down
    # Only the two hosts of --limit changed (the localhost plays decide, they change nothing).
    assert {h for h, n in {**changed_up, **changed_down}.items() if n} <= {WORKER, *monitoring}
    assert sh(WORKER, "systemctl", "is-enabled", "tutormax-worker@2.service", check=False).strip() != "enabled"
    assert exports.ids, "no export was requested"
    assert not exports.errors, exports.errors[:10]
    assert by_status == {"done": len(exports.ids)}, by_status
    # Every stop of the second instance was a clean warm shutdown. The last one is the scale-down; an
    # earlier one happens when the scale-up run also rolls worker1 for another change (after a retired
    # replica, its database URLs: --tags retire leaves them to the next site.yml run).
    assert shutdowns, "tutormax-worker@2 was never stopped"
    assert {d["ended"] for d in shutdowns} == {"clean"}, shutdowns
    assert finished[-1] > 0, f"tutormax-worker@2 counted no task succeeded after its SIGTERM: {counter.samples[-20:]}"
