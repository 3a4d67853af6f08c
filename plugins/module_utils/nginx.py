# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""The nginx load balancer's pool: one implementation for the nginx_lb role, its modules and filters.

- ``backend_list``: the backends from the role's input (a given list, or the backend group's hosts).
- ``apply_state`` / ``problems``: a per-name state (drain, weight) over that list, and what is wrong
  with the result (named after the caller's variables, so the role's preflight and the module both
  tell the user what to fix).
- ``render`` / ``parse_servers`` / ``pool``: the upstream file nginx reads, and the pool read back
  from it (``{in_service: [names], down: [names]}``; a server's name is its trailing ``# name``).
- ``colours`` / ``colour_state``: blue-green (backends with a colour): the live colour's servers in the
  public upstreams, the idle colour's in ``tutormax_preview`` behind a loopback-only listener, and the
  live colour recorded in the file, which is the cluster's truth about it.
- ``write_atomic``, ``wait_ping``, ``served``, ``smoke``: what the modules do on the host.

Stdlib only: this runs on the hosts (Debian 12's python3) and on the controller (filters).
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible.module_utils.urls import open_url
from ansible_collections.tutormax.cluster.plugins.module_utils import release

UPSTREAM_API = "tutormax_api"
UPSTREAM_WS = "tutormax_ws"
UPSTREAM_PREVIEW = "tutormax_preview"
COLOURS = ("blue", "green")
DEFAULT_PREVIEW_PORT = 8082
IDLE_STATES = ("keep", "warm", "decommissioned")
# The line that records the colours in the upstream file (read back by colour_state).
COLOUR_LINE_RE = re.compile(r"^# blue-green: live (\w+)(?:, idle (\w+)( decommissioned)?)?$", re.M)
DEFAULT_PATH = "/etc/nginx/conf.d/tutormax-upstreams.conf"
DEFAULT_PORT = 8000
MODE = 0o644
STATE_KEYS = ("down", "weight")
DURATION_RE = re.compile(r"^[0-9]+(ms|s|m|h|d)?$")
# What may stand in a server line without changing its meaning: a name ends up in a comment, an
# address before the port. No blanks, `;`, `#` or braces, so no input can add a directive.
NAME_RE = re.compile(r"^[A-Za-z0-9_.:@\[\]-]+$")
ADDRESS_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*|[A-Za-z0-9_.-]+)$")
TRUE = ("true", "yes", "on", "1", "y", "t")
FALSE = ("false", "no", "off", "0", "n", "f", "")

# Variables named in the problems: the role's (its preflight) or the module's arguments.
ROLE_NAMES = {"backends": "nginx_lb_backends", "state": "nginx_lb_backend_state", "colour": "tutormax_api_colour"}
MODULE_NAMES = {"backends": "backends", "state": "backend_state", "colour": "colour"}

HEADER = """#
# Ansible managed
#
# TutorMax API backends. The rolling update rewrites only this file (tasks_from: upstream.yml) to
# drain or weight a backend, then reloads nginx gracefully.
"""


# ------------------------------------------------------------------------------------ the backends
def to_bool(value: object) -> bool:
    """A boolean as YAML, JSON or the command line gives it ("yes", "true", 1...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def backend_list(
    given: Iterable[Mapping[str, Any]],
    port: int = DEFAULT_PORT,
    hosts: Iterable[str] = (),
    addresses: Mapping[str, str] | None = None,
    colours: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The backends, with port, weight, down and colour filled in: ``given`` when it lists any,
    otherwise every host of ``hosts`` at its address in ``addresses`` ('' when unknown: ``problems``
    says so) with its colour in ``colours`` ('' when none: no blue-green)."""
    base = {"port": port, "weight": 1, "down": False, "colour": ""}
    given = list(given or [])
    if given:
        return [{**base, **dict(b)} for b in given]
    found, painted = addresses or {}, colours or {}
    return [{"name": h, "address": found.get(h) or "", **base, "colour": str(painted.get(h) or "")} for h in hosts]


def apply_state(backends: Iterable[Mapping[str, Any]], state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each backend with its entry of ``state`` (by name) applied over it. Unknown names are left for
    ``problems`` to report."""
    merged = []
    for b in backends:
        entry = dict(b)
        over = state.get(str(entry.get("name")))
        if isinstance(over, Mapping):
            entry.update({k: v for k, v in over.items() if k in STATE_KEYS})
        merged.append(entry)
    return merged


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _down(value: object) -> bool | None:
    try:
        return to_bool(value)
    except ValueError:
        return None


def problems(
    backends: Iterable[Mapping[str, Any]],
    state: Mapping[str, Any] | None = None,
    group: str = "",
    names: Mapping[str, str] | None = None,
    live: str = "",
) -> list[str]:
    """What is wrong with ``backends`` once ``state`` applies; an empty list when nothing is.
    With ``live`` (blue-green), only the backends of that colour must keep one in service.

    ``names`` maps "backends" and "state" to the variables the messages name (``ROLE_NAMES`` for
    the role's preflight, ``MODULE_NAMES`` for the module's arguments); ``group`` is the inventory
    group the list was built from, if any (the hints then say to put hosts in it or gather facts).
    """
    n = {**MODULE_NAMES, **(names or {})}
    state = dict(state or {})
    raw = [dict(b) for b in backends]
    found: list[str] = []
    backend_names = [str(b.get("name") or "") for b in raw]

    if not raw:
        where = f" and the group {group} has no hosts (list the backends, or put hosts in the group)" if group else ""
        found.append(f"{n['backends']} is empty{where}")
    if "" in backend_names:
        found.append(f"every entry of {n['backends']} needs a name")
    twice = sorted({x for x in backend_names if x and backend_names.count(x) > 1})
    if twice:
        found.append(f"{n['backends']} names these backends more than once: {', '.join(twice)}")

    no_address = [str(b.get("name")) for b in raw if not str(b.get("address") or "").strip()]
    if no_address:
        hint = (
            f"give it in {n['backends']}, or gather facts of the {group} hosts in the play first"
            if group
            else f"give it in {n['backends']}"
        )
        found.append(f"these backends have no address: {', '.join(no_address)} ({hint})")
    unsafe = [
        f"{b.get('name')!r} at {b.get('address')!r}"
        for b in raw
        if (b.get("name") and not NAME_RE.match(str(b["name"])))
        or (b.get("address") and not ADDRESS_RE.match(str(b["address"]).strip()))
    ]
    if unsafe:
        found.append(
            f"{n['backends']} has names or addresses nginx cannot take (no blanks, ';', '#' or braces): "
            + ", ".join(unsafe)
        )
    bad_ports = [
        str(b.get("name")) for b in raw if b.get("port") is not None and not 0 < (_int(b["port"]) or 0) < 65536
    ]
    if bad_ports:
        found.append(f"{n['backends']} ports must be 1-65535: {', '.join(bad_ports)}")

    unknown = sorted(set(state) - set(backend_names))
    if unknown:
        found.append(f"{n['state']} names unknown backends: {', '.join(unknown)} (known: {', '.join(backend_names)})")
    for name, over in state.items():
        if not isinstance(over, Mapping):
            found.append(f"{n['state']}[{name}] must be a dict such as {{down: true}} or {{weight: 2}} (got {over!r})")
            continue
        extra = sorted(str(k) for k in over if k not in STATE_KEYS)
        if extra:
            found.append(f"{n['state']}[{name}] sets {', '.join(extra)}; only down and weight can be set")

    merged = apply_state(raw, state)
    weights = [(str(b.get("name")), _int(b.get("weight", 1))) for b in merged]
    low = [f"{name}: {b.get('weight')}" for (name, w), b in zip(weights, merged, strict=True) if w is None or w < 1]
    if low:
        found.append(f"{n['state']} and {n['backends']} weights must be 1 or more ({', '.join(low)})")
    downs = [_down(b.get("down", False)) for b in merged]
    not_bool = [str(b.get("name")) for b, d in zip(merged, downs, strict=True) if d is None]
    if not_bool:
        found.append(f"{n['state']} and {n['backends']}: down must be true or false ({', '.join(not_bool)})")
    found += colour_problems(raw, n["colour"])
    if live:
        live_downs = [d for b, d in zip(merged, downs, strict=True) if str(b.get("colour") or "") == live]
        if not live_downs:
            found.append(f"the live colour {live} has no backend (set {n['colour']} on its hosts)")
        elif not not_bool and all(live_downs):
            found.append(f"{n['state']} leaves no backend of the live colour {live} in service")
    elif raw and not not_bool and all(downs):
        found.append(f"{n['state']} leaves no backend in service: at least one backend must stay in service (not down)")
    return found


def colour_problems(backends: Iterable[Mapping[str, Any]], name: str = "colour") -> list[str]:
    """Blue-green colours: each blue or green, and on every backend or on none."""
    painted = [(str(b.get("name")), str(b.get("colour") or "")) for b in backends]
    found = []
    bad = [f"{host}: {colour!r}" for host, colour in painted if colour and colour not in COLOURS]
    if bad:
        found.append(f"{name} must be blue or green ({', '.join(bad)})")
    bare = [host for host, colour in painted if not colour]
    if bare and len(bare) < len(painted):
        found.append(
            f"{name} is set on some API hosts and not on these: {', '.join(bare)} (set it on every one, or on none)"
        )
    return found


# ------------------------------------------------------------------------------------ blue-green
def colours(
    backends: Iterable[Mapping[str, Any]], live: str = "", idle_state: str = "keep", previous: str = ""
) -> dict[str, Any] | None:
    """The colours the upstream file gets: None without blue-green (no backend has a colour). Else
    ``{live, idle, decommissioned}``: ``live`` when given, else the live colour the ``previous`` file
    records (while hosts of it remain), else blue when blue hosts exist, else the colour there is;
    ``idle`` the other colour ('' when no host has it); ``decommissioned`` as ``idle_state`` says,
    ``keep`` keeping what the previous file says of that same idle colour."""
    present = [c for c in COLOURS if any(str(b.get("colour") or "") == c for b in backends)]
    if not present:
        return None
    before = colour_state(previous)
    if not live:
        live = before["live"] if before["live"] in present else ("blue" if "blue" in present else present[0])
    idle = next((c for c in present if c != live), "")
    if idle_state == "decommissioned":
        down = True
    elif idle_state == "warm":
        down = False
    else:
        down = bool(idle) and before["idle"] == idle and before["decommissioned"]
    return {"live": live, "idle": idle, "decommissioned": bool(idle) and down}


def colour_state(text: str) -> dict[str, Any]:
    """The colours an upstream file records, and the pool of its preview upstream: ``{live, idle,
    decommissioned, preview}`` (live '' without blue-green)."""
    match = COLOUR_LINE_RE.search(text or "")
    return {
        "live": match[1] if match else "",
        "idle": (match[2] or "") if match else "",
        "decommissioned": bool(match and match[3]),
        "preview": parse_pool(text or "", UPSTREAM_PREVIEW),
    }


def _preview_block(servers: str, port: int, keepalive: int, keepalive_timeout: str, idle: str) -> str:
    return (
        "\n"
        f"# Blue-green: the idle colour ({idle}) behind a listener on the loopback only, for the smoke tests\n"
        "# before a switch (blue_green.yml). Not public: no other address reaches it.\n"
        f"upstream {UPSTREAM_PREVIEW} {{\n"
        f"    zone {UPSTREAM_PREVIEW} 64k;\n"
        "    least_conn;\n"
        f"{servers}\n"
        f"    keepalive {int(keepalive)};\n"
        f"    keepalive_timeout {keepalive_timeout};\n"
        "}\n"
        "\n"
        "server {\n"
        f"    listen 127.0.0.1:{int(port)};\n"
        "    location / {\n"
        "        proxy_http_version 1.1;\n"
        "        proxy_set_header Host $host;\n"
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "        proxy_set_header X-Forwarded-Proto $scheme;\n"
        '        proxy_set_header Connection "";\n'
        f"        proxy_pass http://{UPSTREAM_PREVIEW};\n"
        "    }\n"
        "}\n"
    )


# ------------------------------------------------------------------------------------ the file
def _host_port(address: str, port: int) -> str:
    address = address.strip()
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"  # IPv6: nginx needs brackets before the port
    return f"{address}:{port}"


def server_line(backend: Mapping[str, Any], max_fails: int, fail_timeout: str) -> str:
    """One `server` line of an upstream: address, passive checks, weight when not 1, down, # name."""
    line = (
        f"    server {_host_port(str(backend['address']), int(backend.get('port') or DEFAULT_PORT))}"
        f" max_fails={int(max_fails)} fail_timeout={fail_timeout}"
    )
    weight = int(backend.get("weight", 1))
    if weight != 1:
        line += f" weight={weight}"
    if to_bool(backend.get("down", False)):
        line += " down"
    return f"{line};  # {backend['name']}"


def render(
    backends: Iterable[Mapping[str, Any]],
    max_fails: int = 3,
    fail_timeout: str = "10s",
    keepalive: int = 32,
    keepalive_timeout: str = "4s",
    colour: Mapping[str, Any] | None = None,
    preview_port: int = DEFAULT_PREVIEW_PORT,
) -> str:
    """The upstream file: tutormax_api (least_conn) and tutormax_ws (hash of the client address) with
    the same servers. ``backends`` have their state applied already (``apply_state``). With
    ``colour`` (``colours()``), those two get the live colour's servers, and a warm idle colour gets
    tutormax_preview and its loopback listener on ``preview_port``."""
    backends = list(backends)
    header = HEADER
    preview = ""
    if colour:
        idle = [b for b in backends if str(b.get("colour") or "") != colour["live"]]
        backends = [b for b in backends if str(b.get("colour") or "") == colour["live"]]
        header += f"# blue-green: live {colour['live']}"
        if colour["idle"]:
            header += f", idle {colour['idle']}" + (" decommissioned" if colour["decommissioned"] else "")
        header += "\n"
        if idle and not colour["decommissioned"]:
            idle_servers = "\n".join(server_line(b, max_fails, fail_timeout) for b in idle)
            preview = _preview_block(idle_servers, preview_port, keepalive, keepalive_timeout, colour["idle"])
    servers = "\n".join(server_line(b, max_fails, fail_timeout) for b in backends)
    return (
        f"{header}\n"
        "# HTTP: fewest active connections wins; shared zone so every worker sees the same failures.\n"
        f"upstream {UPSTREAM_API} {{\n"
        f"    zone {UPSTREAM_API} 64k;\n"
        "    least_conn;\n"
        f"{servers}\n"
        f"    keepalive {int(keepalive)};\n"
        f"    keepalive_timeout {keepalive_timeout};\n"
        "}\n"
        "\n"
        "# WebSockets: the same hosts, a client address always lands on the same one (consistent hashing\n"
        "# moves only that host's clients when one is drained).\n"
        f"upstream {UPSTREAM_WS} {{\n"
        f"    zone {UPSTREAM_WS} 64k;\n"
        "    hash $remote_addr consistent;\n"
        f"{servers}\n"
        "}\n"
        f"{preview}"
    )


def _split_address(address: str) -> tuple[str, int | None]:
    if address.startswith("unix:"):
        return address, None
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]+)(?::(\d+))?|(.*)", address)
    if match is None:  # the last alternative takes anything
        raise ValueError(f"cannot read the address {address!r}")
    if match[1] is not None:
        return match[1], int(match[2]) if match[2] else 80
    if match[3] is not None:
        return match[3], int(match[4]) if match[4] else 80
    return match[5], None


