# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Talk to Patroni's REST API and decide from its answers: shared by patroni_cluster_info,
patroni_config and patroni_switchover.

- ``base_url`` / ``ask_first``: an endpoint (a host, host:port or URL) as the API's base URL, and one
  request asked of several endpoints in turn (the first that answers wins, so a dead host does not
  fail the read).
- ``summarize``: GET /cluster read as leader, members, replicas, health and problems in words.
- ``plan_patch`` / ``apply_patch``: the PATCH /config body that takes the dynamic configuration to the
  wanted one, with before/after of the changed keys, and the configuration Patroni makes of it.
- ``plan_switchover``: whether a planned switchover (to a named member or to Patroni's pick) can go,
  and why not in words.

The shapes follow Patroni 3.0.2 (Debian 12's package), ``patroni/utils.py:cluster_as_json`` and
``patroni/api.py``: /cluster is ``{"members": [...]}`` plus ``pause`` and ``scheduled_switchover`` when
set (no ``scope`` before 3.2); a member has ``name``, ``role`` (leader, standby_leader, sync_standby,
replica), ``state``, ``api_url``, and when known ``host``, ``port``, ``timeline``, ``pending_restart``,
``tags``; every member but the leader has ``lag``, bytes or the string ``unknown``. Replicas report
``running`` in 3.0.2; 3.0.4 and later report ``streaming`` or ``in archive recovery`` instead.

Stdlib and ansible.module_utils only: this runs on the hosts.
"""

from __future__ import annotations

import copy
import http.client
import json
import urllib.error
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ansible.module_utils.urls import open_url

DEFAULT_PORT = 8008
LEADER_ROLES = frozenset({"leader", "standby_leader"})
SYNC_ROLE = "sync_standby"
RUNNING_STATES = frozenset({"running", "streaming"})
# Where PostgreSQL's own settings sit in the dynamic configuration: there on and off, true and false,
# yes and no are the same value (PostgreSQL reads them alike), so a boolean written in YAML matches.
PARAMETERS_PATH = ("postgresql", "parameters")
ON_WORDS = frozenset({"on", "true", "yes"})
OFF_WORDS = frozenset({"off", "false", "no"})


class PatroniError(Exception):
    """Anything that went wrong asking Patroni's REST API."""


class PatroniConnectionError(PatroniError):
    """No usable answer: refused, timed out, or not JSON."""


class PatroniHTTPError(PatroniError):
    """Patroni answered with an HTTP error status."""

    def __init__(self, url: str, status: int, body: str) -> None:
        self.url = url
        self.status = status
        self.body = body
        text = " ".join(body.split())[:200]
        super().__init__(f"{url}: HTTP {status}" + (f" ({text})" if text else ""))


# ------------------------------------------------------------------------------------ requests
def base_url(endpoint: str, port: int = DEFAULT_PORT) -> str:
    """An endpoint as the API's base URL: ``10.0.0.11`` -> ``http://10.0.0.11:8008``; ``host:8009``,
    ``[::1]``, ``::1`` and ``https://host:8008`` work too. A URL's trailing ``/patroni`` (the form of a
    member's ``api_url``) and ``/`` are dropped."""
    text = endpoint.strip()
    if not text:
        raise ValueError("an endpoint is empty")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"endpoint {endpoint!r} is not an http:// or https:// URL")
        path = parts.path.rstrip("/")
        path = path.removesuffix("/patroni")
        return f"{parts.scheme}://{parts.netloc}{path}"
    if text.count(":") > 1 and not text.startswith("["):  # a bare IPv6 address
        return f"http://[{text}]:{port}"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        given = rest[1:] if rest.startswith(":") else rest
        if not sep or not host or (rest and not (rest.startswith(":") and given.isdigit())):
            raise ValueError(f"endpoint {endpoint!r} is not a host, host:port or URL")
        return f"http://[{host}]:{given or port}"
    host, sep, given = text.partition(":")
    if not host or (sep and not given.isdigit()):
        raise ValueError(f"endpoint {endpoint!r} is not a host, host:port or URL")
    return f"http://{host}:{given or port}"


def request(
    url: str,
    method: str = "GET",
    body: Mapping[str, Any] | None = None,
    user: str = "",
    password: str = "",
    timeout: float = 5.0,
    validate_certs: bool = True,
    ca_path: str | None = None,
    as_text: bool = False,
) -> Any:  # noqa: ANN401 - JSON
    """One request to Patroni; its JSON answer (``as_text``: its answer as text, for the calls that answer
    in words, such as POST /switchover). PatroniHTTPError for an HTTP error status,
    PatroniConnectionError when nothing usable answered. Basic auth only when ``user`` is set (Patroni's
    ``restapi.authentication``); the password travels only in the Authorization header."""
    data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    auth: dict[str, Any] = {}
    if user:
        auth = {"url_username": user, "url_password": password, "force_basic_auth": True}
    try:
        with open_url(
            url,
            data=data,
            method=method,
            headers=headers,
            timeout=timeout,
            use_proxy=False,
            validate_certs=validate_certs,
            ca_path=ca_path,
            follow_redirects="none",
            use_netrc=False,
            **auth,
        ) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise PatroniHTTPError(url, exc.code, exc.read().decode("utf-8", errors="replace")) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = describe_error(reason) if isinstance(reason, BaseException) else str(reason)
        raise PatroniConnectionError(f"{url}: {text}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise PatroniConnectionError(f"{url}: {describe_error(exc)}") from None
    if as_text:
        return raw.decode("utf-8", errors="replace").strip()
    try:
        return json.loads(raw)
    except ValueError:
        raise PatroniConnectionError(f"{url}: the answer is not JSON ({raw[:60]!r})") from None


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def ask_first(
    bases: Sequence[str],
    path: str,
    ask: Callable[[str], Any],
) -> tuple[str, Any, list[dict[str, str]]]:
    """Ask ``path`` of each base URL in turn until one answers: (that base, its answer, the errors of
    those asked before it). A refused or timed-out connection, an answer that is not JSON and an HTTP
    5xx (a Patroni that lost etcd) move on to the next; a 4xx (authentication, a wrong path) is the same
    on every member and is raised at once. PatroniConnectionError when none answered, naming each."""
    errors: list[dict[str, str]] = []
    for base in bases:
        try:
            return base, ask(base + path), errors
        except PatroniHTTPError as exc:
            if exc.status < 500:
                raise
            errors.append({"endpoint": base, "error": explain(exc)})
        except PatroniConnectionError as exc:
            errors.append({"endpoint": base, "error": str(exc)})
    listed = "; ".join(e["error"] for e in errors) or "no endpoint given"
    raise NoAnswerError(f"No Patroni REST API answered {path}: {listed}", errors)


class NoAnswerError(PatroniConnectionError):
    """None of the endpoints answered; ``errors`` has one entry per endpoint."""

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


# ------------------------------------------------------------------------------------ /cluster
def member_view(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One member of /cluster with every field present: lag is bytes, or None for the leader (Patroni
    gives it none) and when Patroni reports ``unknown``."""
    lag = raw.get("lag")
    return {
        "name": str(raw.get("name") or ""),
        "role": str(raw.get("role") or ""),
        "state": str(raw.get("state") or ""),
        "host": raw.get("host"),
        "port": raw.get("port"),
        "timeline": raw.get("timeline"),
        "lag": lag if isinstance(lag, int) and not isinstance(lag, bool) else None,
        "api_url": raw.get("api_url"),
        "pending_restart": bool(raw.get("pending_restart")),
        "tags": dict(raw.get("tags") or {}),
    }


def summarize(cluster: Any, expected: Iterable[str] = ()) -> dict[str, Any]:  # noqa: ANN401 - JSON
    """GET /cluster's answer in the modules' terms. ``healthy``: a member holds the leader lock, every
    member is running (or streaming), and every ``expected`` member name is there (a stopped Patroni
    drops out of /cluster once its key expires, so only the names that should be there show it)."""
    if not isinstance(cluster, Mapping) or not isinstance(cluster.get("members"), list):
        raise PatroniConnectionError(f"not a /cluster answer (no members list): {str(cluster)[:120]}")
    members = [member_view(m) for m in cluster["members"] if isinstance(m, Mapping)]
    leaders = [m["name"] for m in members if m["role"] in LEADER_ROLES]
    leader = leaders[0] if leaders else None
    problems: list[str] = []
    if not members:
        problems.append(
            "Patroni lists no members: no Patroni of this scope has registered in etcd (a wrong scope or "
            "namespace, or etcd lost its data); check patroni.yml's scope and that Patroni runs on the hosts."
        )
    elif leader is None:
        problems.append(
            "No member holds the leader lock, so the cluster has no primary: a failover may be running, or "
            "the members cannot reach etcd; look at `patronictl list` and each member's Patroni log."
        )
    for member in members:
        if member["state"] not in RUNNING_STATES:
            state = member["state"] or "in no state"
            problems.append(
                f"Member {member['name']} ({member['role'] or 'no role'}) is {state}, not running: PostgreSQL "
                f"there is down or still starting; look at its Patroni log (journalctl -u patroni)."
            )
    present = {m["name"] for m in members}
    for name in dict.fromkeys(expected):
        if name not in present:
            problems.append(
                f"Member {name} is not in the cluster: its Patroni is stopped or cannot reach etcd (its member "
                f"key expired); start Patroni on {name} and check it reaches etcd."
            )
    return {
        "leader": leader,
        "members": members,
        "replicas": [m["name"] for m in members if m["role"] not in LEADER_ROLES],
        "sync_standbys": [m["name"] for m in members if m["role"] == SYNC_ROLE],
        "healthy": not problems,
        "problems": problems,
        "paused": bool(cluster.get("pause")),
        "pending_restart": [m["name"] for m in members if m["pending_restart"]],
        "scheduled_switchover": cluster.get("scheduled_switchover"),
    }


# ------------------------------------------------------------------------------------ /config
def normal(value: Any, parameters: bool = False) -> Any:  # noqa: ANN401 - JSON
    """A value as it compares: numbers and numeric strings alike (Patroni keeps ``"100"`` where YAML
    gives 100), booleans as words; inside postgresql.parameters on/true/yes and off/false/no alike.
    Whatever Patroni itself takes as unchanged (its PATCH compares ``str()`` of both) compares equal."""
    if isinstance(value, bool):
        word = "true" if value else "false"
        return ("on" if value else "off") if parameters else word
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        lowered = value.lower()
        if parameters and lowered in ON_WORDS:
            return "on"
        if parameters and lowered in OFF_WORDS:
            return "off"
        return lowered if lowered in ("true", "false") else value
    if isinstance(value, (list, tuple)):
        return [normal(v, parameters) for v in value]
    if isinstance(value, Mapping):
        return {str(k): normal(v, parameters) for k, v in value.items()}
    return value


def without_nulls(value: Any) -> Any:  # noqa: ANN401 - JSON
    """A new value with its null keys left out (null means "delete", and there is nothing to delete)."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


def plan_patch(
    wanted: Mapping[str, Any], current: Mapping[str, Any], path: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What takes ``current`` (GET /config) to ``wanted``: (the PATCH body, before, after), the last two
    with the changed keys only. Nested dicts compare key by key, as Patroni merges them; a null in
    ``wanted`` deletes the key (nothing when it is absent); keys ``wanted`` does not name stay."""
    patch: dict[str, Any] = {}
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    parameters = path == PARAMETERS_PATH
    for key, value in wanted.items():
        old = current.get(key)
        present = old is not None
        if value is None:
            if present:
                patch[key] = None
                before[key] = old
            continue
        if isinstance(value, Mapping) and (isinstance(old, Mapping) or not present):
            if not present and not value:  # an empty dict where there is none: add it
                patch[key], after[key] = {}, {}
                continue
            sub_patch, sub_before, sub_after = plan_patch(value, old or {}, (*path, str(key)))
            if sub_patch:
                patch[key], after[key] = sub_patch, sub_after
                if present:
                    before[key] = sub_before
            continue
        if present and normal(value, parameters) == normal(old, parameters):
            continue
        patch[key] = without_nulls(value)
        if present:
            before[key] = old
        after[key] = patch[key]
    return patch, before, after


def apply_patch(config: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration Patroni makes of ``config`` and a PATCH body (its ``patch_config``): nested
    dicts merged, null deleting. What check mode shows as the result."""
    result = copy.deepcopy(dict(config))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = apply_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# ------------------------------------------------------------------------------------ switchover
def plan_switchover(summary: Mapping[str, Any], candidate: str | None = None) -> dict[str, Any]:
    """What a planned switchover of the cluster ``summary`` describes (``summarize``'s answer) needs:
    ``do`` (False when ``candidate`` leads already), ``leader``, ``candidate`` (None: Patroni picks), the
    members that may become leader (``eligible``) and ``problems`` in sentences that name the fix.
    Patroni 3.0.2 refuses the same cases (patroni/api.py, is_failover_possible); saying so before the
    POST names the fix instead of Patroni's 412."""
    leader = summary.get("leader")
    members = {m["name"]: m for m in summary.get("members", [])}
    sync = list(summary.get("sync_standbys", []))
    problems: list[str] = []
    if candidate is not None and candidate == leader:
        return {"do": False, "leader": leader, "candidate": candidate, "eligible": [], "problems": []}
    if not summary.get("healthy"):
        problems += [*summary.get("problems", []), "A switchover needs a healthy cluster: fix the above first."]
    if summary.get("paused"):
        problems.append("The cluster is paused (maintenance mode): `patronictl resume` first.")
    if summary.get("scheduled_switchover"):
        problems.append(
            f"A switchover is scheduled already ({summary['scheduled_switchover']}): let it run, or cancel it "
            "with `patronictl flush <scope> switchover`."
        )
    replicas = [
        name
        for name, m in members.items()
        if name != leader and m["state"] in RUNNING_STATES and not m["tags"].get("nofailover")
    ]
    # In synchronous mode Patroni promotes a synchronous standby only.
    eligible = [name for name in replicas if name in sync] if sync else replicas
    if candidate is not None:
        if candidate not in members:
            problems.append(f"{candidate} is not a member of the cluster (members: {', '.join(sorted(members))}).")
        elif members[candidate]["tags"].get("nofailover"):
            problems.append(f"{candidate} is tagged nofailover: it never becomes the leader; name another member.")
        elif sync and candidate not in sync:
            problems.append(
                f"{candidate} is not a synchronous standby ({', '.join(sync)} is): with synchronous replication on, "
                f"Patroni promotes only a synchronous standby, so no acknowledged write is lost. Switch over to "
                f"{' or '.join(sync)}, or name no host."
            )
    elif not eligible:
        problems.append("No member can take over: there is no running replica to switch over to.")
    return {
        "do": not problems,
        "leader": leader,
        "candidate": candidate,
        "eligible": [candidate] if candidate is not None else eligible,
        "problems": problems,
    }


# ------------------------------------------------------------------------------------ module plumbing
# The options the modules take to reach the API (each module's DOCUMENTATION repeats them).
API_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "endpoints": {"type": "list", "elements": "str", "default": ["127.0.0.1"]},
    "port": {"type": "int", "default": DEFAULT_PORT},
    "user": {"type": "str", "default": ""},
    "password": {"type": "str", "default": "", "no_log": True},
    "timeout": {"type": "float", "default": 5.0},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
}

HINTS = {
    401: "Patroni refused the credentials: user and password must be restapi.authentication's in patroni.yml",
    403: "Patroni denied access: this host is not in restapi.allowlist, or a client certificate is required",
}
# What Patroni 3.0.2's /config answers mean (patroni/api.py: do_GET_config, do_PATCH_config).
CONFIG_HINTS = {
    409: "the dynamic configuration changed in etcd while this task ran; run it again",
    502: "this Patroni has no dynamic configuration from etcd: the cluster is not bootstrapped or etcd does not answer",
    503: "there is no dynamic configuration in etcd yet: the cluster is not bootstrapped",
}


def api_problems(params: Mapping[str, Any]) -> list[str]:
    """What is wrong with the API options, one sentence each."""
    problems = []
    if not params["endpoints"]:
        problems.append("endpoints must name at least one Patroni REST API (a host, host:port or URL)")
    for endpoint in params["endpoints"]:
        try:
            base_url(endpoint, params["port"])
        except ValueError as exc:
            problems.append(f"endpoints: {exc}")
    if not 0 < params["port"] < 65536:
        problems.append(f"port must be a port number, 1 to 65535 (got {params['port']})")
    if params["timeout"] <= 0:
        problems.append(f"timeout must be more than 0 seconds (got {params['timeout']})")
    if params["password"] and not params["user"]:
        problems.append("password needs user: the restapi.authentication user it belongs to")
    return problems


def asker(
    params: Mapping[str, Any], method: str = "GET", body: Mapping[str, Any] | None = None, as_text: bool = False
) -> Callable[[str], Any]:
    """A request with the module's API options, waiting for a URL."""

    def ask(url: str) -> Any:  # noqa: ANN401 - JSON
        return request(
            url,
            method=method,
            body=body,
            as_text=as_text,
            user=params["user"],
            password=params["password"],
            timeout=params["timeout"],
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
        )

    return ask


def bases(params: Mapping[str, Any]) -> list[str]:
    """The endpoints as base URLs, in the order given, each once."""
    return list(dict.fromkeys(base_url(e, params["port"]) for e in params["endpoints"]))


def explain(exc: PatroniError) -> str:
    """An error with what it means for Patroni, when the status says."""
    if isinstance(exc, PatroniHTTPError):
        hints = {**HINTS, **CONFIG_HINTS} if exc.url.endswith("/config") else HINTS
        if exc.status in hints:
            return f"{exc}: {hints[exc.status]}"
    return str(exc)
