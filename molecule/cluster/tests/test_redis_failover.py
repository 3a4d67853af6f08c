"""The Redis master SIGKILLed while exports are requested through the load balancer (issue 17).

The Sentinels promote a replica; the API's sends and the Celery workers follow the new master with no
manual step: every export requested before, during and after the failover ends `done`, every worker
answers a ping by its name within 30 s of the promotion. Runs after test_pg_failover.py and before
test_rolling_update.py, which then rolls a release over the new topology; test_site_live.py's runs
of site.yml must keep the new master and the PostgreSQL leader (changed=0 at the second). The
figures are printed and saved to benchmarks/results/redis_failover_drill.json.
"""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest
import testinfra.utils.ansible_runner
from cluster_hosts import LB, REPO, address_of, secret, sh

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
REDIS_HOSTS = sorted(RUNNER.get_hosts("redis"))
WORKER_HOSTS = sorted(RUNNER.get_hosts("celery_worker"))
BEAT_HOSTS = sorted(RUNNER.get_hosts("celery_beat"))
MASTER_NAME = "tutormax-master"
DROPIN = "/run/systemd/system/redis-server.service.d/drill-no-restart.conf"
#: The issue's bound: every worker consumes again within this long after the promotion.
WORKERS_BACK_WITHIN_S = 30
RESULTS = REPO / "benchmarks" / "results"


def sentinel_master(host: str) -> str:
    """The master's address as the Sentinel on ``host`` names it ('' when it does not answer)."""
    out = sh(
        host,
        "bash",
        "-c",
        f"redis-cli --no-auth-warning -p 26379 SENTINEL get-master-addr-by-name {MASTER_NAME} | head -n 1",
        env={"REDISCLI_AUTH": secret("vault_redis_sentinel_password")},
        check=False,
    )
    return out.strip()


def worker_names() -> list[str]:
    return [f"worker1@{h}" for h in WORKER_HOSTS]


def ping_workers(via: str) -> set[str]:
    """The worker names that answer a Celery ping through the broker (run on a Celery host)."""
    out = sh(
        via,
        "bash",
        "-c",
        "set -a; . /etc/tutormax/tutormax.env; set +a; "
        "exec /opt/tutormax/current/bin/python -m celery --app=tutormax.worker.app:app "
        f"inspect ping --timeout 2 --json --destination {','.join(worker_names())} 2>/dev/null",
        check=False,
    )
    try:
        return set(json.loads(out))
    except ValueError:
        return set()


def unit_state(host: str, unit: str) -> dict[str, str]:
    out = sh(host, "systemctl", "show", "-p", "ActiveState", "-p", "NRestarts", "-p", "MainPID", unit)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


class ExportRequests:
    """An export requested through the load balancer every ``interval`` s, each in its own thread
    (a request that waits out the failover does not hold back the next ones)."""

    def __init__(self, interval: float = 0.5, limit: int = 120) -> None:
        self.interval, self.limit = interval, limit
        self.sent: list[tuple[float, int, str]] = []  # (time sent, HTTP status, export id or reason)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.requests: list[threading.Thread] = []

    def _request(self, client: httpx.Client) -> None:
        at = time.time()
        try:
            response = client.post("/api/exports", json={"kind": "tutors"})
            body = response.json() if response.status_code == 202 else {}
            self.sent.append((at, response.status_code, body.get("id") or response.text[:200]))
        except httpx.HTTPError as exc:
            self.sent.append((at, 0, type(exc).__name__))

    def _run(self) -> None:
        with httpx.Client(base_url=LB, timeout=30) as client:
            while not self.stop.is_set() and len(self.requests) < self.limit:
                request = threading.Thread(target=self._request, args=(client,), daemon=True)
                request.start()
                self.requests.append(request)
                self.stop.wait(self.interval)
            for request in self.requests:
                request.join(timeout=60)

    def follow(self, timeout: float) -> dict[str, str]:
        """Each accepted export's final status (waits until none is pending or running)."""
        ids = [ref for _, status, ref in self.sent if status == 202]
        states: dict[str, str] = {}
        deadline = time.time() + timeout
        with httpx.Client(base_url=LB, timeout=10) as client:
            while True:
                for export_id in ids:
                    if states.get(export_id) not in ("done", "failed"):
                        states[export_id] = client.get(f"/api/exports/{export_id}").json().get("status", "?")
                if all(s in ("done", "failed") for s in states.values()) or time.time() > deadline:
                    return states
                time.sleep(1)


