# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Filters that check PostgreSQL HA's inventory before anything changes: the etcd members Patroni keeps
its leader lock in, Patroni's timing, and the connections every client may open against
max_connections. Each problem is one sentence that names the variable and the fix."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# Patroni's defaults (patroni/config.py) and the lowest ttl it accepts: 3.2 and later raise a lower
# one to 20 with a warning; 3.0.2 takes it as given.
PATRONI_DEFAULTS = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}
# The variables the timing messages name, unless the caller names its own.
TIMING_NAMES = {"ttl": "patroni_ttl", "loop_wait": "patroni_loop_wait", "retry_timeout": "patroni_retry_timeout"}
PATRONI_MIN_TTL = 20
CLIENT_KEYS = ("hosts", "processes_per_host", "connections_per_process")


def etcd_member_problems(members: Iterable[str] | None, where: str = "the etcd group") -> list[str]:
    """What is wrong with the etcd members (plugins/filter/etcd_member_problems.yml documents it)."""
    if isinstance(members, (str, Mapping)):
        raise AnsibleFilterError(f"etcd_member_problems: expects a list of host names (got {members!r:.80})")
    names = [str(m).strip() for m in members or []]
    # A sentence starts with the words, capitalised, or with the variable's name as it is.
    subject = where[:1].upper() + where[1:] if where.startswith("the ") else where
    problems = []
    if any(not n for n in names):
        problems.append(f"{subject} lists an empty host name: remove it from {where}.")
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if twice:
        problems.append(f"{subject} lists {', '.join(twice)} more than once: list each host once.")
    count = len({n for n in names if n})
    if count == 0:
        problems.append(
            "No etcd members are set: Patroni keeps its leader lock in etcd; put three or more hosts (an odd "
            f"number) in {where}."
        )
    elif count < 3:
        problems.append(
            f"{subject} has {count} host{'s' if count > 1 else ''}, fewer than three: etcd needs a majority of its "
            "members to answer, so it cannot lose a single one and Patroni then demotes the primary; put three or "
            f"more hosts (an odd number) in {where}."
        )
    elif count % 2 == 0:
        problems.append(
            f"{subject} has {count} hosts, an even number: it survives losing {count // 2 - 1} of them, no more "
            f"than {count - 1} hosts would, and needs {count // 2 + 1} to answer instead of {count // 2}; put "
            f"{count - 1} or {count + 1} hosts in {where}."
        )
    return problems


def _seconds(name: str, value: Any, default: int) -> tuple[int | None, str]:  # noqa: ANN401 - any inventory value
    """A whole number of seconds, or None and the message saying what is wrong."""
    whole = (
        (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer())
        or (isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value) is not None)
    )
    number = int(value) if whole else None
    if number is None:
        return None, f"{name} must be a whole number of seconds (got {value!r}); Patroni's default is {default}."
    if number <= 0:
        return None, (
            f"{name} is {number}: it must be 1 second or more; set it to a positive number (Patroni's default "
            f"is {default})."
        )
    return number, ""


def patroni_timing_problems(
    ttl: Any,  # noqa: ANN401 - any inventory value
    loop_wait: Any,  # noqa: ANN401
    retry_timeout: Any,  # noqa: ANN401
    names: Mapping[str, str] | None = None,
) -> list[str]:
    """What is wrong with Patroni's timing (plugins/filter/patroni_timing_problems.yml documents it)."""
    if names is not None and not isinstance(names, Mapping):
        raise AnsibleFilterError(f"patroni_timing_problems: names must be a dict (got {names!r:.80})")
    var = {**TIMING_NAMES, **(names or {})}
    values: dict[str, int] = {}
    problems = []
    for key, value in (("ttl", ttl), ("loop_wait", loop_wait), ("retry_timeout", retry_timeout)):
        number, problem = _seconds(var[key], value, PATRONI_DEFAULTS[key])
        if number is None:
            problems.append(problem)
        else:
            values[key] = number
    ttl_s = values.get("ttl")
    if ttl_s is not None and ttl_s < PATRONI_MIN_TTL:
        problems.append(
            f"{var['ttl']} is {ttl_s}: Patroni's minimum is {PATRONI_MIN_TTL} seconds (Patroni 3.2 and later raise "
            f"a lower value to {PATRONI_MIN_TTL} themselves); set {var['ttl']} to {PATRONI_MIN_TTL} or more "
            f"(default {PATRONI_DEFAULTS['ttl']})."
        )
    if len(values) == 3:
        loop, retry, lock = values["loop_wait"], values["retry_timeout"], values["ttl"]
        if loop + 2 * retry > lock:
            problems.append(
                f"{var['loop_wait']} + 2 x {var['retry_timeout']} = {loop} + 2 x {retry} = {loop + 2 * retry} s is "
                f"more than {var['ttl']} ({lock} s): the leader lock can expire while the primary still retries "
                f"etcd, and it demotes itself; raise {var['ttl']} to {loop + 2 * retry} or more, or lower "
                f"{var['loop_wait']} or {var['retry_timeout']}."
            )
    return problems


def _count(client: Mapping[str, Any], key: str) -> int:
    value = client.get(key)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AnsibleFilterError(
            f"connection_budget: {key} of client {client.get('name')!r} must be a whole number, 0 or more "
            f"(got {value!r})"
        )
    return value


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}es" if word.endswith("s") else f"{count} {word}s"


def connection_budget(
    clients: Iterable[Mapping[str, Any]],
    max_connections: Any,  # noqa: ANN401 - a number, or its text from the inventory
    reserved: Any,  # noqa: ANN401
) -> dict[str, Any]:
    """Whether the clients' connections fit in max_connections (plugins/filter/connection_budget.yml
    documents it)."""
    if isinstance(clients, (str, Mapping)):
        raise AnsibleFilterError(f"connection_budget: clients must be a list of dicts (got {clients!r:.80})")
    limits = {}
    for name, value in (("max_connections", max_connections), ("reserved", reserved)):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise AnsibleFilterError(f"connection_budget: {name} must be a whole number, 0 or more (got {value!r})")
        limits[name] = value
    parts, totals = [], []
    for client in clients or []:
        if not isinstance(client, Mapping) or not str(client.get("name") or "").strip():
            raise AnsibleFilterError(f"connection_budget: each client must be a dict with a name (got {client!r:.80})")
        hosts, processes, connections = (_count(client, key) for key in CLIENT_KEYS)
        total = hosts * processes * connections
        totals.append((total, str(client["name"])))
        parts.append(
            f"{client['name']}: {_plural(hosts, 'host')} x {_plural(processes, 'process')} x "
            f"{_plural(connections, 'connection')} = {total}"
        )
    needed = sum(total for total, _name in totals)
    maximum, kept = limits["max_connections"], limits["reserved"]
    available = maximum - kept
    fits = needed <= available
    budget = f"postgresql_max_connections {maximum} minus {kept} reserved"
    if fits:
        message = (
            f"The clients need {needed} connections and {available} are available ({budget}): they fit, "
            f"{available - needed} to spare."
        )
    else:
        largest = ", ".join(f"{name} {total}" for total, name in sorted(totals, key=lambda t: -t[0])[:2])
        message = (
            f"The clients need {needed} connections but only {available} are available ({budget}): raise "
            f"postgresql_max_connections to {needed + kept} or more, or lower the pool size or the workers of "
            f"the largest clients ({largest})."
        )
    return {"needed": needed, "available": available, "fits": fits, "parts": parts, "message": message}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "etcd_member_problems": etcd_member_problems,
            "patroni_timing_problems": patroni_timing_problems,
            "connection_budget": connection_budget,
        }
