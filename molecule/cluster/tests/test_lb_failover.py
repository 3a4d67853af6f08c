"""The load balancers' floating address on the whole stack (issue 20): cluster-lb1 and cluster-lb2
share it (keepalived), and every drill of this scenario sends its load there (cluster_hosts.LB).

Runs after test_cluster.py (file order), under 100 requests/s of new connections to the address,
through nginx to the API (GET /health: the API, PostgreSQL and Redis answer each one):
1. one load balancer holds the address, and both serve one certificate that names it;
2. nginx stopped on the holder, its host alive: the address moves, and stays when nginx is back;
3. the holder's container killed: the address moves within 4 s, only requests sent before the kill
   fail (in flight on the lost host), none sent after the move; the lost host returns as a backup.
The drills are benchmarks/vip_drill.py's, as in the nginx_lb scenario. Figures go to
benchmarks/results/cluster_lb_failover.json and are printed.
"""

from __future__ import annotations

import os
import ssl
import sys
from typing import Any

import testinfra.utils.ansible_runner
from cluster_hosts import FLOATING_ADDRESS, REPO, save_figures, sh

sys.path.insert(0, str(REPO / "benchmarks"))
from vip_drill import FloatingAddress

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
LBS = sorted(RUNNER.get_hosts("lb"))
VIP = FloatingAddress(FLOATING_ADDRESS, LBS)
RATE = 100.0
MOVE_S = 4.0
FIGURES: dict[str, Any] = {}


def save() -> None:
    save_figures("cluster_lb_failover", FIGURES)


def test_one_load_balancer_holds_the_address_and_both_serve_its_certificate() -> None:
    assert len(LBS) >= 2, LBS
    assert len(VIP.holders()) == 1, VIP.holders()
    served = {ssl.get_server_certificate((FLOATING_ADDRESS, 443), timeout=10)}
    served |= {ssl.get_server_certificate((VIP.own_address(h), 443), timeout=10) for h in LBS}
    assert len(served) == 1, "the load balancers serve different certificates"
    names = sh(LBS[0], "openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", "/etc/ssl/certs/tutormax-lb.pem")
    assert f"IP Address:{FLOATING_ADDRESS}" in names, names


def test_nginx_stopped_on_the_holder_moves_the_address() -> None:
    figures = FIGURES["nginx_stopped"] = VIP.nginx_stopped(RATE)
    save()
    assert figures["moved_to"] is not None, figures
    assert figures["requests"] >= RATE * 5, "the load did not run"
    assert figures["holders_after"] == [figures["moved_to"]], "the address went back (preemption) or is held twice"
    assert figures["failed_after_move"] == 0, figures


def test_the_holders_host_lost_moves_the_address_within_4_s_and_only_requests_in_flight_fail() -> None:
    figures = FIGURES["host_lost"] = VIP.host_lost(RATE)
    try:
        assert figures["moved_to"] is not None, figures
        assert figures["moved_after_s"] <= MOVE_S, figures
        assert figures["failed"] == figures["failed_sent_before_kill"], figures
        assert figures["failed_sent_after_move"] == 0, figures
        assert figures["requests"] >= RATE * 5
    finally:
        # The lost load balancer comes back as a backup: the next drills and site.yml expect both.
        FIGURES["restart"] = VIP.restart(figures["lost"])
        save()
    assert FIGURES["restart"]["holders_after"] == [figures["moved_to"]], FIGURES["restart"]
