#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""release_info: what a TutorMax host runs, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: release_info
short_description: Which TutorMax releases a host has, which one is live, and which one each service runs
description:
  - Reads, in one call, the releases installed under O(root) (each a virtualenv in C(releases/<version>/) with a
    C(.installed) marker), the release the C(current) link points at, the release the main process of each unit
    in O(units) runs (the interpreter its command line starts with, C(<root>/releases/<version>/bin/python)),
    and optionally the local API instance's C(/health).
  - Changes nothing. The plan of C(rolling_update.yml), the post-check, and the api and celery roles' check for
    services that still run another release than the live one all use it.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  root:
    description: Root of the releases on the host.
    type: path
    default: /opt/tutormax
  version:
    description: A release to report on (RV(version_installed)); empty for none.
    type: str
    default: ""
  units:
    description: systemd units whose main process is examined (for example C(tutormax-api.service)).
    type: list
    elements: str
    default: []
  env_file:
    description:
      - The environment file the O(units) read when they start; a unit whose main process runs with another value of
        one of its variables (C(/proc/PID/environ), readable by root) is in RV(stale) too. Empty for none.
    type: path
    default: ""
  health_port:
    description: Port of the local API instance whose C(/health) is asked on 127.0.0.1; 0 asks nothing.
    type: int
    default: 0
  health_timeout:
    description: Seconds to wait for the C(/health) answer.
    type: float
    default: 5
  health_gate:
    description:
      - Wait until C(/health) on O(health_port) answers 200 with this version and instance id, and fail when it does
        not within O(health_gate.retries) asks (the health gate the api role and M(tutormax.cluster.release_switch)
        share). Skipped in check mode.
    type: dict
    suboptions:
      version:
        description: Version C(/health) must answer with.
        type: str
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
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Supports check mode (it only reads).
"""

EXAMPLES = r"""
- name: Read what the host runs
  tutormax.cluster.release_info:
    version: 1.0.1
    units: [tutormax-api.service]
    health_port: 8000
  register: running

- name: Restart what runs another release than the live one
  ansible.builtin.debug:
    msg: "{{ running.stale }}"
"""

RETURN = r"""
current:
  description: The release C(current) points at; empty when there is no link.
  returned: always
  type: str
  sample: 1.0.0
installed:
  description: Releases installed completely, oldest first.
  returned: always
  type: list
  elements: str
  sample: [1.0.0, 1.0.1]
version_installed:
  description: Whether O(version) is installed (false when O(version) is empty).
  returned: always
  type: bool
units:
  description: Per unit, its ActiveState, main PID and the release its main process runs (empty when not one).
  returned: always
  type: dict
  sample: {"tutormax-api.service": {"active": "active", "pid": 812, "releases": ["1.0.0"]}}
stale:
  description:
    - Units whose main process runs another release than RV(current), or another value of a variable of
      O(env_file) (only names leave the host, never values).
  returned: always
  type: list
  elements: str
health:
  description: HTTP status, version and instance id of the local C(/health); null when O(health_port) is 0.
  returned: always
  type: dict
  sample: {"status": 200, "version": "1.0.0", "instance_id": "api1"}
health_asks:
  description: How many asks the health gate took.
  returned: when O(health_gate) is given and not in check mode
  type: int
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import release


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "default": "/opt/tutormax"},
            "version": {"type": "str", "default": ""},
            "units": {"type": "list", "elements": "str", "default": []},
            "env_file": {"type": "path", "default": ""},
            "health_port": {"type": "int", "default": 0},
            "health_timeout": {"type": "float", "default": 5.0},
            "health_gate": {
                "type": "dict",
                "options": {
                    "version": {"type": "str", "required": True},
                    "instance": {"type": "str", "required": True},
                    "retries": {"type": "int", "default": 30},
                    "delay": {"type": "float", "default": 1.0},
                },
            },
        },
        supports_check_mode=True,
    )
    p = module.params
    if not 0 <= p["health_port"] < 65536:
        module.fail_json(msg=f"health_port must be a port number or 0 (got {p['health_port']})")
    if p["version"] and not release.VERSION_RE.match(p["version"]):
        module.fail_json(msg=f"version must look like 1.0.1 (got {p['version']!r})")
    gate = p["health_gate"]
    if gate and not p["health_port"]:
        module.fail_json(msg="health_gate needs health_port (the port of the local API instance)")
    if gate and gate["retries"] < 1:
        module.fail_json(msg=f"health_gate.retries must be 1 or more (got {gate['retries']})")
    systemctl = module.get_bin_path("systemctl", required=bool(p["units"])) or "systemctl"
    live = release.current(p["root"])
    installed = release.installed(p["root"])
    units = release.running(p["root"], p["units"], systemctl=systemctl)
    result: dict[str, Any] = {
        "changed": False,
        "current": live,
        "installed": installed,
        "version_installed": bool(p["version"]) and p["version"] in installed,
        "units": units,
        "stale": release.stale_units(units, live, release.read_env_file(p["env_file"]) if p["env_file"] else None),
        "health": None,
    }
    if p["health_port"] and not (gate and not module.check_mode):
        result["health"] = release.health(p["health_port"], timeout=p["health_timeout"])
    if gate and not module.check_mode:
        passed, asks, answer = release.health_gate(
            p["health_port"],
            gate["version"],
            gate["instance"],
            gate["retries"],
            gate["delay"],
            ask=lambda port: release.health(port, timeout=p["health_timeout"]),
        )
        result.update(health=answer, health_asks=asks)
        if not passed:
            module.fail_json(
                msg=(
                    f"health gate: /health on port {p['health_port']} did not answer 200 with version "
                    f"{gate['version']} and instance {gate['instance']} in {gate['retries']} asks "
                    f"{gate['delay']:g} s apart (last answer: {answer})"
                ),
                **result,
            )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
