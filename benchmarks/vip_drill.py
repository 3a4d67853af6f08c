"""Drills of the load balancers' floating address (keepalived), shared by the nginx_lb and cluster
scenarios' tests: under steady load of new connections sent to the address from this machine,
nginx stopped on the holder, then the holder's container killed; the address must move, and only
requests sent before a move may fail.

Not a command: the scenarios' tests call it (they know their hosts and the address). The load
generator is benchmarks/loadgen.py (bounded: the address must be on one of the project's Docker
networks). Figures are returned for the caller to save.
"""

from __future__ import annotations

import time
from typing import Any

import loadgen
from pg_failover import docker

#: After the address is seen on its new holder: the time its gratuitous ARP takes to reach this
#: machine (a request sent in between still goes to the old holder's MAC address).
GRACE_S = 0.5


def sh(host: str, *argv: str, check: bool = True) -> str:
    """Run a command in a container; its standard output."""
    return docker("exec", host, *argv, check=check, timeout=60)


def active(host: str, unit: str) -> bool:
    """Whether systemd runs ``unit`` on ``host``."""
    return sh(host, "systemctl", "is-active", unit, check=False).strip() == "active"


class FloatingAddress:
    """The address ``address`` shared by ``hosts`` (container names) on their interface ``interface``."""

    def __init__(self, address: str, hosts: list[str], interface: str = "eth0") -> None:
        self.address, self.hosts, self.interface = address, list(hosts), interface

    def own_address(self, host: str) -> str:
        """The container's own address on its network (the controller cannot resolve its name)."""
        return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", host).split()[0]

    def holds(self, host: str) -> bool:
        out = sh(host, "ip", "-4", "-o", "addr", "show", "dev", self.interface, check=False)
        return f" {self.address}/" in out

    def holders(self) -> list[str]:
        return [h for h in self.hosts if self.holds(h)]

    def wait_for_holder(self, host: str, timeout: float) -> float | None:
        """Poll until ``host`` holds the address; the time it was first seen there, or None."""
        end = time.time() + timeout
        while time.time() < end:
            if self.holds(host):
                return time.time()
            time.sleep(0.05)
        return None

    def load(self, rate: float, seconds: float) -> loadgen.LoadGenerator:
        """Start ``rate`` requests/s of new connections (GET /health) to the address for at most ``seconds``."""
        generator = loadgen.LoadGenerator(f"http://{self.address}", rate, mix={"health": 1}, timeout=10.0)
        generator.start(seconds)
        return generator

    def holder_and_peer(self) -> tuple[str, str]:
        """The one host that holds the address, and the one it would move to (a pair)."""
        (holder,) = self.holders()
        return holder, next(h for h in self.hosts if h != holder)

    def nginx_stopped(self, rate: float) -> dict[str, Any]:
        """nginx stopped on the holder (its host alive) under load, started again 2 s after the
        move. Figures: where the address went, when, and the requests that failed (after the
        move: none expected)."""
        holder, other = self.holder_and_peer()
        generator = self.load(rate, 30)
        time.sleep(1.0)
        stopped = time.time()
        sh(holder, "systemctl", "stop", "nginx")
        moved = self.wait_for_holder(other, 10)
        time.sleep(2.0)
        sh(holder, "systemctl", "start", "nginx")
        time.sleep(5.0)  # the old holder passes its checks again (rise 2) and stays a backup
        result = generator.stop()
        failed = [r for r in result.records if not r.ok]
        return {
            "stopped_on": holder,
            "moved_to": other if moved else None,
            "moved_after_s": round(moved - stopped, 2) if moved else None,
            "requests": len(result.records),
            "failed": len(failed),
            "failed_after_move": sum(1 for r in failed if moved is None or r.t > moved + GRACE_S),
            "holders_after": self.holders(),
        }

    def host_lost(self, rate: float) -> dict[str, Any]:
        """The holder's container killed under load; the load runs 4 s past the move. Figures:
        the move time from the kill, and the failed requests by when they were sent."""
        holder, other = self.holder_and_peer()
        generator = self.load(rate, 30)
        time.sleep(2.0)
        docker("kill", holder, timeout=60)
        killed = time.time()
        moved = self.wait_for_holder(other, 15)
        time.sleep(4.0)
        result = generator.stop()
        failed = [r for r in result.records if not r.ok]
        return {
            "lost": holder,
            "moved_to": other if moved else None,
            "moved_after_s": round(moved - killed, 2) if moved else None,
            "requests": len(result.records),
            "failed": len(failed),
            "failed_sent_before_kill": sum(1 for r in failed if r.t <= killed),
            "failed_sent_after_move": sum(1 for r in failed if moved is None or r.t > moved + GRACE_S),
            "errors": sorted({r.error or str(r.status) for r in failed}),
            "slowest_success_ms": max((r.latency_ms for r in result.records if r.ok), default=None),
        }

    def restart(self, host: str) -> dict[str, Any]:
        """Start a lost host's container again and wait until its keepalived runs, then 5 s more
        (long enough to take the address back if it preempted). Figures: who holds the address."""
        docker("start", host, timeout=60)
        sh(host, "timeout", "120", "systemctl", "is-system-running", "--wait", check=False)
        deadline = time.time() + 30
        while time.time() < deadline and not active(host, "keepalived"):
            time.sleep(0.5)
        time.sleep(5.0)
        return {"restarted": host, "holders_after": self.holders()}
