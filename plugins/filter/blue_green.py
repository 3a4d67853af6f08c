# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Blue-green deployments of the API (playbooks/blue_green.yml): the plan and the switch's gate.

API hosts have a colour (the host variable ``tutormax_api_colour``). The load balancers serve the live
colour; the idle one is reachable only on their preview listener (127.0.0.1). The live colour is what
the load balancers' upstream files record (tutormax.cluster.nginx_pool_info), not the inventory: after
a switch the running configuration is the truth, as the running Patroni leader is for PostgreSQL.

- ``blue_green_plan``: from the colours, every load balancer's recorded colours and the release each
  API host runs, what an action (deploy, switch, decommission) does and what must refuse it.
- ``blue_green_gate``: from every load balancer's smoke test of the colour to switch to
  (tutormax.cluster.blue_green_smoke), whether the switch may go ahead, and a message that names each
  failing host.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.tutormax.cluster.plugins.module_utils import nginx
from ansible_collections.tutormax.cluster.plugins.module_utils.release import VERSION_RE

ACTIONS = ("deploy", "switch", "decommission")
MIN_HEALTHY_RE = re.compile(r"^([1-9][0-9]*|([1-9][0-9]?|100)%)$")


def min_healthy_count(value: object, hosts: int) -> int | None:
    """``value`` (a number, or a percentage of ``hosts`` rounded up) as a count; None when malformed."""
    text = str(value).strip()
    if not MIN_HEALTHY_RE.match(text):
        return None
    if text.endswith("%"):
        return max(1, math.ceil(hosts * int(text[:-1]) / 100))
    return int(text)


