# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Talk to redis-server and redis-sentinel without redis-cli: shared by redis_topology,
redis_sentinel_settings and redis_command.

A small RESP2 client (stdlib sockets; the hosts have no redis-py) and the pure functions that decide:
Sentinel's flat "field, value" replies as dicts, the master named with the highest config epoch,
ROLE replies, which master a re-run keeps, and which Sentinel settings differ from the wanted ones.
Passwords travel only inside the connection (AUTH), never on a command line or in an environment.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

# What a RESP2 reply parses to: simple and bulk strings as str, integers as int, nil as None, an error
# (inside an array; at the top level it is raised) as ReplyError, arrays as lists of replies.
Reply: TypeAlias = "str | int | ReplyError | list[Reply] | None"

SECRET_MASK = "********"  # noqa: S105 - the mask shown instead of a password
# Flags of SENTINEL MASTER while a failover of that master runs.
FAILOVER_FLAGS = frozenset({"failover_in_progress"})


class RedisError(Exception):
    """Anything that went wrong talking to a Redis server or Sentinel."""


class RedisConnectionError(RedisError):
    """No answer: connection refused, timed out or closed, or not RESP."""


class ReplyError(RedisError):
    """The server answered with an error reply ("-WRONGPASS invalid username-password pair")."""

    @property
    def code(self) -> str:
        """The error's first word: ERR, WRONGPASS, NOAUTH, LOADING, ..."""
        text = str(self)
        return text.split(" ", 1)[0] if text else ""


# ------------------------------------------------------------------------------------ RESP2 client
def encode_command(args: Sequence[str | int | bytes]) -> bytes:
    """A command as a RESP array of bulk strings (the form every Redis accepts)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RespReader:
    """Parses RESP2 replies from a callable that returns up to N bytes (b"" on end of stream)."""

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._buffer = b""

    def _fill(self) -> None:
        chunk = self._recv(65536)
        if not chunk:
            raise RedisConnectionError("the connection was closed before the reply was complete")
        self._buffer += chunk

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
                return line
            self._fill()

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size + 2:
            self._fill()
        data, tail, self._buffer = self._buffer[:size], self._buffer[size : size + 2], self._buffer[size + 2 :]
        if tail != b"\r\n":
            raise RedisConnectionError("not a RESP reply: a bulk string does not end with CRLF")
        return data

    def read(self) -> Reply:
        line = self._line()
        if not line:
            raise RedisConnectionError("not a RESP reply: an empty line")
        kind, rest = line[:1], line[1:].decode("utf-8", errors="replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            return ReplyError(rest)
        try:
            number = int(rest)
        except ValueError:
            raise RedisConnectionError(f"not a RESP reply: {line[:40]!r}") from None
        if kind == b":":
            return number
        if kind == b"$":
            return None if number < 0 else self._exactly(number).decode("utf-8", errors="replace")
        if kind == b"*":
            return None if number < 0 else [self.read() for _index in range(number)]
        raise RedisConnectionError(f"not a RESP2 reply: {line[:40]!r}")


class Client:
    """One connection to a Redis server or Sentinel; authenticates on connect when given a password.

    Every socket operation is bounded by ``timeout`` seconds. Use as a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str | None = None,
        user: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: RespReader | None = None
        self._password = password
        self._user = user

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def connect(self) -> Client:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise RedisConnectionError(f"{self.address}: {describe_os_error(exc)}") from None
        self._sock.settimeout(self.timeout)
        self._reader = RespReader(self._sock.recv)
        if self._password:
            auth = ("AUTH", self._user, self._password) if self._user else ("AUTH", self._password)
            try:
                self.command(*auth)
            except RedisError:
                self.close()
                raise
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._reader = None

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self, *args: str | int | bytes) -> Reply:
        """Send one command and return its reply; an error reply is raised as ReplyError."""
        reply = self.raw_command(*args)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def raw_command(self, *args: str | int | bytes) -> Reply:
        """Send one command and return its reply, an error reply included."""
        if self._sock is None or self._reader is None:
            raise RedisConnectionError(f"{self.address}: not connected")
        try:
            self._sock.sendall(encode_command(args))
            return self._reader.read()
        except OSError as exc:
            self.close()
            raise RedisConnectionError(f"{self.address}: {describe_os_error(exc)}") from None
        except RedisConnectionError as exc:
            self.close()
            raise RedisConnectionError(f"{self.address}: {exc}") from None


