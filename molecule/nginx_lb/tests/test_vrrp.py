"""The load balancers' floating address (role keepalived, issue 20): lb-1 and lb-2 share
10.203.20.250 on the scenario's network; the controller sends its load there.

Runs after test_nginx_lb.py (file order), which leaves both load balancers serving:
1. exactly one holds the address (lb-1, the higher priority), both serve the same certificate, and
   the VRRP password is in a root-only file and nowhere in the journal;
2. nginx stopped on the holder, the host alive: the address moves to the other (track script), and
   does not come back when nginx does (no preemption);
3. the holder's host lost (`docker kill`) under 100 requests/s of new connections to the address:
   the address moves within 4 s, only requests sent before the kill fail (those in flight on the
   lost host), and every request sent after the move succeeds; the host returns as a backup;
4. the preflight refuses an address another host answers ARP for, before anything changes.
Figures (move times, failed requests) go to benchmarks/results/keepalived_failover.json.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import loadgen  # noqa: E402 - found through the path above

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
ADDRESS = "10.203.20.250"
LBS = {"lb-1": "10.203.20.11", "lb-2": "10.203.20.12"}
#: Requests per second of new connections to the floating address during the drills.
RATE = 100.0
#: The issue's bound on the move after the holder's host is lost.
MOVE_S = 4.0
#: After the address is seen on its new holder: the time its gratuitous ARP takes to reach the
#: controller (a request sent in between still goes to the old holder's MAC address).
GRACE_S = 0.5
RESULTS = REPO / "benchmarks" / "results"
FIGURES: dict[str, Any] = {}


def sh(host: str, *argv: str, check: bool = True) -> str:
    done = subprocess.run(["docker", "exec", host, *argv], capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert done.returncode == 0, f"{host}: {' '.join(argv)}: {done.stderr}"
    return done.stdout


def holds(host: str) -> bool:
    out = sh(host, "ip", "-4", "-o", "addr", "show", "dev", "eth0", check=False)
    return f" {ADDRESS}/" in out


def holders() -> list[str]:
    return [h for h in LBS if holds(h)]


def wait_for_holder(host: str, timeout: float) -> float | None:
    """Poll until ``host`` holds the address; the time it was first seen there, or None."""
    end = time.time() + timeout
    while time.time() < end:
        if holds(host):
            return time.time()
        time.sleep(0.05)
    return None


def playbook(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / name), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def load(seconds: float) -> loadgen.LoadGenerator:
    generator = loadgen.LoadGenerator(f"http://{ADDRESS}", RATE, mix={"health": 1}, timeout=10.0)
    generator.start(seconds)
    return generator


def save() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "keepalived_failover.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


def test_one_load_balancer_holds_the_address_and_both_serve_one_certificate() -> None:
    assert holders() == ["lb-1"]
    served = {h: ssl.get_server_certificate((a, 443), timeout=10) for h, a in LBS.items()}
    assert served["lb-1"] == served["lb-2"], "the load balancers serve different certificates"
    assert ssl.get_server_certificate((ADDRESS, 443), timeout=10) == served["lb-1"]
    for host in LBS:
        assert sh(host, "stat", "-c", "%a %U %G", "/etc/keepalived/keepalived.conf").split() == ["600", "root", "root"]
        conf = sh(host, "cat", "/etc/keepalived/keepalived.conf")
        password = next(line.split()[1] for line in conf.splitlines() if line.strip().startswith("auth_pass"))
        assert len(password) == 8
        assert password not in sh(host, "journalctl", "--no-pager", "-o", "cat"), f"{host}: the VRRP password is logged"
        assert "nopreempt" in conf


def test_nginx_stopped_on_the_holder_moves_the_address_and_it_does_not_come_back() -> None:
    generator = load(30)
    time.sleep(1.0)
    stopped = time.time()
    sh("lb-1", "systemctl", "stop", "nginx")
    moved = wait_for_holder("lb-2", 10)
    time.sleep(2.0)
    sh("lb-1", "systemctl", "start", "nginx")
    time.sleep(5.0)  # lb-1 passes its checks again (rise 2) and stays a backup
    result = generator.stop()
    assert moved is not None, "the address did not move when nginx stopped on its holder"
    failed = [r for r in result.records if not r.ok]
    FIGURES["nginx_stopped"] = {
        "moved_after_s": round(moved - stopped, 2),
        "requests": len(result.records),
        "failed": len(failed),
        "failed_after_move": sum(1 for r in failed if r.t > moved + GRACE_S),
    }
    save()
    assert len(result.records) >= RATE * 5, "the load did not run"
    assert holders() == ["lb-2"], "the address went back to lb-1 (preemption) or is held twice"
    # Until the address moved, new connections to lb-1 were refused; none after.
    assert FIGURES["nginx_stopped"]["failed_after_move"] == 0, FIGURES["nginx_stopped"]


def test_the_holders_host_lost_moves_the_address_within_4_s_and_only_requests_in_flight_fail() -> None:
    (holder,) = holders()
    other = next(h for h in LBS if h != holder)
    generator = load(30)
    time.sleep(2.0)
    killed_at = time.time()
    subprocess.run(["docker", "kill", holder], check=True, capture_output=True, timeout=60)
    killed = time.time()
    moved = wait_for_holder(other, 15)
    time.sleep(4.0)
    result = generator.stop()
    assert moved is not None, f"the address did not move to {other}"
    failed = [r for r in result.records if not r.ok]
    FIGURES["host_lost"] = {
        "lost": holder,
        "moved_after_s": round(moved - killed, 2),
        "requests": len(result.records),
        "failed": len(failed),
        "failed_sent_before_kill": sum(1 for r in failed if r.t <= killed),
        "failed_sent_after_move": sum(1 for r in failed if r.t > moved + GRACE_S),
        "errors": sorted({r.error or str(r.status) for r in failed}),
        "slowest_success_ms": max((r.latency_ms for r in result.records if r.ok), default=None),
    }
    save()
    assert moved - killed_at <= MOVE_S, FIGURES["host_lost"]
    # Requests in flight on the lost host may fail; a request sent after the kill waits for the
    # move (its SYN is sent again) and succeeds, and so does every request sent after the move.
    assert FIGURES["host_lost"]["failed"] == FIGURES["host_lost"]["failed_sent_before_kill"], FIGURES["host_lost"]
    assert FIGURES["host_lost"]["failed_sent_after_move"] == 0, FIGURES["host_lost"]
    assert len(result.records) >= RATE * 5


def test_the_lost_host_returns_as_a_backup() -> None:
    (holder,) = holders()
    lost = next(h for h in LBS if h != holder)
    subprocess.run(["docker", "start", lost], check=True, capture_output=True, timeout=60)
    sh(lost, "timeout", "120", "systemctl", "is-system-running", "--wait", check=False)
    deadline = time.time() + 30
    while time.time() < deadline and sh(lost, "systemctl", "is-active", "keepalived", check=False).strip() != "active":
        time.sleep(0.5)
    time.sleep(5.0)  # three adverts and more: long enough to take the address if it preempted
    assert holders() == [holder]
    # lb-1 and lb-2 both serve again (the next scenarios' checks, and a re-run, expect both).
    for address in LBS.values():
        assert ssl.get_server_certificate((address, 443), timeout=10)


@pytest.fixture
def stranger() -> Any:  # noqa: ANN401 - a context for the test below
    # A backend takes the floating address, as a host outside the pair that already uses it would.
    sh("lb-backend-1", "ip", "addr", "add", f"{ADDRESS}/32", "dev", "eth0")
    try:
        yield "lb-backend-1"
    finally:
        sh("lb-backend-1", "ip", "addr", "del", f"{ADDRESS}/32", "dev", "eth0", check=False)


def test_the_preflight_refuses_an_address_another_host_answers_for(stranger: str) -> None:
    before = {h: sh(h, "md5sum", "/etc/keepalived/keepalived.conf") for h in LBS}
    done = playbook("keepalived.yml", "-e", "keepalived_router_id=52")  # would rewrite the configuration
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "in use on the network" in output
    mac = sh(stranger, "cat", "/sys/class/net/eth0/address").strip()
    assert mac in output, output[-3000:]
    assert {h: sh(h, "md5sum", "/etc/keepalived/keepalived.conf") for h in LBS} == before, "something changed"


def test_the_address_answers_again_after_the_drills() -> None:
    time.sleep(1.0)
    assert len(holders()) == 1
    assert ssl.get_server_certificate((ADDRESS, 443), timeout=10)