def blue_green_plan(
    colours: Mapping[str, Any],
    pools: Mapping[str, Mapping[str, Any]],
    action: str,
    running: Mapping[str, str] | None = None,
    version: str = "",
    to: str = "",
    min_healthy: object = "100%",
    celery: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The plan (plugins/filter/blue_green_plan.yml documents it)."""
    running = {str(k): str(v or "") for k, v in (running or {}).items()}
    hosts = {str(h): str(c or "") for h, c in colours.items()}
    found: list[str] = []
    if action not in ACTIONS:
        found.append(f"blue_green_action must be one of {', '.join(ACTIONS)} (got {action!r})")
    painted = [{"name": h, "colour": c} for h, c in hosts.items()]
    found += nginx.colour_problems(painted, "tutormax_api_colour")
    by_colour = {c: sorted(h for h, x in hosts.items() if x == c) for c in nginx.COLOURS}
    missing = [c for c in nginx.COLOURS if not by_colour[c]]
    if missing and not found:
        found.append(
            "blue-green needs API hosts of both colours (tutormax_api_colour: blue on some, green on the others); "
            f"none is {' or '.join(missing)}"
        )
    shared = sorted(h for h in hosts if hosts[h] and h in (celery or {}))
    if shared:
        found.append(
            f"these API hosts with a colour also run Celery: {', '.join(shared)}. A host's processes share one "
            "release, so a colour's hosts must run only the API: move their workers to other hosts"
        )
    if to and to not in nginx.COLOURS:
        found.append(f"blue_green_to must be blue or green (got {to!r})")

    recorded = {lb: str((p or {}).get("live") or "") for lb, p in pools.items()}
    lives = sorted({c for c in recorded.values() if c})
    if len(lives) > 1 and not (action == "switch" and to):
        found.append(
            "the load balancers serve different colours ("
            + ", ".join(f"{lb}: {c or 'none'}" for lb, c in sorted(recorded.items()))
            + "): a switch stopped half-way. Finish it with -e blue_green_action=switch -e blue_green_to=<colour>"
        )
    live = lives[0] if len(lives) == 1 else ("blue" if not lives else "")
    if action == "switch" and to:
        live = live or ("green" if to == "blue" else "blue")
    idle = next((c for c in nginx.COLOURS if c != live), "") if live else ""
    decommissioned = sorted(
        lb for lb, p in pools.items() if (p or {}).get("decommissioned") and str((p or {}).get("idle") or "") == idle
    )
    target = (to or idle) if action == "switch" else live

    version = str(version or "").strip()
    if action == "deploy" and not VERSION_RE.match(version):
        found.append(f"give the release to deploy to the idle colour: -e tutormax_version=X.Y.Z (got {version!r})")
    target_hosts = by_colour.get(target, []) if target else []
    releases = sorted({running.get(h, "") for h in target_hosts})
    if action == "switch" and target and target != live:
        if decommissioned:
            found.append(
                f"the idle colour {idle} is decommissioned (on {', '.join(decommissioned)}): deploy to it first "
                f"(-e blue_green_action=deploy -e tutormax_version=X.Y.Z)"
            )
        elif len(releases) != 1 or not releases[0]:
            found.append(
                f"the {target} hosts do not all run one release ("
                + ", ".join(f"{h}: {running.get(h) or 'none'}" for h in target_hosts)
                + "): deploy to them first (-e blue_green_action=deploy -e tutormax_version=X.Y.Z)"
            )
    if action == "deploy":
        target_hosts = by_colour.get(idle, [])
    if action == "switch":
        version = releases[0] if len(releases) == 1 else ""
    needed = min_healthy_count(min_healthy, len(target_hosts))
    if needed is None:
        found.append(f"blue_green_min_healthy must be a number or a percentage such as 100% (got {min_healthy!r})")
    elif target_hosts and needed > len(target_hosts):
        found.append(
            f"blue_green_min_healthy asks for {needed} healthy hosts, but the {target if action == 'switch' else idle}"
            f" colour has {len(target_hosts)}"
        )
    live_releases = sorted({running.get(h, "") for h in by_colour.get(live, [])} - {""}) if live else []
    live_release = live_releases[0] if len(live_releases) == 1 else ""
    return {
        "action": action,
        "problems": found,
        "live": live,
        "idle": idle,
        "live_hosts": by_colour.get(live, []) if live else [],
        "idle_hosts": by_colour.get(idle, []) if idle else [],
        "recorded": recorded,
        "first": not lives,
        "decommissioned": bool(decommissioned),
        # switch: the colour that goes live and its release; deploy: the idle colour and the asked release.
        "target": target if action == "switch" else idle,
        "target_hosts": target_hosts,
        "version": version,
        "live_release": live_release,
        # decommission: the Celery hosts that do not run the live colour's release yet.
        "celery_todo": sorted(h for h, v in (celery or {}).items() if live_release and str(v or "") != live_release)
        if action == "decommission"
        else [],
        "noop": action == "switch" and bool(target) and target == live and len(lives) == 1,
        "min_healthy": needed or 0,
        # API hosts with a colour that are Celery hosts too (refused: see problems).
        "celery_colours": shared,
    }


def blue_green_gate(reports: Mapping[str, Mapping[str, Any]], plan: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the switch may go ahead (plugins/filter/blue_green_gate.yml documents it)."""
    hosts = list(plan.get("target_hosts") or [])
    version = str(plan.get("version") or "")
    failing: dict[str, list[str]] = {h: [] for h in hosts}
    paths: list[str] = []
    if not reports:
        paths.append("no load balancer ran the smoke test")
    for lb, report in sorted(reports.items()):
        instances = (report or {}).get("instances") or {}
        for host in hosts:
            seen = instances.get(host) or {}
            if not seen.get("seen"):
                failing[host].append(f"no answer through {lb}'s preview listener")
            elif not seen.get("healthy"):
                failing[host].append(
                    f"answered {lb} with status {seen.get('status')} and version {seen.get('version')}"
                    f" (expected 200 and {version})"
                )
        for path, status in sorted(((report or {}).get("paths") or {}).items()):
            if status != 200:
                paths.append(f"{path} answered {status} through {lb}'s preview listener")
    healthy = [h for h in hosts if not failing[h]]
    bad = {h: reasons for h, reasons in failing.items() if reasons}
    needed = int(plan.get("min_healthy") or len(hosts))
    ok = bool(hosts) and len(healthy) >= needed and not paths
    lines = [f"{h}: {'; '.join(r)}" for h, r in bad.items()] + paths
    msg = (
        f"The {plan.get('target')} colour passed its smoke test on {len(reports)} load balancer(s): "
        f"{len(healthy)} of {len(hosts)} hosts healthy with {version}"
        if ok
        else f"The {plan.get('target')} colour failed its smoke test ({len(healthy)} of {len(hosts)} hosts healthy "
        f"with {version}, {needed} needed): " + " | ".join(lines)
    )
    return {"ok": ok, "healthy": healthy, "failing": bad, "paths": paths, "msg": msg}


def blue_green_pools(results: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Load balancer -> the colours its upstream file records, from hostvars of the lb hosts (each with
    inventory_hostname and nginx_lb_colours, set by the nginx_lb role's pool_info.yml)."""
    found = [r for r in results if "inventory_hostname" in r]
    return {str(r["inventory_hostname"]): dict(r.get("nginx_lb_colours") or {}) for r in found}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "blue_green_plan": blue_green_plan,
            "blue_green_gate": blue_green_gate,
            "blue_green_pools": blue_green_pools,
        }