def parse_servers(text: str, upstream: str = "") -> list[dict[str, Any]]:
    """The servers of an upstream block in ``text`` (the first one when ``upstream`` is empty): name
    (the line's trailing ``# name``, else the address), address, port, weight, down."""
    servers: list[dict[str, Any]] = []
    inside = False
    for line in text.splitlines():
        code, _hash, comment = line.partition("#")
        if not inside:
            match = re.search(r"\bupstream\s+(\S+)\s*\{", code)
            if not match or (upstream and match[1] != upstream):
                continue
            inside, code = True, code[match.end() :]
        block_ends = "}" in code
        code = code.split("}", 1)[0]
        statements = [s.split() for s in code.split(";") if s.strip()]
        here = [s for s in statements if s[0] == "server" and len(s) > 1]
        for words in here:
            address, port = _split_address(words[1])
            params = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            flags = {w for w in words[2:] if "=" not in w}
            name = comment.strip().split()[0] if comment.strip() and len(here) == 1 else words[1]
            servers.append(
                {
                    "name": name,
                    "address": address,
                    "port": port,
                    "weight": _int(params.get("weight", 1)) or 1,
                    "down": "down" in flags,
                    "backup": "backup" in flags,
                }
            )
        if block_ends:
            break
    return servers


def pool(servers: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """In service and down, by name, in file order."""
    servers = list(servers)
    return {
        "in_service": [str(s["name"]) for s in servers if not s.get("down")],
        "down": [str(s["name"]) for s in servers if s.get("down")],
    }


def parse_pool(text: str, upstream: str = "") -> dict[str, list[str]]:
    """The pool of the first upstream of ``text`` (or of ``upstream``)."""
    return pool(parse_servers(text, upstream))


def check_settings(
    max_fails: int, fail_timeout: str, keepalive: int, keepalive_timeout: str, prefix: str = ""
) -> list[str]:
    """What is wrong with the upstream settings; names are ``prefix`` + the module's argument names."""
    found = []
    if int(max_fails) < 0:
        found.append(f"{prefix}max_fails must be 0 or more (got {max_fails})")
    if int(keepalive) < 1:
        found.append(f"{prefix}keepalive must be 1 or more (got {keepalive})")
    for name, value in (("fail_timeout", fail_timeout), ("keepalive_timeout", keepalive_timeout)):
        if not DURATION_RE.match(str(value)):
            found.append(f"{prefix}{name} must be a duration such as 10s or 500ms (got {value!r})")
    return found


# ------------------------------------------------------------------------------------ on the host
def in_place(path: Path, data: bytes) -> tuple[bool, bool]:
    """Whether ``path`` holds ``data``, and whether its mode and owner (root:root 0644, owner only
    checked when running as root) are right."""
    try:
        st = path.stat()
        same = path.read_bytes() == data
    except OSError:
        return False, False
    owner_ok = os.geteuid() != 0 or (st.st_uid, st.st_gid) == (0, 0)
    return same, st.st_mode & 0o7777 == MODE and owner_ok


def fix_attributes(path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, 0, 0)
    os.chmod(path, MODE)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename, root:root 0644 (owner only when root)."""
    tmp = path.with_name(f".{path.name}.tutormax-new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fix_attributes(tmp)
    os.replace(tmp, path)


def wait_ping(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> bool:
    """Ask http://HOST:PORT/ping until it answers 200 or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open_url(f"http://{host}:{port}/ping", timeout=2, use_proxy=False) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def answered_by(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> str:
    """The API instance that answered /health through the load balancer: its instance id (JSON or the
    X-Instance-Id header), of any status (a 503 of a busy dependency still names its instance).
    Otherwise "status <code>" or the error's name. The same request as the API's own health gate
    (module_utils/release.py)."""
    return answered_by_text(release.health(port, host=host, timeout=timeout))


def served(port: int, instance: str, tries: int, delay: float = 0.05, host: str = "127.0.0.1") -> dict[str, Any]:
    """Ask /health through the load balancer up to ``tries`` times until ``instance`` answers."""
    answers: list[str] = []
    for attempt in range(1, max(1, tries) + 1):
        answer = answered_by(port, host)
        answers.append(answer)
        if answer == instance:
            return {"instance": instance, "seen": True, "requests": attempt, "answered_by": sorted(set(answers))}
        if attempt < tries:
            time.sleep(delay)
    return {"instance": instance, "seen": False, "requests": len(answers), "answered_by": sorted(set(answers))}


def path_status(port: int, path: str, host: str = "127.0.0.1", timeout: float = 5.0) -> int:
    """The HTTP status of GET ``path`` on ``host:port`` (0 when nothing answered)."""
    try:
        with open_url(f"http://{host}:{port}{path}", timeout=timeout, use_proxy=False) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def smoke(
    port: int,
    instances: Iterable[str],
    version: str,
    tries: int = 60,
    delay: float = 0.05,
    paths: Iterable[str] = (),
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """A blue-green smoke test through a listener (the preview one): ask /health until each of
    ``instances`` has answered 200 with ``version`` (its last answer counts), at most ``tries`` asks;
    then GET each of ``paths`` once. Per instance: seen, healthy, its last status and version;
    the answers from anything else; each path's status."""
    found = {str(i): {"seen": False, "healthy": False, "status": 0, "version": None} for i in instances}
    others: set[str] = set()
    asks = 0
    while asks < max(1, tries) and not all(v["healthy"] for v in found.values()):
        answer = release.health(port, host=host)
        asks += 1
        entry = found.get(str(answer.get("instance_id") or ""))
        if entry is None:
            others.add(answered_by_text(answer))
        else:
            healthy = answer.get("status") == 200 and answer.get("version") == version
            entry.update(seen=True, healthy=healthy, status=answer.get("status"), version=answer.get("version"))
        if asks < tries and not all(v["healthy"] for v in found.values()):
            time.sleep(delay)
    return {
        "instances": found,
        "asks": asks,
        "other_answers": sorted(others),
        "paths": {p: path_status(port, p, host) for p in paths},
    }


def answered_by_text(answer: Mapping[str, Any]) -> str:
    """An answer of ``release.health`` as one word: its instance id, else its status or error."""
    if answer.get("instance_id"):
        return str(answer["instance_id"])
    if answer.get("status"):
        return f"status {answer['status']}"
    return str(answer.get("error") or "no answer")
