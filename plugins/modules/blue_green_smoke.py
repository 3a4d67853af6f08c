#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""blue_green_smoke: the idle colour's smoke test through a load balancer's preview listener."""

from __future__ import annotations

DOCUMENTATION = r"""
module: blue_green_smoke
short_description: Smoke-test the idle colour of a blue-green TutorMax deployment through a load balancer
description:
  - Runs on a load balancer. Asks C(/health) through the preview listener (127.0.0.1:O(port), which serves only
    the idle colour; see M(tutormax.cluster.nginx_upstreams)) until each of O(instances) has answered 200 with
    O(version), at most O(tries) asks; then requests each of O(paths) once through the same listener.
  - >-
    Changes nothing and never fails on what it finds. It reports, and the filter
    C(tutormax.cluster.blue_green_gate) decides whether the switch may go ahead (every load balancer's report at
    once).
version_added: 0.3.0
author: TutorMax SRE team (@tutormax)
options:
  port:
    description: The preview listener's port on 127.0.0.1.
    type: int
    default: 8082
  instances:
    description: Instance ids (inventory names) of the idle colour's API hosts.
    type: list
    elements: str
    required: true
  version:
    description: The release each of them must run.
    type: str
    required: true
  tries:
    description: Most C(/health) asks.
    type: int
    default: 60
  delay:
    description: Seconds between two asks.
    type: float
    default: 0.05
  paths:
    description: Paths requested once each (GET) after the health asks; their statuses are returned.
    type: list
    elements: str
    default: [/api/health, "/api/tutors?limit=1"]
attributes:
  check_mode:
    description: It only reads, in check mode too.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
"""

EXAMPLES = r"""
- name: Smoke-test the idle colour through this load balancer
  tutormax.cluster.blue_green_smoke:
    instances: [api3, api4]
    version: 1.0.3
  register: smoke
"""

RETURN = r"""
instances:
  description: Per instance, whether it answered, whether its last answer was healthy, its status and version.
  returned: always
  type: dict
  sample: {"api3": {"seen": true, "healthy": true, "status": 200, "version": "1.0.3"}}
asks:
  description: C(/health) asks made.
  returned: always
  type: int
other_answers:
  description: Answers from anything else (other instance ids, C(status <code>), error names).
  returned: always
  type: list
  elements: str
paths:
  description: Each path's HTTP status (0 when nothing answered).
  returned: always
  type: dict
  sample: {"/api/health": 200, "/api/tutors?limit=1": 200}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import nginx


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "port": {"type": "int", "default": nginx.DEFAULT_PREVIEW_PORT},
            "instances": {"type": "list", "elements": "str", "required": True},
            "version": {"type": "str", "required": True},
            "tries": {"type": "int", "default": 60},
            "delay": {"type": "float", "default": 0.05},
            "paths": {"type": "list", "elements": "str", "default": ["/api/health", "/api/tutors?limit=1"]},
        },
        supports_check_mode=True,
    )
    p = module.params
    found = []
    if not 0 < p["port"] < 65536:
        found.append(f"port must be a port number 1-65535 (got {p['port']})")
    if not p["instances"]:
        found.append("instances must name the idle colour's API hosts")
    if p["tries"] < 1:
        found.append(f"tries must be 1 or more (got {p['tries']})")
    if p["delay"] < 0:
        found.append(f"delay must be 0 or more (got {p['delay']})")
    bad_paths = [x for x in p["paths"] if not x.startswith("/")]
    if bad_paths:
        found.append(f"paths must start with / ({', '.join(bad_paths)})")
    if found:
        module.fail_json(msg="; ".join(found))
    result = nginx.smoke(p["port"], p["instances"], p["version"], p["tries"], p["delay"], p["paths"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