def describe_os_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    return exc.strerror or str(exc) or type(exc).__name__


def ask(
    host: str,
    port: int,
    command: Sequence[str | int],
    password: str | None = None,
    user: str | None = None,
    timeout: float = 5.0,
) -> Reply:
    """Connect, authenticate, send one command, close: its reply (errors raised)."""
    with Client(host, port, password=password, user=user, timeout=timeout) as client:
        return client.command(*command)


# ------------------------------------------------------------------------------------ parsing
def pairs(reply: Reply) -> dict[str, Reply]:
    """Sentinel's flat [field, value, field, value, ...] replies (SENTINEL MASTER, SENTINEL CONFIG GET)
    as a dict."""
    if not isinstance(reply, list) or len(reply) % 2:
        raise ValueError(f"expected a flat list of field/value pairs, got {reply!r:.80}")
    return {str(key): value for key, value in zip(reply[0::2], reply[1::2], strict=True)}


def sentinel_master_view(address: str, reply: Reply) -> dict[str, Any]:
    """What one Sentinel says about the master it monitors (its SENTINEL MASTER reply)."""
    fields = pairs(reply)
    flags = [f for f in str(fields.get("flags") or "").split(",") if f]
    try:
        epoch = int(str(fields["config-epoch"]))
        port = int(str(fields["port"]))
    except (KeyError, ValueError):
        raise ValueError(f"SENTINEL MASTER reply without a config-epoch or port: {reply!r:.120}") from None
    ip = str(fields.get("ip") or "")
    if not ip:
        raise ValueError("SENTINEL MASTER reply without an ip")
    return {
        "address": address,
        "answered": True,
        "error": "",
        "master": ip,
        "port": port,
        "config_epoch": epoch,
        "flags": flags,
        "failover_in_progress": bool(FAILOVER_FLAGS & set(flags)),
    }


def parse_role(reply: Reply) -> dict[str, Any]:
    """A ROLE reply: {"role": "master", "offset", "replicas": [[ip, port, offset], ...]}, {"role": "slave",
    "master_host", "master_port", "link_state", "offset"} or {"role": "sentinel", "masters": [...]}."""
    if not isinstance(reply, list) or not reply or not isinstance(reply[0], str):
        raise ValueError(f"not a ROLE reply: {reply!r:.80}")
    role = reply[0]
    if role == "master" and len(reply) >= 3 and isinstance(reply[2], list):
        replicas = [[str(part) for part in r] for r in reply[2] if isinstance(r, list)]
        return {"role": role, "offset": reply[1], "replicas": replicas}
    if role in ("slave", "replica") and len(reply) >= 5:
        return {
            "role": "slave",
            "master_host": str(reply[1]),
            "master_port": int(str(reply[2])),
            "link_state": str(reply[3]),
            "offset": reply[4],
        }
    if role == "sentinel" and len(reply) >= 2 and isinstance(reply[1], list):
        return {"role": role, "masters": [str(m) for m in reply[1]]}
    raise ValueError(f"not a ROLE reply: {reply!r:.80}")


def split_config_line(line: str) -> list[str]:
    """A redis.conf / sentinel.conf line as Redis reads it (sdssplitargs): words, "double quoted" with
    backslash escapes, or 'single quoted'; a quote starts quoting anywhere in a word, and a closing
    one must end the word. ValueError for what Redis would refuse."""
    escapes = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a"}
    words: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return words
        word: list[str] = []
        quote = ""
        while i < n:
            c = line[i]
            if quote == '"':
                if c == "\\" and i + 3 < n and line[i + 1] == "x" and _is_hex(line[i + 2 : i + 4]):
                    word.append(chr(int(line[i + 2 : i + 4], 16)))
                    i += 3
                elif c == "\\" and i + 1 < n:
                    i += 1
                    word.append(escapes.get(line[i], line[i]))
                elif c == '"':
                    quote = ""
                    _closed(line, i)
                else:
                    word.append(c)
            elif quote == "'":
                if c == "\\" and i + 1 < n and line[i + 1] == "'":
                    i += 1
                    word.append("'")
                elif c == "'":
                    quote = ""
                    _closed(line, i)
                else:
                    word.append(c)
            elif c.isspace():
                break
            elif c in "\"'":
                quote = c
            else:
                word.append(c)
            i += 1
        if quote:
            raise ValueError(f"unbalanced quotes in config line: {line[:40]!r}")
        words.append("".join(word))


