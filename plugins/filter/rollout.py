# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Filters that decide a rolling update and site.yml's rolling restarts: the release site.yml deploys,
the plans, the pool each drain writes, the post-check."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tutormax.cluster.plugins.module_utils.release import VERSION_RE, sort_versions, version_key


def _check(version: str, migrate: str, api: list[str], pools: list[Mapping[str, Any]]) -> None:
    if not VERSION_RE.match(str(version)):
        raise AnsibleFilterError(f"rollout_plan: version must look like 1.0.1 (got {version!r})")
    if str(migrate).lower() not in ("auto", "true", "false"):
        raise AnsibleFilterError(f"rollout_plan: migrate must be auto, true or false (got {migrate!r})")
    if not api:
        raise AnsibleFilterError("rollout_plan: api is empty (the api group has no hosts)")
    for pool in pools:
        if not isinstance(pool, Mapping) or "in_service" not in pool:
            raise AnsibleFilterError(f"rollout_plan: each of pools needs in_service (got {pool!r})")


def _api_needs_update(host: str, state: Mapping[str, Any], version: str) -> bool:
    health = state.get("health") or {}
    healthy = health.get("status") == 200 and health.get("instance_id") == host
    return state.get("current") != version or health.get("version") != version or not healthy


def _celery_needs_update(state: Mapping[str, Any], version: str) -> bool:
    units = list((state.get("units") or {}).values())
    return (
        state.get("current") != version
        or not units
        or any(u.get("active") != "active" for u in units)
        or any(u.get("releases") != [version] for u in units)
    )


def rollout_plan(
    states: Mapping[str, Mapping[str, Any]],
    version: str,
    api: list[str],
    pools: list[Mapping[str, Any]],
    celery: list[str] | None = None,
    beat: list[str] | None = None,
    postgres: list[str] | None = None,
    force: bool = False,
    migrate: str = "auto",
    check_mode: bool = False,
) -> dict[str, Any]:
    """The rollout plan (plugins/filter/rollout_plan.yml documents it)."""
    version, celery, beat, postgres = str(version), list(celery or []), list(beat or []), list(postgres or [])
    _check(version, migrate, api, pools)
    missing = [h for h in (*api, *celery) if h not in states]
    if missing:
        raise AnsibleFilterError(f"rollout_plan: no state read from {', '.join(missing)}")

    in_service = [h for h in api if all(h in p.get("in_service", []) for p in pools)]
    out_of_pool = [h for h in api if h not in in_service]
    api_current = {h: states[h].get("current") or "" for h in api}
    celery_current = {h: states[h].get("current") or "" for h in celery}
    api_todo = out_of_pool + [
        h for h in api if h not in out_of_pool and (force or _api_needs_update(h, states[h], version))
    ]
    celery_todo = [h for h in celery if force or _celery_needs_update(states[h], version)]
    celery_order = [h for h in celery if h not in beat] + [h for h in celery if h in beat]
    running = sorted({v for v in (*api_current.values(), *celery_current.values()) if v}, key=version_key)
    downgrade = any(version_key(v) > version_key(version) for v in running)
    stage = [h for h in dict.fromkeys(api_todo + celery_todo) if not states[h].get("version_installed")]
    new = [h for h in api if not api_current[h]]
    mode = str(migrate).lower()
    todo = bool(api_todo or celery_todo)
    do_migrate = todo and (mode == "true" or (mode == "auto" and not downgrade))
    others = [v for v in running if v != version]
    previous = sort_versions(others)[-1] if others else ""

    def hosts(selected: list[str]) -> list[str]:
        return [] if check_mode else selected

    deployed_todo = [h for h in api_todo + celery_todo if h not in new]
    return {
        "operation": f"Rolling update to {version}",
        "retry": (
            f"Or fix the cause and run the same command again: hosts already on {version} are skipped, "
            "the failed host goes first."
        ),
        "celery_restart": "always" if force else "changed",
        "staged": True,
        "version": version,
        "previous": previous,
        "in_service": in_service,
        "out_of_pool": out_of_pool,
        "api": api_todo,
        "api_current": api_current,
        "new": new,
        "celery": celery_order,
        "celery_todo": celery_todo,
        "celery_current": celery_current,
        "stage": stage,
        "migrate": do_migrate,
        "downgrade": downgrade,
        "running_versions": running,
        "now_running": [f"{h} {v or 'nothing'}" for h, v in {**api_current, **celery_current}.items()],
        "plays": {
            "new": hosts(new),
            "stage": hosts(stage),
            # Hosts switched by the one-call switch: the API hosts deployed before (a new host gets the
            # whole api role instead) and the Celery hosts to update.
            "config": hosts([h for h in api_todo if h not in new]),
            "celery_config": hosts(celery_todo),
            # On a host that ran the app before (a new API host has no environment file yet).
            "migrate": hosts(deployed_todo[:1] if do_migrate else []),
            "hba": hosts(postgres if new else []),
            "api": hosts(api_todo),
            "celery": hosts(celery_order if celery_todo else []),
        },
    }


