"""Probes rolling_update.yml runs on the hosts (copied over by ansible.builtin.script; stdlib only).

idle PORT TIMEOUT PEER...   Wait until no established TCP connection from any PEER address reaches
                            local PORT (the load balancers' requests to a drained API host have
                            finished), at most TIMEOUT seconds. Prints JSON; exit 0 either way.
running ROOT UNIT...        Which release each running unit's main process has loaded: the
                            ROOT/releases/<version>/ its memory maps point into (the `current`
                            link is resolved when a process starts, so this is the truth even after
                            the link moved). Prints JSON.
state ROOT VERSION PORT UNIT...
                            Everything the rollout's plan needs from one host in one call: the
                            release `current` points to, whether VERSION is installed, /health on
                            127.0.0.1:PORT (0: not an API host) and `running` for the UNITs.
served PORT INSTANCE TRIES  Ask /health on 127.0.0.1:PORT (a load balancer) up to TRIES times, until
                            API instance INSTANCE answers: the host is back in the pool and serves.
                            Prints JSON (seen, requests); exit 0 either way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ESTABLISHED = "01"
TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def _address(hex_address: str) -> str:
    """An address of /proc/net/tcp{,6} as text (IPv4-mapped IPv6 as IPv4)."""
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc stores IPv6 as four little-endian 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def connections(port: int, peers: set[str], tables: tuple[str, ...] = TABLES) -> list[str]:
    """Established connections to local ``port`` from one of ``peers``, as "peer:port"."""
    found = []
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state != ESTABLISHED or int(local.split(":")[1], 16) != port:
                continue
            peer_hex, peer_port = remote.split(":")
            peer = _address(peer_hex)
            if peer in peers:
                found.append(f"{peer}:{int(peer_port, 16)}")
    return found


def idle(port: int, timeout: float, peers: set[str], interval: float = 0.2) -> dict[str, object]:
    start = time.monotonic()
    first = connections(port, peers)
    current = first
    while current and time.monotonic() - start < timeout:
        time.sleep(interval)
        current = connections(port, peers)
    return {
        "port": port,
        "at_start": len(first),
        "remaining": len(current),
        "remaining_peers": sorted(current),
        "waited_s": round(time.monotonic() - start, 2),
        "timed_out": bool(current),
    }


def running(root: str, units: list[str]) -> dict[str, object]:
    pattern = re.compile(re.escape(root.rstrip("/")) + r"/releases/([^/]+)/")
    result: dict[str, object] = {}
    for unit in units:
        show = subprocess.run(  # noqa: S603 - fixed command, unit names from the playbook
            ["/usr/bin/systemctl", "show", "--property=MainPID,ActiveState", unit],
            capture_output=True,
            text=True,
            check=False,
        )
        props = dict(line.split("=", 1) for line in show.stdout.splitlines() if "=" in line)
        pid = int(props.get("MainPID", "0") or 0)
        versions: set[str] = set()
        if pid:
            try:
                versions = set(pattern.findall(Path(f"/proc/{pid}/maps").read_text()))
            except OSError:
                versions = set()
        result[unit] = {"active": props.get("ActiveState", "unknown"), "pid": pid, "releases": sorted(versions)}
    return result


def health(port: int) -> dict[str, object]:
    """/health of the local API instance: HTTP status and its JSON (503 answers carry JSON too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError as exc:
        return {"status": 0, "error": type(exc).__name__}
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    return {"status": status, "version": data.get("version"), "instance_id": data.get("instance_id")}


def served(port: int, instance: str, tries: int) -> dict[str, object]:
    answered: list[object] = []
    for attempt in range(1, max(1, tries) + 1):
        answer = health(port)
        answered.append(answer.get("instance_id") or answer.get("status"))
        if answer.get("instance_id") == instance:
            return {"seen": True, "requests": attempt}
        time.sleep(0.05)
    return {"seen": False, "requests": len(answered), "answered_by": sorted({str(a) for a in answered})}


def state(root: str, version: str, port: int, units: list[str]) -> dict[str, object]:
    current = Path(root, "current")
    return {
        "current": Path(os.readlink(current)).name if current.is_symlink() else "",
        "installed": Path(root, "releases", version, ".installed").exists(),
        "health": health(port) if port else None,
        "units": running(root, units) if units else {},
    }


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "idle":
        print(json.dumps(idle(int(argv[1]), float(argv[2]), set(argv[3:]))))
        return 0
    if len(argv) >= 4 and argv[0] == "state":
        print(json.dumps(state(argv[1], argv[2], int(argv[3]), argv[4:])))
        return 0
    if len(argv) == 4 and argv[0] == "served":
        print(json.dumps(served(int(argv[1]), argv[2], int(argv[3]))))
        return 0
    if len(argv) >= 2 and argv[0] == "running":
        print(json.dumps(running(argv[1], argv[2:])))
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