def _closed(line: str, i: int) -> None:
    if i + 1 < len(line) and not line[i + 1].isspace():
        raise ValueError(f"a closing quote must be followed by a space: {line[:40]!r}")


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def config_value(text: str, prefix: Sequence[str]) -> str | None:
    """The word after ``prefix`` on the last config line that starts with it ("sentinel auth-pass NAME"
    -> the password), or None. The directive words (the first two) compare case-insensitively, like
    Redis reads them; the rest (a master's name) exactly."""
    found = None
    size = len(prefix)
    head = min(2, size)
    wanted_head = [p.lower() for p in prefix[:head]]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            words = split_config_line(stripped)
        except ValueError:
            continue
        if (
            len(words) > size
            and [w.lower() for w in words[:head]] == wanted_head
            and words[head:size] == list(prefix[head:])
        ):
            found = words[size]
    return found


def jsonable(reply: Reply) -> Any:  # noqa: ANN401 - a reply is any nesting of lists and scalars
    """A reply fit for a module result: error replies (inside arrays) as {"error": text}."""
    if isinstance(reply, ReplyError):
        return {"error": str(reply)}
    if isinstance(reply, list):
        return [jsonable(r) for r in reply]
    return reply


# ------------------------------------------------------------------------------------ deciding
class SplitBrainError(RedisError):
    """No Sentinel answered and more than one redis-server says it is the master."""

    def __init__(self, claims: Sequence[str]) -> None:
        self.claims = list(claims)
        super().__init__(
            "No Sentinel answered and several redis-servers say they are the master: "
            f"{', '.join(self.claims)}. Refusing to pick one; see the redis role README's runbook (split brain)."
        )