def release_to_deploy(
    running: Mapping[str, str],
    asked: str = "",
    source: str = "",
    idle: Iterable[str] = (),
    decommissioned: bool = False,
) -> dict[str, Any]:
    """The release site.yml deploys (plugins/filter/release_to_deploy.yml documents it)."""
    idle = [str(h) for h in idle]
    kept = {h: str(v) for h, v in running.items() if h in idle and v}
    running = {h: v for h, v in running.items() if h not in idle}
    by_version: dict[str, list[str]] = {}
    for host, version in running.items():
        if version:
            by_version.setdefault(str(version), []).append(host)
    versions = sort_versions(by_version)
    asked = str(asked or "").strip()
    if asked and not VERSION_RE.match(asked):
        raise AnsibleFilterError(f"release_to_deploy: tutormax_version must look like 1.0.1 (got {asked!r})")
    if asked:
        version, origin = asked, "asked"
    elif len(versions) == 1:
        version, origin = versions[0], "running"
    elif not versions:
        version, origin = str(source), "source"
    else:
        version, origin = "", "mixed"
    summary = "; ".join(f"{v} on {', '.join(sorted(by_version[v]))}" for v in versions) or "nothing deployed"
    if idle:
        summary += "; idle colour: " + (
            "decommissioned" if decommissioned else ", ".join(f"{h} {kept.get(h) or 'nothing'}" for h in idle)
        )
    return {
        "version": version,
        "from": origin,
        "running": {v: sorted(by_version[v]) for v in versions},
        "mixed": len(versions) > 1,
        "new": sorted(h for h, v in running.items() if not v),
        "converge": f"ansible-playbook rolling_update.yml -e tutormax_version={versions[-1]}" if versions else "",
        "summary": summary,
        # Blue-green: the idle colour's hosts keep the release they run (blue_green.yml deploys to them);
        # decommissioned, site.yml leaves their API alone.
        "idle": idle,
        "hosts": kept,
        "decommissioned": sorted(idle) if decommissioned else [],
    }


def restart_plan(
    pending: Iterable[str],
    version: str,
    api: list[str],
    celery: list[str] | None = None,
    beat: list[str] | None = None,
    check_mode: bool = False,
) -> dict[str, Any]:
    """site.yml's rolling restart, in the shape of rollout_plan (plugins/filter/restart_plan.yml)."""
    todo, celery, beat = set(pending), list(celery or []), list(beat or [])
    api_todo = [h for h in api if h in todo]
    celery_todo = [h for h in celery if h in todo]
    celery_order = [h for h in celery_todo if h not in beat] + [h for h in celery_todo if h in beat]

    def hosts(selected: list[str]) -> list[str]:
        return [] if check_mode else selected

    return {
        "operation": "site.yml's rolling restart",
        "retry": "Fix the cause and run site.yml again: the restart starts with the failed host.",
        "celery_restart": "always",
        # Nothing staged: site.yml wrote the configuration in place (a stopped rollout's leftovers stay put).
        "staged": False,
        "version": str(version),
        "previous": str(version),
        "in_service": list(api),
        "out_of_pool": [],
        "api": api_todo,
        "api_current": dict.fromkeys(api_todo, str(version)),
        "new": [],
        "celery": celery_order,
        "celery_todo": celery_todo,
        "celery_current": dict.fromkeys(celery_todo, str(version)),
        "plays": {"api": hosts(api_todo), "celery": hosts(celery_order)},
    }


def rollout_pool_down(plan: Mapping[str, Any], done: Iterable[str], batch: Iterable[str] = ()) -> list[str]:
    """API hosts the pool written now leaves out: those out of the pool when the run began and this
    batch, minus every host already redeployed (so a host that failed its gate stays out)."""
    finished = set(done)
    pending = [h for h in plan.get("out_of_pool", []) if h not in finished]
    return sorted({*pending, *batch} - finished)


def rollout_versions(info: Mapping[str, Any], api_host: bool, host: str = "") -> list[dict[str, Any]]:
    """Post-check rows of one host from its release_info result: what each process runs."""
    rows: list[dict[str, Any]] = []
    if api_host:
        health = info.get("health") or {}
        version = health.get("version")
        rows.append({"host": host, "what": "tutormax-api (/health)", "versions": [version] if version else []})
    for unit, state in sorted((info.get("units") or {}).items()):
        releases = list(state.get("releases", [])) if state.get("active") == "active" else []
        rows.append({"host": host, "what": unit, "versions": releases})
    return rows


def rollout_report(rows: Iterable[Mapping[str, Any]], version: str) -> list[str]:
    """One line per row: OK or FAIL (not exactly ``version``), host, process, what it runs."""
    return [
        "%-4s %-18s %-28s %s"  # noqa: UP031 - a fixed-width table
        % (
            "OK" if list(r.get("versions", [])) == [str(version)] else "FAIL",
            r.get("host", ""),
            r.get("what", ""),
            ", ".join(r.get("versions", [])) or "not running",
        )
        for r in rows
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "release_to_deploy": release_to_deploy,
            "restart_plan": restart_plan,
            "rollout_plan": rollout_plan,
            "rollout_pool_down": rollout_pool_down,
            "rollout_versions": rollout_versions,
            "rollout_report": rollout_report,
        }
