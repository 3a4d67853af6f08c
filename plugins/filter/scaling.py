# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""retire_plan: what taking hosts out of service means, host by host, and what must refuse it.

A host an operator moved into the inventory group ``retired`` is taken out of service by
playbooks/retire.yml (site.yml imports it): the load balancers stop sending to it, it drains, then its
units are stopped and disabled in an order that keeps every tier whole, and the peers forget it
(PostgreSQL's replication slot, the Sentinels' replica and Sentinel lists, the client rules of
pg_hba). This filter decides that plan from what each retired host runs now; the playbook only carries
it out. It refuses what would take a tier's authority away instead of retiring a member: the Patroni
leader (switch over first), the Redis master (fail over first), an etcd member (a consensus change is
its own operation) and a keepalived load balancer; and any host that is still in another group.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

# Stop order: the serving path first (after the drain), then the data tiers, then what watches them.
RETIRE_ORDER: tuple[tuple[str, str], ...] = (
    ("tutormax-api.service", "api"),
    ("tutormax-beat.service", "celery"),
    ("tutormax-worker@*.service", "celery"),
    ("patroni.service", "postgres"),
    ("patroni@*.service", "postgres"),
    ("pgbackrest.service", "postgres"),
    ("redis-server.service", "redis"),
    ("redis-sentinel.service", "sentinel"),
    ("pgbackrest-*.timer", "other"),
    ("tutormax-*.timer", "other"),
    ("prometheus-*exporter*.service", "other"),
    ("tutormax-*-exporter*.service", "other"),
    ("systemd-journal-upload.service", "other"),
)
# Units whose host must not be retired by this playbook, with what to do instead.
REFUSE_UNITS: Mapping[str, str] = {
    "etcd.service": "it is an etcd member; remove it from the etcd cluster first (etcdctl member remove)",
    "keepalived.service": "it holds or may take the floating address; take it out of the lb group with its peer",
}
ACTIVE_STATES = frozenset({"running", "active", "activating", "reloading"})
ENABLED = frozenset({"enabled", "enabled-runtime", "linked", "linked-runtime", "alias"})
KEEP_GROUPS = frozenset({"all", "ungrouped", "retired"})
KINDS = ("api", "celery", "postgres", "redis", "sentinel")


def timer_units(list_unit_files_stdout: str) -> dict[str, dict[str, str]]:
    """``systemctl list-unit-files --type=timer --no-legend --plain`` as service_facts-like entries."""
    units: dict[str, dict[str, str]] = {}
    for line in str(list_unit_files_stdout or "").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].endswith(".timer"):
            units[fields[0]] = {"name": fields[0], "state": "unknown", "status": fields[1]}
    return units


def _in_service(unit: Mapping[str, Any]) -> bool:
    return str(unit.get("state", "")) in ACTIVE_STATES or str(unit.get("status", "")) in ENABLED


def _stop_list(units: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], set[str]]:
    stop: list[str] = []
    kinds: set[str] = set()
    live = sorted(name for name, unit in units.items() if _in_service(unit))
    for pattern, kind in RETIRE_ORDER:
        for name in live:
            if name not in stop and fnmatch.fnmatchcase(name, pattern):
                stop.append(name)
                kinds.add(kind)
    return stop, kinds


def retire_plan(found: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Plan the retirement of the hosts of ``found``.

    ``found[host]`` holds ``services`` (``ansible_facts.services``), optionally ``timers`` (the output
    of ``systemctl list-unit-files --type=timer --no-legend --plain``), ``patroni_role`` (the member's
    role, empty when Patroni does not run there) and ``redis_role`` (``ROLE``'s first field, empty when
    no redis-server answers). Returns ``problems`` (nothing may change while there are any), ``hosts``
    (per host: ``stop``, the units to stop and disable in order, and a flag per tier) and, per tier,
    the hosts leaving it (``api``, ``celery``, ``postgres``, ``redis``, ``sentinel``).
    """
    problems: list[str] = []
    hosts: dict[str, dict[str, Any]] = {}
    for host in sorted(found):
        facts = found[host] or {}
        still_in = sorted(
            group for group, members in groups.items() if group not in KEEP_GROUPS and host in (members or [])
        )
        if still_in:
            problems.append(f"{host} is in retired and still in {', '.join(still_in)}: take it out of those groups")
        units: dict[str, Mapping[str, Any]] = dict(facts.get("services") or {})
        units.update(timer_units(str(facts.get("timers") or "")))
        for unit, why in REFUSE_UNITS.items():
            if unit in units and _in_service(units[unit]):
                problems.append(f"{host} runs {unit}: {why}")
        patroni_role = str(facts.get("patroni_role") or "")
        if patroni_role in ("leader", "master", "primary", "standby_leader"):
            problems.append(
                f"{host} is the Patroni {patroni_role}: switch over first (playbooks/pg_switchover.yml), then retire it"
            )
        if str(facts.get("redis_role") or "") == "master":
            problems.append(
                f"{host} is the Redis master: fail over first (SENTINEL FAILOVER tutormax-master), then retire it"
            )
        stop, kinds = _stop_list(units)
        hosts[host] = {"stop": stop, **{kind: kind in kinds for kind in KINDS}}
    plan: dict[str, Any] = {"problems": problems, "hosts": hosts}
    for kind in KINDS:
        plan[kind] = [host for host, entry in hosts.items() if entry[kind]]
    return plan


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"retire_plan": retire_plan}
