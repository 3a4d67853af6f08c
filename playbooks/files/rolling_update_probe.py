"""Probes rolling_update.yml runs on the hosts (copied over by ansible.builtin.script; stdlib only).

idle PORT TIMEOUT PEER...   Wait until no established TCP connection from any PEER address reaches
                            local PORT (the load balancers' requests to a drained API host have
                            finished), at most TIMEOUT seconds. Prints JSON; exit 0 either way.
running ROOT UNIT...        Which release each running unit's main process runs: the
                            ROOT/releases/<version>/bin/python its command line starts with (the
                            entry point's shebang; the interpreter takes its prefix, so its
                            site-packages, from that path, and the `current` link is resolved when
                            the process starts, so this is the truth even after the link moved).
                            Prints JSON.
state ROOT VERSION PORT UNIT...
                            Everything the rollout's plan needs from one host in one call: the
                            release `current` points to, whether VERSION is installed, /health on
                            127.0.0.1:PORT (0: not an API host) and `running` for the UNITs.
served PORT INSTANCE TRIES  Ask /health on 127.0.0.1:PORT (a load balancer) up to TRIES times, until
                            API instance INSTANCE answers: the host is back in the pool and serves.
                            Prints JSON (seen, requests); exit 0 either way.
switch ROOT VERSION GROUP UNIT PORT INSTANCE RETRIES DELAY STAGED NAME=LIVE...
                            The API host's switch inside its drain, in one call: each staged file
                            STAGED/NAME that differs from LIVE replaces it (atomically, keeping the
                            owner and mode api/tasks/stage.yml gave it), systemd reloads when a unit
                            file changed, ROOT/current points at ROOT/releases/VERSION (root:GROUP),
                            UNIT restarts, and /health on 127.0.0.1:PORT must answer 200 with VERSION
                            and INSTANCE within RETRIES asks DELAY s apart. Prints JSON (msg says
                            what failed); exit 1 when any of it fails.
"""

from __future__ import annotations

import errno
import grp
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ESTABLISHED = "01"
SYSTEMCTL = "/usr/bin/systemctl"
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


def release_of(root: str, cmdline: bytes) -> str | None:
    """The VERSION of ROOT/releases/VERSION/bin/... that a NUL-separated command line starts with."""
    argv0 = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    match = re.fullmatch(re.escape(root.rstrip("/")) + r"/releases/([^/]+)/bin/[^/]+", argv0)
    return match[1] if match else None


def running(root: str, units: list[str]) -> dict[str, object]:
    result: dict[str, object] = {}
    for unit in units:
        show = subprocess.run(  # noqa: S603 - fixed command, unit names from the playbook
            [SYSTEMCTL, "show", "--property=MainPID,ActiveState", unit],
            capture_output=True,
            text=True,
            check=False,
        )
        props = dict(line.split("=", 1) for line in show.stdout.splitlines() if "=" in line)
        pid = int(props.get("MainPID", "0") or 0)
        release = None
        if pid:
            try:
                release = release_of(root, Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                release = None
        result[unit] = {
            "active": props.get("ActiveState", "unknown"),
            "pid": pid,
            "releases": [release] if release else [],
        }
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


def apply_staged(staged: Path, files: dict[str, str]) -> list[str]:
    """Move each staged file over its live path when the content, owner or mode differ; the staged
    copy is gone afterwards either way. Returns the live paths that changed."""
    changed = []
    for name, live_path in files.items():
        source, live = staged / name, Path(live_path)
        if not source.exists():
            continue
        st = source.stat()
        try:
            lt = live.stat()
            same = live.read_bytes() == source.read_bytes() and (lt.st_mode, lt.st_uid, lt.st_gid) == (
                st.st_mode,
                st.st_uid,
                st.st_gid,
            )
        except OSError:
            same = False
        if same:
            source.unlink()
            continue
        live.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            os.replace(source, live)
        except OSError as exc:  # another file system: copy next to the live file, then rename
            if exc.errno != errno.EXDEV:
                raise
            tmp = live.with_name(f".{live.name}.staged")
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, source.open("rb") as data:
                shutil.copyfileobj(data, out)
            os.chown(tmp, st.st_uid, st.st_gid)
            os.chmod(tmp, st.st_mode & 0o7777)
            os.replace(tmp, live)
            source.unlink()
        changed.append(live_path)
    return changed


def point_current(root: str, version: str, group: str) -> bool:
    """ROOT/current -> ROOT/releases/VERSION, replaced atomically; link and release root:GROUP (as
    app_release's switch.yml leaves them). Returns whether it moved."""
    release = Path(root, "releases", version)
    if not (release / ".installed").exists():
        raise FileNotFoundError(f"release {version} is not installed in {release}")
    link = Path(root, "current")
    moved = not (link.is_symlink() and os.readlink(link) == str(release))
    if moved:
        tmp = Path(root, ".current.switch")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(release)
        os.replace(tmp, link)
    if os.geteuid() == 0:
        # app_release's file task (state link, following it) leaves both the link and the release
        # directory root:GROUP; so must this, or the next site.yml run would see a change.
        gid = grp.getgrnam(group).gr_gid
        os.chown(link, 0, gid, follow_symlinks=False)
        os.chown(release, 0, gid)
    return moved


def switch(args: list[str]) -> tuple[int, dict[str, object]]:
    root, version, group, unit, port, instance, retries, delay, staged = args[:9]
    files = dict(pair.split("=", 1) for pair in args[9:])
    start = time.monotonic()
    result: dict[str, object] = {"ok": False, "changed_files": [], "moved": False}
    try:
        changed = apply_staged(Path(staged), files)
        result["changed_files"] = changed
        if any("/systemd/system/" in path for path in changed):
            subprocess.run([SYSTEMCTL, "daemon-reload"], check=True, capture_output=True)  # noqa: S603
        result["moved"] = point_current(root, version, group)
        subprocess.run([SYSTEMCTL, "restart", unit], check=True, capture_output=True)  # noqa: S603
    except (OSError, subprocess.CalledProcessError) as exc:
        result["msg"] = f"switching {instance} to {version} failed: {exc}"
        return 1, result
    result["restarted_s"] = round(time.monotonic() - start, 2)
    answer: dict[str, object] = {}
    for attempt in range(1, max(1, int(retries)) + 1):
        answer = health(int(port))
        if answer.get("status") == 200 and answer.get("version") == version and answer.get("instance_id") == instance:
            result.update(ok=True, health_asks=attempt, seconds=round(time.monotonic() - start, 2))
            result["msg"] = f"{instance} answers /health 200 with {version}"
            return 0, result
        time.sleep(float(delay))
    result["seconds"] = round(time.monotonic() - start, 2)
    result["msg"] = (
        f"health gate: /health on {instance} did not answer 200 with version {version} in {retries} asks "
        f"{delay} s apart (last answer: {json.dumps(answer)})"
    )
    return 1, result


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
    if len(argv) >= 10 and argv[0] == "switch":
        rc, result = switch(argv[1:])
        print(json.dumps(result))
        return rc
    if len(argv) >= 2 and argv[0] == "running":
        print(json.dumps(running(argv[1], argv[2:])))
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