def pick_master(views: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of the Sentinels that answered, the view with the highest config epoch (that is how Sentinels
    settle disagreements among themselves). Equal epochs: the master most of them name, then the
    first asked."""
    answered = [v for v in views if v.get("answered")]
    if not answered:
        return None
    top = max(int(v["config_epoch"]) for v in answered)
    best = [v for v in answered if int(v["config_epoch"]) == top]
    votes: dict[str, int] = {}
    for view in best:
        votes[view["master"]] = votes.get(view["master"], 0) + 1
    return max(best, key=lambda v: votes[v["master"]])  # max keeps the first of equals


def failovers_in_progress(views: Iterable[Mapping[str, Any]]) -> list[str]:
    """Addresses of the Sentinels that report a failover of the master in progress."""
    return [str(v["address"]) for v in views if v.get("answered") and v.get("failover_in_progress")]


def master_claims(views: Iterable[Mapping[str, Any]]) -> list[str]:
    """Addresses of the redis-servers whose ROLE is master."""
    return [str(v["address"]) for v in views if v.get("answered") and v.get("role") == "master"]


def decide_master(
    sentinel_views: Sequence[Mapping[str, Any]],
    server_views: Sequence[Mapping[str, Any]],
    initial_master: str,
) -> dict[str, Any]:
    """Which master a run keeps: the Sentinels' (highest config epoch); when no Sentinel answered, the
    one redis-server whose ROLE is master (several: SplitBrainError); when none answered either, the
    inventory's initial master."""
    best = pick_master(sentinel_views)
    if best is not None:
        return {
            "master": best["master"],
            "port": best["port"],
            "source": "sentinels",
            "known": True,
            "config_epoch": best["config_epoch"],
            "explanation": f"the Sentinels (config epoch {best['config_epoch']})",
        }
    claims = master_claims(server_views)
    if len(claims) > 1:
        raise SplitBrainError(claims)
    if claims:
        return {
            "master": claims[0],
            "port": None,
            "source": "servers",
            "known": True,
            "config_epoch": None,
            "explanation": "the redis-servers (no Sentinel answered)",
        }
    return {
        "master": initial_master,
        "port": None,
        "source": "inventory",
        "known": False,
        "config_epoch": None,
        "explanation": "the inventory (nothing answered: first deployment, or all of Redis is down)",
    }


def ask_all(addresses: Sequence[str], ask_one: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """``ask_one`` for every address at once (threads), in the order given: a dead host costs one
    timeout, not one per host."""
    if not addresses:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        return list(pool.map(ask_one, addresses))


def unanswered(address: str, error: Exception) -> dict[str, Any]:
    return {"address": address, "answered": False, "error": str(error)}


def sentinel_view(address: str, port: int, master_name: str, password: str | None, timeout: float) -> dict[str, Any]:
    """Ask one Sentinel for the master it monitors under ``master_name``; never raises."""
    try:
        reply = ask(address, port, ["SENTINEL", "MASTER", master_name], password=password, timeout=timeout)
        return sentinel_master_view(address, reply)
    except (RedisError, ValueError) as exc:
        return unanswered(address, exc)


def server_view(address: str, port: int, password: str | None, timeout: float) -> dict[str, Any]:
    """Ask one redis-server for its ROLE; never raises."""
    try:
        role = parse_role(ask(address, port, ["ROLE"], password=password, timeout=timeout))
        return {"address": address, "answered": True, "error": "", **role}
    except (RedisError, ValueError) as exc:
        return unanswered(address, exc)


def wait_for_sentinels(
    ask_views: Callable[[], list[dict[str, Any]]],
    wait: float,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[dict[str, Any]], float]:
    """Ask the Sentinels until none reports a failover in progress, for up to ``wait`` seconds: the
    failover's outcome is the topology to keep. Returns the last views and the seconds waited (the
    caller decides what a failover still running means)."""
    start = clock()
    while True:
        views = ask_views()
        waited = clock() - start
        if not failovers_in_progress(views) or waited >= wait:
            return views, waited
        sleep(min(interval, max(0.0, wait - waited)))


def password_check(host: str, port: int, password: str, timeout: float) -> dict[str, Any]:
    """Does the redis-server at host:port take ``password`` (AUTH + PING)? accepted is None when it
    did not answer or answered something other than yes or WRONGPASS."""
    result: dict[str, Any] = {"address": host, "answered": False, "accepted": None, "error": ""}
    try:
        with Client(host, port, timeout=timeout) as client:
            result["answered"] = True
            reply = client.raw_command("AUTH", password)
            if isinstance(reply, ReplyError):
                result["error"] = str(reply)
                result["accepted"] = False if reply.code == "WRONGPASS" else None
                return result
            client.command("PING")
            result["accepted"] = True
    except RedisError as exc:
        result["error"] = str(exc)
    return result


# ------------------------------------------------------------------------------------ Sentinel settings
# Settings of the monitored master (SENTINEL SET) and of the Sentinel itself (SENTINEL CONFIG SET).
MASTER_SETTINGS = ("quorum", "down-after-milliseconds", "failover-timeout", "parallel-syncs")
SENTINEL_SETTINGS = ("announce-ip", "resolve-hostnames", "announce-hostnames")
AUTH_PASS = "auth-pass"  # noqa: S105 - the setting's name


def setting_value(value: object) -> str:
    """A wanted value as Sentinel reports it: booleans as yes/no, numbers as digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def plan_settings(
    wanted: Mapping[str, object],
    running: Mapping[str, Reply],
    scope: str,
) -> list[dict[str, Any]]:
    """The wanted settings (None: leave alone) whose running value differs, in the order wanted:
    [{"scope", "setting", "before", "after"}]; before is None when the Sentinel does not report it."""
    changes = []
    for key, value in wanted.items():
        if value is None:
            continue
        after = setting_value(value)
        before = running.get(key)
        if before is None or str(before) != after:
            changes.append({"scope": scope, "setting": key, "before": before, "after": after})
    return changes


def plan_auth_pass(wanted: str | None, saved: str | None) -> list[dict[str, Any]]:
    """Sentinel hides the master's auth-pass in SENTINEL MASTER; the config file it saves shows it.
    The change (values masked) when the saved one differs from the wanted one."""
    if wanted is None or wanted == saved:
        return []
    return [
        {
            "scope": "master",
            "setting": AUTH_PASS,
            "before": None if saved is None else SECRET_MASK,
            "after": SECRET_MASK,
        }
    ]


def render_settings(master_name: str, values: Mapping[str, Reply], auth_pass: str | None = None) -> str:
    """Settings as the lines of a diff: ``sentinel <setting> [<master>] <value>``, sorted."""
    lines = []
    for key, value in values.items():
        if key == AUTH_PASS:
            continue
        shown = "(not reported)" if value is None else str(value) or '""'
        if key in MASTER_SETTINGS:
            lines.append(f"sentinel {key} {master_name} {shown}")
        else:
            lines.append(f"sentinel {key} {shown}")
    if auth_pass is not None:
        lines.append(f"sentinel {AUTH_PASS} {master_name} {auth_pass}")
    return "\n".join(sorted(lines)) + "\n"
