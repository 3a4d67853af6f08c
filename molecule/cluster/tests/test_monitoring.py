"""Monitoring, alerting and central logs on the whole stack (issue 21).

Runs after test_lb_failover.py (file order), on a healthy cluster:
1. every scrape target of Prometheus (tutormax.cluster.scrape_configs: one job per kind of target)
   is up, and each job has the targets the inventory implies;
2. every Celery worker stopped: TutorMaxCeleryNoWorker fires in Alertmanager within 2 minutes and
   reaches the webhook receiver (host_vars/cluster-mon1.yml points it at this machine); after the
   workers start again, it is resolved within 2 minutes, and the resolution is delivered too;
3. at the same time, one API instance stopped on a host without a worker: TutorMaxAPIDown fires for
   it, and no other alert is active for that host (its generic target-down alert is inhibited);
4. a request id sent through the load balancer is in the central journal on the monitoring host:
   on nginx's access-log entry, and on the entry of the API instance that served it (X-Instance-Id);
   entries logged while the log host's container is stopped arrive once it runs again;
5. the dashboard, in headless Chromium, renders every panel with data (tests/browser_check.py); the
   screenshot is saved to benchmarks/results/dashboard.png.
Times go to benchmarks/results/cluster_monitoring.json and are printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import testinfra.utils.ansible_runner
from cluster_hosts import LB, REPO, RESULTS, save_figures, scrape_targets, sh

sys.path.insert(0, str(REPO / "tests"))
from browser_check import check_dashboard, check_png, render

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
MON = sorted(RUNNER.get_hosts("monitoring"))[0]
WORKER_HOSTS = sorted(RUNNER.get_hosts("celery_worker"))
API_HOSTS = sorted(RUNNER.get_hosts("api"))
#: The API drill's host: one that runs no Celery worker (the worker drill runs at the same time).
API_DOWN_HOST = sorted(set(API_HOSTS) - set(WORKER_HOSTS))[-1]
ALERT_BOUND_S = 120.0
#: Where Alertmanager delivers (host_vars/cluster-mon1.yml: the network's gateway, this machine).
WEBHOOK = ("10.203.30.1", 19095)
FIGURES: dict[str, Any] = {}


def save() -> None:
    save_figures("cluster_monitoring", FIGURES)


def address(host: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", host],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return out.split()[0]


MON_ADDRESS = address(MON)
PROMETHEUS = f"http://{MON_ADDRESS}:9090"
ALERTMANAGER = f"http://{MON_ADDRESS}:9093"


def until(what: Callable[[], Any], timeout: float, step: float = 2.0) -> tuple[Any, float]:
    """Call ``what`` until it returns something true or ``timeout`` passes: (its last value, seconds)."""
    start = time.monotonic()
    while True:
        value = what()
        elapsed = time.monotonic() - start
        if value or elapsed > timeout:
            return value, elapsed
        time.sleep(step)


def alerts(**labels: str) -> list[dict[str, Any]]:
    """Alertmanager's alerts (active and suppressed) whose labels include ``labels``."""
    found = httpx.get(f"{ALERTMANAGER}/api/v2/alerts", timeout=10).json()
    return [a for a in found if all(a["labels"].get(k) == v for k, v in labels.items())]


