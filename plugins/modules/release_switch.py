#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""release_switch: switch a TutorMax host to an installed release, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: release_switch
short_description: Switch a TutorMax host to an installed release, restart its services and gate on health
description:
  - The one implementation of a release switch on a host, in one call. In order, each step only when asked for
    and needed
  - 1. O(drain) waits until no connection from the load balancers' addresses reaches the API port (the requests
    they had in flight to a drained host have finished); at most O(drain.timeout) seconds, then it goes on.
  - 2. Each file staged in O(staged_dir) (named by the filter C(tutormax.cluster.staged_name) after the live path it
    replaces) that differs from its live path (content, owner or mode) replaces it atomically, keeping the owner
    and mode it was staged with; the staged copy is gone afterwards. systemd reloads its units when one under
    C(/etc/systemd/) changed.
  - 3. C(<root>/current) points at C(<root>/releases/<version>), replaced atomically, link and release owned by
    C(root:<group>).
  - 4. The O(units) restart (O(restart)).
  - 5. O(health) asks the local C(/health) until it answers 200 with O(version) and O(health.instance).
  - site.yml's app_release role moves the link with it, and C(rolling_update.yml) switches each host inside its
    drain with it.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  root:
    description: Root of the releases on the host.
    type: path
    default: /opt/tutormax
  version:
    description: Release to switch to; it must be installed (C(<root>/releases/<version>/.installed)).
    type: str
    required: true
  group:
    description: Group of the C(current) link and the release directory (owner root).
    type: str
    default: tutormax
  staged_dir:
    description: Directory the configuration of the release was staged in; empty when nothing is staged.
    type: path
    default: ""
  hidden_files:
    description: Live paths whose content a diff must not show (they hold secrets).
    type: list
    elements: str
    default: []
  units:
    description: systemd units to restart on the release.
    type: list
    elements: str
    default: []
  restart:
    description:
      - V(changed) restarts the O(units) when a file or the link changed, or when a unit is not active or its main
        process runs another release than O(version); V(always) restarts them anyway; V(never) does not.
    type: str
    choices: [changed, always, never]
    default: changed
  drain:
    description: Wait for the load balancers' requests in flight before anything changes.
    type: dict
    suboptions:
      port:
        description: Local port the load balancers connect to.
        type: int
        required: true
      peers:
        description: Addresses of the load balancers.
        type: list
        elements: str
        required: true
      timeout:
        description: Most seconds to wait; the switch goes on afterwards (WebSockets stay until the restart).
        type: float
        default: 30
  health:
    description: The health gate after the restart.
    type: dict
    suboptions:
      port:
        description: Port of the local API instance.
        type: int
        required: true
      instance:
        description: Instance id C(/health) must answer with.
        type: str
        required: true
      retries:
        description: Times C(/health) is asked.
        type: int
        default: 30
      delay:
        description: Seconds between two asks.
        type: float
        default: 1
  keep:
    description:
      - After the switch, remove the releases beyond this many (O(version) and the newest others stay) and the
        dependency layers under C(<root>/deps) that no kept release links to; 0 removes nothing.
    type: int
    default: 0
  journal_lines:
    description: Lines of each unit's journal returned when the restart or the health gate fails.
    type: int
    default: 12
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - In check mode nothing waits, moves, restarts or is removed; the result says what would change. A release that
    is not installed yet (an install that check mode only announced) counts as a change, not a failure.
"""

EXAMPLES = r"""
- name: Switch inside the host's drain, restart and gate
  tutormax.cluster.release_switch:
    version: 1.0.1
    staged_dir: /etc/tutormax/staged
    hidden_files: [/etc/tutormax/tutormax.env]
    units: [tutormax-api.service]
    restart: always
    drain: {port: 8000, peers: [10.0.0.2], timeout: 30}
    health: {port: 8000, instance: api1, retries: 30, delay: 1}

- name: Only point current at the release (the services restart in handlers)
  tutormax.cluster.release_switch:
    version: 1.0.1
    restart: never
"""

RETURN = r"""
moved:
  description: Whether C(current) moved (or its owner was set).
  returned: always
  type: bool