@pytest.mark.timeout(1200)
def test_celery_and_the_api_follow_a_redis_master_killed_under_exports() -> None:
    addresses = {address_of(h): h for h in REDIS_HOSTS}
    old = sentinel_master(REDIS_HOSTS[0])
    old_host = addresses[old]
    sentinels = [h for h in REDIS_HOSTS if h != old_host]
    units = {h: ["tutormax-worker@1"] + (["tutormax-beat"] if h in BEAT_HOSTS else []) for h in WORKER_HOSTS}
    before = {h: {u: unit_state(h, u) for u in us} for h, us in units.items()}
    assert ping_workers(WORKER_HOSTS[0]) == set(worker_names())

    stream = ExportRequests()
    stream.thread.start()
    figures: dict[str, object] = {"old_master": old_host}
    try:
        time.sleep(5)  # exports before the failover
        keep_down = f"mkdir -p {os.path.dirname(DROPIN)} && printf '[Service]\\nRestart=no\\n' > {DROPIN}"
        sh(old_host, "bash", "-c", f"{keep_down} && systemctl daemon-reload")
        killed = time.time()
        sh(old_host, "systemctl", "kill", "--signal=SIGKILL", "redis-server")
        new = ""
        while time.time() - killed < 60:
            new = sentinel_master(sentinels[0])
            if new and new != old:
                break
            time.sleep(0.1)
        promoted = time.time()
        assert new, "no Sentinel answers"
        assert new != old, f"the Sentinels did not promote a replica within 60 s (still {new})"
        figures |= {"new_master": addresses.get(new, new), "promoted_after_kill_s": round(promoted - killed, 1)}

        # Every worker consumes again (answers a ping through the broker) without a site.yml run.
        answered: set[str] = set()
        while time.time() - promoted < 120:
            answered = ping_workers(WORKER_HOSTS[0])
            if answered == set(worker_names()):
                break
            time.sleep(0.5)
        figures["workers_answer_after_promotion_s"] = round(time.time() - promoted, 1)
        time.sleep(10)  # exports after the failover
    finally:
        stream.stop.set()
        stream.thread.join(timeout=120)
        # The old master comes back and follows the new one (the Sentinels reconfigure it).
        revive = f"rm -f {DROPIN} && systemctl daemon-reload && systemctl reset-failed redis-server"
        sh(old_host, "bash", "-c", f"{revive}; systemctl start redis-server")

    states = stream.follow(timeout=180)
    refused = [(round(t - killed, 1), status, ref) for t, status, ref in stream.sent if status != 202]
    after = {h: {u: unit_state(h, u) for u in us} for h, us in units.items()}
    figures |= {
        "exports_requested": len(stream.sent),
        "exports_during_failover": sum(1 for t, _, _ in stream.sent if killed <= t <= promoted),
        "exports_by_status": {s: list(states.values()).count(s) for s in sorted(set(states.values()))},
        "requests_not_accepted": refused,
        "unit_restarts": {
            f"{h} {u}": int(after[h][u]["NRestarts"]) - int(before[h][u]["NRestarts"]) for h in units for u in units[h]
        },
    }

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "redis_failover_drill.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\nRedis master killed under exports:", json.dumps(figures, indent=1))

    assert answered == set(worker_names()), f"workers answering: {sorted(answered)}"
    assert figures["workers_answer_after_promotion_s"] <= WORKERS_BACK_WITHIN_S, figures
    assert all(s["ActiveState"] == "active" for us in after.values() for s in us.values()), after
    assert not refused, f"export requests not accepted (s after the kill, status, reason): {refused}"
    assert states, "no export was accepted"
    assert set(states.values()) == {"done"}, figures["exports_by_status"]
    assert all(sentinel_master(h) == new for h in REDIS_HOSTS), "the Sentinels disagree on the new master"