class Webhook:
    """Alertmanager's webhook receiver: every notification it POSTs, kept in order."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:  # noqa: ANN401 - http.server's signature
                return

        self.server = ThreadingHTTPServer(WEBHOOK, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notified(self, alertname: str, status: str) -> bool:
        return any(
            n.get("status") == status and n.get("commonLabels", {}).get("alertname") == alertname for n in self.received
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def test_every_target_is_up() -> None:
    def all_up() -> list[dict[str, Any]] | None:
        found = scrape_targets(PROMETHEUS)
        return found if found and all(t["health"] == "up" for t in found) else None

    found, waited = until(all_up, 90)
    found = found or scrape_targets(PROMETHEUS)
    down = [(t["labels"]["job"], t["labels"]["instance"], t.get("lastError")) for t in found if t["health"] != "up"]
    assert not down, f"targets down after {waited:.0f} s: {down}"
    jobs: dict[str, set[str]] = {}
    for t in found:
        jobs.setdefault(t["labels"]["job"], set()).add(t["labels"]["host"])
    FIGURES["targets"] = {job: len(hosts) for job, hosts in sorted(jobs.items())}
    save()
    all_hosts = set(RUNNER.get_hosts("all"))
    assert jobs["node"] == all_hosts
    assert jobs["api"] == set(API_HOSTS)
    assert jobs["celery"] == set(WORKER_HOSTS)
    assert jobs["postgres"] == jobs["patroni"] == set(RUNNER.get_hosts("postgres"))
    assert jobs["etcd"] == set(RUNNER.get_hosts("etcd"))
    assert jobs["redis"] == set(RUNNER.get_hosts("redis"))
    assert jobs["sentinel"] == set(RUNNER.get_hosts("redis_sentinel"))
    assert jobs["nginx"] == jobs["probe"] == set(RUNNER.get_hosts("lb"))
    assert jobs["prometheus"] == jobs["alertmanager"] == {MON}


def worker_units(host: str) -> list[str]:
    out = sh(host, "systemctl", "list-units", "--plain", "--no-legend", "--state=active", "tutormax-worker@*")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def no_worker_drill(webhook: Webhook) -> dict[str, Any]:
    """Every Celery worker stopped until TutorMaxCeleryNoWorker fires and is delivered, then started
    until it resolves and the resolution is delivered."""
    units = {h: worker_units(h) for h in WORKER_HOSTS}
    assert all(units.values()), units
    assert not alerts(alertname="TutorMaxCeleryNoWorker"), "the alert is active before the drill"
    try:
        for host, names in units.items():
            sh(host, "systemctl", "stop", *names)
        stopped = time.monotonic()
        firing, fire_s = until(lambda: alerts(alertname="TutorMaxCeleryNoWorker"), ALERT_BOUND_S + 30)
        until(lambda: webhook.notified("TutorMaxCeleryNoWorker", "firing"), 60)
        notify_s = time.monotonic() - stopped
    finally:
        for host, names in units.items():
            sh(host, "systemctl", "start", *names)
    started = time.monotonic()
    resolved, resolve_s = until(lambda: not alerts(alertname="TutorMaxCeleryNoWorker"), ALERT_BOUND_S + 30)
    until(lambda: webhook.notified("TutorMaxCeleryNoWorker", "resolved"), 90)
    resolved_notify_s = time.monotonic() - started
    return {
        "firing": firing,
        "resolved": resolved,
        "fired_s": round(fire_s, 1),
        "delivered_s": round(notify_s, 1),
        "resolved_s": round(resolve_s, 1),
        "resolution_delivered_s": round(resolved_notify_s, 1),
    }


def api_down_drill(host: str) -> dict[str, Any]:
    """tutormax-api stopped on ``host`` until TutorMaxAPIDown fires and the generic target-down alert
    (for: 1m) has had its time to arrive, then started until no alert of the host is left."""
    assert not alerts(host=host), alerts(host=host)
    sh(host, "systemctl", "stop", "tutormax-api")
    try:
        fired, fire_s = until(
            lambda: [a for a in alerts(alertname="TutorMaxAPIDown", host=host) if a["status"]["state"] == "active"],
            ALERT_BOUND_S,
        )
        # The generic target-down alert fires later (for: 1m); it must arrive inhibited.
        until(lambda: alerts(alertname="TutorMaxTargetDown", host=host), 90)
        time.sleep(10)  # anything else of that host, had it not been inhibited
        for_host = alerts(host=host)
    finally:
        sh(host, "systemctl", "start", "tutormax-api")
    _, back_s = until(lambda: not alerts(host=host), ALERT_BOUND_S, step=3)
    return {
        "host": host,
        "fired": bool(fired),
        "fired_s": round(fire_s, 1),
        "active": sorted(a["labels"]["alertname"] for a in for_host if a["status"]["state"] == "active"),
        "suppressed": sorted(a["labels"]["alertname"] for a in for_host if a["status"]["state"] == "suppressed"),
        "resolved_s": round(back_s, 1),
        "left": alerts(host=host),
    }


@pytest.fixture(scope="module")
def alert_drills(webhook: Webhook) -> dict[str, Any]:
    """Both alert drills at once: each spends its 80-90 s waiting on Prometheus' `for:` and
    Alertmanager's timers, and they touch different alerts and hosts (the API instance is stopped on
    an API host that runs no worker, so the worker drill adds nothing of that host). A drill that
    raised leaves its exception for its test."""
    with ThreadPoolExecutor(2) as pool:
        runs = {
            "no_worker": pool.submit(no_worker_drill, webhook),
            "api_down": pool.submit(api_down_drill, API_DOWN_HOST),
        }
        found: dict[str, Any] = {}
        for name, run in runs.items():
            try:
                found[name] = run.result()
            except Exception as error:  # handed to the drill's test
                found[name] = error
    FIGURES.update({k: {f: v for f, v in r.items() if f not in ("firing", "resolved", "left")}
                    for k, r in found.items() if isinstance(r, dict)})  # fmt: skip
    FIGURES["no_worker_notifications"] = len(webhook.received)
    save()
    return found


def drill(found: dict[str, Any], name: str) -> dict[str, Any]:
    result = found[name]
    if isinstance(result, BaseException):
        raise result
    return result


def test_no_worker_alert_fires_when_every_worker_stops_and_resolves_when_they_start(
    webhook: Webhook, alert_drills: dict[str, Any]
) -> None:
    found = drill(alert_drills, "no_worker")
    firing, fire_s, resolve_s = found["firing"], found["fired_s"], found["resolved_s"]
    assert firing, f"TutorMaxCeleryNoWorker not in Alertmanager {fire_s:.0f} s after every worker stopped"
    assert fire_s <= ALERT_BOUND_S, found
    assert firing[0]["labels"]["severity"] == "critical"
    assert firing[0]["annotations"].get("runbook"), firing[0]
    assert webhook.notified("TutorMaxCeleryNoWorker", "firing"), "Alertmanager did not deliver the alert"
    assert found["resolved"], f"TutorMaxCeleryNoWorker still active {resolve_s:.0f} s after the workers started"
    assert resolve_s <= ALERT_BOUND_S, found
    assert webhook.notified("TutorMaxCeleryNoWorker", "resolved"), "Alertmanager did not deliver the resolution"


def test_a_stopped_api_instance_fires_its_alert_and_nothing_else_for_that_host(alert_drills: dict[str, Any]) -> None:
    found = drill(alert_drills, "api_down")
    assert found["fired"], f"TutorMaxAPIDown did not fire for {found['host']} within {ALERT_BOUND_S:.0f} s"
    assert found["active"] == ["TutorMaxAPIDown"], found
    assert "TutorMaxTargetDown" in found["suppressed"], f"the generic alert was not there to inhibit: {found}"
    assert not found["left"], found["left"]


def central_journal(pattern: str) -> list[dict[str, Any]]:
    out = sh(
        MON, "journalctl", "-D", "/var/log/journal/remote", "--no-pager", "-o", "json", "--grep", pattern, check=False
    )
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_a_request_id_is_found_in_the_central_journal_on_the_instance_that_served_it() -> None:
    request_id = f"drill-{uuid.uuid4().hex}"
    response = httpx.get(f"{LB}/api/health", headers={"X-Request-ID": request_id}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id
    instance = response.headers["x-instance-id"]

    def both() -> list[dict[str, Any]] | None:
        entries = central_journal(request_id)
        idents = {e.get("SYSLOG_IDENTIFIER") for e in entries}
        return entries if {"tutormax-api", "nginx_access"} <= idents else None

    entries, found_s = until(both, 60)
    entries = entries or central_journal(request_id)
    seen = sorted({(e.get("_HOSTNAME"), e.get("SYSLOG_IDENTIFIER")) for e in entries})
    FIGURES["request_id"] = {"found_s": round(found_s, 1), "instance": instance, "entries": seen}
    save()
    api = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "tutormax-api"]
    assert [e["_HOSTNAME"] for e in api] == [instance], seen
    assert f"request_id={request_id}" in api[0]["MESSAGE"], api[0]["MESSAGE"]
    nginx = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "nginx_access"]
    assert len(nginx) == 1, seen
    assert nginx[0]["_HOSTNAME"] in RUNNER.get_hosts("lb"), seen
    assert json.loads(nginx[0]["MESSAGE"])["request_id"] == request_id, nginx[0]["MESSAGE"]


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def docker(*argv: str) -> None:
    subprocess.run(["docker", *argv], capture_output=True, text=True, check=True, timeout=120)


def test_entries_logged_while_the_log_host_is_down_arrive_when_it_is_back() -> None:
    """The log host's container stopped (its fixed address comes back with it): entries logged in the
    meantime on another host reach the central journal once it runs again, none lost."""
    marker = f"drill-journal-{uuid.uuid4().hex}"
    host = API_HOSTS[0]
    docker("stop", "--time", "10", MON)
    try:
        for n in range(3):
            sh(host, "systemd-cat", "-t", "tutormax-drill", "echo", f"{marker} {n}")
            time.sleep(2)
        time.sleep(10)  # journal-upload has failed and is retrying by now
    finally:
        docker("start", MON)
    started = time.monotonic()
    entries, _ = until(lambda: len(central_journal(marker)) >= 3 and central_journal(marker), 120, step=3)
    FIGURES["journal_restart"] = {"arrived_s": round(time.monotonic() - started, 1), "entries": len(entries or [])}
    save()
    assert entries, f"nothing logged while the log host was down arrived within 120 s ({marker})"
    assert sorted(e["MESSAGE"] for e in entries) == [f"{marker} {n}" for n in range(3)], entries
    assert {e["_HOSTNAME"] for e in entries} == {host}
    # Prometheus and Alertmanager came back with the host.
    _, ready_s = until(lambda: answers(f"{PROMETHEUS}/-/ready"), 60)
    FIGURES["journal_restart"]["prometheus_ready_s"] = round(ready_s, 1)
    save()


def test_the_dashboard_renders_every_panel_with_data_in_chromium() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    shot = RESULTS / "dashboard.png"
    page = render(f"http://{MON_ADDRESS}/", screenshot=shot)
    problems = check_dashboard(page.dom) + check_png(shot)
    FIGURES["dashboard"] = {
        "screenshot": str(shot.relative_to(REPO)),
        "seconds": round(page.seconds, 1),
        "problems": problems,
    }
    save()
    assert not problems, problems