previous:
  description: The release C(current) pointed at before.
  returned: always
  type: str
changed_files:
  description: Live paths replaced by their staged file (would be, in check mode).
  returned: always
  type: list
  elements: str
restarted:
  description: Units restarted (would be, in check mode).
  returned: always
  type: list
  elements: str
idle:
  description: What the drain wait saw (connections at the start, remaining, seconds, timed out).
  returned: when O(drain) is given and not in check mode
  type: dict
health:
  description: The health gate's last answer and how many asks it took.
  returned: when O(health) is given and not in check mode
  type: dict
units:
  description: Per unit after the switch, its ActiveState, main PID and the release its main process runs.
  returned: always
  type: dict
pruned:
  description: Release directories and dependency layers removed (would be, in check mode).
  returned: always
  type: dict
  sample: {"releases": ["/opt/tutormax/releases/0.9.0"], "layers": []}
journal:
  description: Last journal lines of the units, when the restart or the health gate failed.
  returned: on failure
  type: list
  elements: str
seconds:
  description: Seconds from the first change to the end of the health gate (the time out of service).
  returned: always
  type: float
"""

import grp
import time
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import release


def _journal(module: AnsibleModule, units: list[str], lines: int) -> list[str]:
    journalctl = module.get_bin_path("journalctl")
    if not journalctl or lines <= 0:
        return []
    argv = [journalctl, f"--lines={lines}", "--no-pager", "--output=cat"] + [f"--unit={u}" for u in units]
    rc, out, _err = module.run_command(argv)
    return out.splitlines() if rc == 0 else []


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "default": "/opt/tutormax"},
            "version": {"type": "str", "required": True},
            "group": {"type": "str", "default": "tutormax"},
            "staged_dir": {"type": "path", "default": ""},
            "hidden_files": {"type": "list", "elements": "str", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
            "restart": {"type": "str", "choices": ["changed", "always", "never"], "default": "changed"},
            "drain": {
                "type": "dict",
                "options": {
                    "port": {"type": "int", "required": True},
                    "peers": {"type": "list", "elements": "str", "required": True},
                    "timeout": {"type": "float", "default": 30.0},
                },
            },
            "health": {
                "type": "dict",
                "options": {
                    "port": {"type": "int", "required": True},
                    "instance": {"type": "str", "required": True},
                    "retries": {"type": "int", "default": 30},
                    "delay": {"type": "float", "default": 1.0},
                },
            },
            "keep": {"type": "int", "default": 0},
            "journal_lines": {"type": "int", "default": 12},
        },
        supports_check_mode=True,
    )
    p = module.params
    root, version = p["root"], p["version"]
    if not release.VERSION_RE.match(version):
        module.fail_json(msg=f"version must look like 1.0.1 (got {version!r})")
    if p["health"] and p["health"]["retries"] < 1:
        module.fail_json(msg=f"health.retries must be 1 or more (got {p['health']['retries']})")
    if p["drain"] and p["drain"]["timeout"] < 0:
        module.fail_json(msg=f"drain.timeout must be 0 or more (got {p['drain']['timeout']})")
    if p["keep"] < 0 or p["keep"] == 1:
        module.fail_json(
            msg=f"keep must be 0 (remove nothing) or 2 or more, so a rollback has a release (got {p['keep']})"
        )
    if not Path(root, "releases", version, ".installed").exists():
        if module.check_mode:
            module.exit_json(
                changed=True,
                previous=release.current(root),
                moved=True,
                changed_files=[],
                restarted=[],
                units={},
                pruned={"releases": [], "layers": []},
                seconds=0.0,
                msg=f"release {version} is not installed yet: it would be, then switched to",
            )
        module.fail_json(msg=f"release {version} is not installed in {root}/releases (install it first)")
    try:
        gid: int | None = grp.getgrnam(p["group"]).gr_gid
    except KeyError:
        if not module.check_mode:
            module.fail_json(msg=f"group {p['group']!r} does not exist on the host")
        gid = None
    systemctl = module.get_bin_path("systemctl", required=bool(p["units"])) or "systemctl"

    staged = Path(p["staged_dir"]) if p["staged_dir"] else Path()
    previous = release.current(root)
    pending = release.staged_changes(staged) if p["staged_dir"] else []
    link = release.link_state(root, version, gid)
    before_units = release.running(root, p["units"], systemctl=systemctl)
    lagging = [u for u, s in before_units.items() if s["active"] != "active" or s["releases"] != [version]]
    will_change = bool(pending) or not link["points"] or not link["owner_ok"]
    if p["restart"] == "always" or (p["restart"] == "changed" and (will_change or lagging)):
        to_restart = list(p["units"])
    else:
        to_restart = []

    pruned = release.prune(root, version, p["keep"], check=True) if p["keep"] else {"releases": [], "layers": []}
    result: dict[str, Any] = {
        "changed": will_change or bool(to_restart) or bool(pruned["releases"] or pruned["layers"]),
        "pruned": pruned,
        "previous": previous,
        "moved": not link["points"] or not link["owner_ok"],
        "changed_files": [c["live"] for c in pending],
        "restarted": to_restart,
        "units": before_units,
        "seconds": 0.0,
    }
    if module._diff:
        diffs = release.staged_diffs(staged, pending, p["hidden_files"])
        if not link["points"]:
            diffs.append(
                {
                    "before": f"{root}/current -> {link['target'] or '(none)'}\n",
                    "after": f"{root}/current -> {root}/releases/{version}\n",
                    "before_header": f"{root}/current",
                    "after_header": f"{root}/current",
                }
            )
        if to_restart:
            diffs.append({"before": "", "after": "".join(f"restart {u}\n" for u in to_restart)})
        removed = pruned["releases"] + pruned["layers"]
        if removed:
            diffs.append({"before": "".join(f"{path}\n" for path in removed), "after": ""})
        result["diff"] = diffs
    if module.check_mode:
        module.exit_json(**result)

    if p["drain"]:
        d = p["drain"]
        result["idle"] = release.wait_idle(d["port"], set(d["peers"]), d["timeout"])

    start = time.monotonic()
    try:
        result["changed_files"] = release.apply_staged(staged) if p["staged_dir"] else []
        if any("/systemd/system/" in path for path in result["changed_files"]):
            module.run_command([systemctl, "daemon-reload"], check_rc=True)
        result["moved"] = release.point_current(root, version, gid)
    except OSError as exc:
        module.fail_json(msg=f"switching to {version} failed: {exc}", **result)
    for unit in to_restart:
        rc, _out, err = module.run_command([systemctl, "restart", unit])
        if rc != 0:
            result["journal"] = _journal(module, to_restart, p["journal_lines"])
            result["seconds"] = round(time.monotonic() - start, 2)
            module.fail_json(msg=f"systemctl restart {unit} failed: {err.strip()}", **result)
    result["units"] = release.running(root, p["units"], systemctl=systemctl)
    result["changed"] = bool(result["changed_files"]) or result["moved"] or bool(to_restart)

    if p["health"]:
        h = p["health"]
        passed, asks, answer = release.health_gate(h["port"], version, h["instance"], h["retries"], h["delay"])
        result["health"] = {"passed": passed, "asks": asks, "answer": answer}
        result["seconds"] = round(time.monotonic() - start, 2)
        if not passed:
            result["journal"] = _journal(module, to_restart or p["units"], p["journal_lines"])
            module.fail_json(
                msg=(
                    f"health gate: /health on {h['instance']} did not answer 200 with version {version} in "
                    f"{h['retries']} asks {h['delay']:g} s apart (last answer: {answer})"
                ),
                **result,
            )
    if p["keep"]:
        try:
            result["pruned"] = release.prune(root, version, p["keep"])
        except OSError as exc:
            module.fail_json(msg=f"removing the releases beyond keep={p['keep']} failed: {exc}", **result)
        result["changed"] = result["changed"] or bool(result["pruned"]["releases"] or result["pruned"]["layers"])
    result["seconds"] = round(time.monotonic() - start, 2)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
