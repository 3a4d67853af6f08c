# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""What a host runs and how it switches releases: shared by release_info and release_switch.

A release lives in ROOT/releases/<version>/ (a virtualenv; ``.installed`` marks it complete), and
ROOT/current points at the live one. A service runs the release whose ``bin/python`` its entry
point's shebang names: the interpreter is the first word of the main process's command line, and
the ``current`` link was resolved when the process started, so the command line is the truth even
after the link moved. Stdlib only: this runs on the hosts.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible.module_utils.urls import open_url

ESTABLISHED = "01"
TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([.+-][0-9A-Za-z.]+)?$")


# ------------------------------------------------------------------------------------ versions
def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a version such as 1.0.10 or 1.1.0rc1: numbers compare as numbers."""
    parts = re.split(r"[.+-]", version)
    key: list[tuple[int, int | str]] = []
    for part in parts:
        for number, text in re.findall(r"(\d+)|(\D+)", part):
            key.append((1, int(number)) if number else (0, text))
    return tuple(key)


def sort_versions(versions: Iterable[str]) -> list[str]:
    return sorted(versions, key=version_key)


# ------------------------------------------------------------------------------------ releases
def release_of(root: str, cmdline: bytes) -> str | None:
    """The VERSION of ROOT/releases/VERSION/bin/... that a NUL-separated command line starts with."""
    argv0 = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    match = re.fullmatch(re.escape(root.rstrip("/")) + r"/releases/([^/]+)/bin/[^/]+", argv0)
    return match[1] if match else None


def current(root: str) -> str:
    """The release ROOT/current points at ('' when there is no link)."""
    link = Path(root, "current")
    return Path(os.readlink(link)).name if link.is_symlink() else ""


def installed(root: str) -> list[str]:
    """Releases installed completely under ROOT/releases, oldest first."""
    base = Path(root, "releases")
    try:
        names = [p.name for p in base.iterdir() if p.is_dir() and (p / ".installed").exists()]
    except OSError:
        return []
    return sort_versions(names)


def prune_plan(releases: Iterable[str], live: str, keep: int) -> list[str]:
    """Releases to remove so that ``keep`` remain: the live one and the newest others."""
    others = [r for r in sort_versions(set(releases)) if r != live]
    others.reverse()
    return sorted(others[max(keep - 1, 0) :], key=version_key)


def release_dirs(root: str) -> list[str]:
    """Every directory under ROOT/releases (installed or not), but the unpack directories of installs."""
    try:
        return [p.name for p in Path(root, "releases").iterdir() if p.is_dir() and not p.name.endswith(".unpack")]
    except OSError:
        return []


def prune(root: str, live: str, keep: int, check: bool = False) -> dict[str, list[str]]:
    """Remove the releases beyond ``keep`` (the live one and the newest others stay) and the
    dependency layers (ROOT/deps/*) that no kept release links to (its ``deps`` link). Releases
    installed before the layers existed have no link and need no layer."""
    doomed = prune_plan(release_dirs(root), live, keep)
    kept = [r for r in release_dirs(root) if r not in doomed]
    linked = set()
    for name in kept:
        link = Path(root, "releases", name, "deps")
        if link.is_symlink():
            linked.add(os.path.normpath(os.path.join(link.parent, os.readlink(link))))
    try:
        layers = sorted(str(p) for p in Path(root, "deps").iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        layers = []
    unused = [layer for layer in layers if os.path.normpath(layer) not in linked]
    if not check:
        for name in doomed:
            shutil.rmtree(Path(root, "releases", name))
        for layer in unused:
            shutil.rmtree(layer)
    return {"releases": [f"{root}/releases/{name}" for name in doomed], "layers": unused}


def systemctl_show(systemctl: str, unit: str) -> dict[str, str]:
    show = subprocess.run(  # noqa: S603 - fixed command, unit names from the caller
        [systemctl, "show", "--property=MainPID,ActiveState", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    return dict(line.split("=", 1) for line in show.stdout.splitlines() if "=" in line)


def running(
    root: str,
    units: Iterable[str],
    systemctl: str = "systemctl",
    proc: str = "/proc",
) -> dict[str, dict[str, Any]]:
    """Per unit: ActiveState, main PID and the release its main process runs ([] when not one)."""
    result: dict[str, dict[str, Any]] = {}
    for unit in units:
        props = systemctl_show(systemctl, unit)
        pid = int(props.get("MainPID", "0") or 0)
        release = None
        if pid:
            try:
                release = release_of(root, Path(proc, str(pid), "cmdline").read_bytes())
            except OSError:
                release = None
        result[unit] = {
            "active": props.get("ActiveState", "unknown"),
            "pid": pid,
            "releases": [release] if release else [],
        }
    return result


def read_env_file(path: str) -> dict[str, str] | None:
    """The variables of a systemd EnvironmentFile (KEY=value lines; # comments; one pair of quotes
    around a value removed); None when it cannot be read."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def env_differs(pid: int, wanted: Mapping[str, str], proc: str = "/proc") -> bool:
    """Whether process ``pid`` runs with another value of a variable of ``wanted`` (its environment
    as it started, /proc/PID/environ); False when that cannot be read."""
    try:
        raw = Path(proc, str(pid), "environ").read_bytes()
    except OSError:
        return False
    env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
    return any(env.get(key) != value for key, value in wanted.items())


def stale_units(
    units: Mapping[str, Mapping[str, Any]], live: str, env: Mapping[str, str] | None = None, proc: str = "/proc"
) -> list[str]:
    """Units whose main process runs a release of ROOT/releases other than ``live``, or runs with
    other values of ``env`` (the variables of the environment file it read when it started)."""
    return sorted(
        u
        for u, s in units.items()
        if (live and s.get("releases") and s["releases"] != [live])
        or (env and s.get("pid") and env_differs(int(s["pid"]), env, proc))
    )


# ------------------------------------------------------------------------------------ health
def health(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> dict[str, Any]:
    """/health of an API instance: HTTP status, version and instance id (503 answers carry JSON too)."""
    try:
        with open_url(f"http://{host}:{port}/health", timeout=timeout, use_proxy=False) as response:
            status, body, header = response.status, response.read(), response.headers.get("X-Instance-Id")
    except urllib.error.HTTPError as exc:
        status, body, header = exc.code, exc.read(), exc.headers.get("X-Instance-Id")
    except urllib.error.URLError as exc:
        reason = exc.reason
        error = type(reason).__name__ if isinstance(reason, BaseException) else str(reason)
        return {"status": 0, "version": None, "instance_id": None, "error": error}
    except OSError as exc:
        return {"status": 0, "version": None, "instance_id": None, "error": type(exc).__name__}
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return {
        "status": status,
        "version": data.get("version"),
        "instance_id": data.get("instance_id") or header,
    }


def health_gate(
    port: int,
    version: str,
    instance: str,
    retries: int,
    delay: float,
    ask: Callable[[int], dict[str, Any]] = health,
) -> tuple[bool, int, dict[str, Any]]:
    """Ask /health until it answers 200 with ``version`` and ``instance``: (passed, asks, last answer)."""
    answer: dict[str, Any] = {}
    for attempt in range(1, max(1, retries) + 1):
        answer = ask(port)
        if answer.get("status") == 200 and answer.get("version") == version and answer.get("instance_id") == instance:
            return True, attempt, answer
        if attempt < retries:
            time.sleep(delay)
    return False, max(1, retries), answer


# ------------------------------------------------------------------------------------ drain
def _address(hex_address: str) -> str:
    """An address of /proc/net/tcp{,6} as text (IPv4-mapped IPv6 as IPv4)."""
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc stores IPv6 as four little-endian 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def connections(port: int, peers: set[str], tables: Iterable[str] = TCP_TABLES) -> list[str]:
    """Established connections to local ``port`` from one of ``peers``, as "peer:port"."""
    found = []
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4:
                continue
            local, remote, state = fields[1], fields[2], fields[3]
            if state != ESTABLISHED or int(local.split(":")[1], 16) != port:
                continue
            peer_hex, peer_port = remote.split(":")
            peer = _address(peer_hex)
            if peer in peers:
                found.append(f"{peer}:{int(peer_port, 16)}")
    return found


def wait_idle(
    port: int,
    peers: set[str],
    timeout: float,
    interval: float = 0.2,
    tables: Iterable[str] = TCP_TABLES,
) -> dict[str, Any]:
    """Wait until no connection from ``peers`` reaches ``port`` (the requests the load balancers had
    in flight to a drained host have finished), at most ``timeout`` seconds; never fails."""
    tables = tuple(tables)
    start = time.monotonic()
    first = connections(port, peers, tables)
    now = first
    while now and time.monotonic() - start < timeout:
        time.sleep(interval)
        now = connections(port, peers, tables)
    return {
        "port": port,
        "at_start": len(first),
        "remaining": len(now),
        "remaining_peers": sorted(now),
        "waited_s": round(time.monotonic() - start, 2),
        "timed_out": bool(now),
    }


# ------------------------------------------------------------------------------------ the switch
def _same_file(source: Path, live: Path) -> bool:
    try:
        st, lt = source.stat(), live.stat()
    except OSError:
        return False
    if (st.st_mode, st.st_uid, st.st_gid) != (lt.st_mode, lt.st_uid, lt.st_gid):
        return False
    return source.read_bytes() == live.read_bytes()


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def staged_name(live: str) -> str:
    """The name a file staged for ``live`` (an absolute path) has in the staging directory: the path
    with ``%`` and ``/`` escaped, so every staged file says where it goes and the directory stays flat."""
    if not live.startswith("/") or live.endswith("/") or "\0" in live:
        raise ValueError(f"a staged file needs the absolute path of a file (got {live!r})")
    return live.replace("%", "%25").replace("/", "%2F")


def live_path(name: str) -> str:
    """The live path a staged file's name stands for (inverse of staged_name)."""
    return name.replace("%2F", "/").replace("%25", "%")


def staged_files(staged: Path) -> dict[str, str]:
    """Staged file name to live path, for every file staging left in ``staged`` (sorted by live path)."""
    try:
        names = [p.name for p in staged.iterdir() if p.is_file() and p.name.startswith("%2F")]
    except OSError:
        return {}
    return dict(sorted(((n, live_path(n)) for n in names), key=lambda item: item[1]))


def staged_changes(staged: Path) -> list[dict[str, str]]:
    """The staged files that differ from their live path (content, owner or mode)."""
    return [
        {"name": name, "live": live}
        for name, live in staged_files(staged).items()
        if not _same_file(staged / name, Path(live))
    ]


def staged_diffs(staged: Path, changes: Iterable[Mapping[str, str]], hidden: Iterable[str]) -> list[dict[str, str]]:
    """Ansible diff entries for staged files; live paths in ``hidden`` show no content (secrets)."""
    secret = set(hidden)
    diffs = []
    for change in changes:
        live, source = Path(change["live"]), staged / change["name"]
        if change["live"] in secret:
            before, after = "(content hidden: holds secrets)\n", "(content hidden: holds secrets, changed)\n"
        else:
            before, after = _text(live), _text(source)
        diffs.append({"before": before, "after": after, "before_header": str(live), "after_header": str(source)})
    return diffs


def apply_staged(staged: Path) -> list[str]:
    """Move each staged file over its live path when content, owner or mode differ (atomically,
    keeping the staged file's owner and mode); the staged copy is gone afterwards either way.
    Returns the live paths that changed."""
    changed = []
    for name, live_path_ in staged_files(staged).items():
        source, live = staged / name, Path(live_path_)
        if _same_file(source, live):
            source.unlink()
            continue
        st = source.stat()
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
        changed.append(live_path_)
    return changed


def link_state(root: str, version: str, gid: int | None) -> dict[str, Any]:
    """Whether ROOT/current points at the release and the link and release are root:GROUP."""
    link, release = Path(root, "current"), Path(root, "releases", version)
    target = os.readlink(link) if link.is_symlink() else ""
    owner_ok = True
    if gid is not None and os.geteuid() == 0:
        try:
            lst, rst = link.lstat(), release.stat()
            owner_ok = (lst.st_uid, lst.st_gid) == (0, gid) and (rst.st_uid, rst.st_gid) == (0, gid)
        except OSError:
            owner_ok = False
    return {"target": target, "points": target == str(release), "owner_ok": owner_ok}


def point_current(root: str, version: str, gid: int | None) -> bool:
    """ROOT/current -> ROOT/releases/VERSION, replaced atomically; link and release root:GROUP
    (as app_release's switch leaves them). Returns whether anything changed."""
    release = Path(root, "releases", version)
    if not (release / ".installed").exists():
        raise FileNotFoundError(f"release {version} is not installed in {release}")
    state = link_state(root, version, gid)
    link = Path(root, "current")
    if not state["points"]:
        tmp = Path(root, ".current.switch")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(release)
        os.replace(tmp, link)
    # A new link is root:root: it gets the group too, like a link that was there with another owner.
    if gid is not None and os.geteuid() == 0 and (not state["points"] or not state["owner_ok"]):
        os.chown(link, 0, gid, follow_symlinks=False)
        os.chown(release, 0, gid)
    return not state["points"] or not state["owner_ok"]
