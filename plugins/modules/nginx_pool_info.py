#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""nginx_pool_info: which API hosts a load balancer has in its pool, read from its upstream file."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nginx_pool_info
short_description: Read the TutorMax load balancer's pool (backends in service and down) from its upstream file
description:
  - Reads the upstream file M(tutormax.cluster.nginx_upstreams) writes and returns the servers of its first
    upstream (or of O(upstream)), by name (each line's trailing C(# <name>) comment, else its address), split into
    those in service and those marked C(down).
  - Changes nothing. A missing file is an empty pool (RV(exists) false), not an error.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  dest:
    description: The upstream file.
    type: path
    default: /etc/nginx/conf.d/tutormax-upstreams.conf
  upstream:
    description: Name of the upstream block to read; empty reads the first one (C(tutormax_api)).
    type: str
    default: ""
attributes:
  check_mode:
    description: It only reads, in check mode too.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
notes:
  - Supports check mode (it only reads).
"""

EXAMPLES = r"""
- name: Read the pool this load balancer runs with
  tutormax.cluster.nginx_pool_info:
  register: lb_pool

- name: Show the hosts marked down
  ansible.builtin.debug:
    msg: "{{ lb_pool.pool.down }}"
"""

RETURN = r"""
exists:
  description: Whether the file exists.
  returned: always
  type: bool
pool:
  description: Names of the servers in service and of those marked down, in file order.
  returned: always
  type: dict
  sample: {"in_service": ["api1", "api3"], "down": ["api2"]}
colours:
  description:
    - Blue-green, as the file records it; C(live) is empty without blue-green. C(preview) is the pool of the idle
      colour's upstream (C(tutormax_preview); empty when decommissioned).
  returned: always
  type: dict
  sample: {"live": "blue", "idle": "green", "decommissioned": false, "preview": {"in_service": ["api3"], "down": []}}
servers:
  description: Each server of the upstream as written (name, address, port, weight, down, backup).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "api1", "address": "10.0.0.11", "port": 8000, "weight": 1, "down": false, "backup": false}]
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import nginx


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "default": nginx.DEFAULT_PATH},
            "upstream": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    dest = Path(module.params["dest"])
    try:
        text = dest.read_text(errors="replace") if dest.exists() else None
    except OSError as exc:
        module.fail_json(msg=f"cannot read dest {dest}: {exc}")
    servers = nginx.parse_servers(text or "", module.params["upstream"])
    module.exit_json(
        changed=False,
        exists=text is not None,
        pool=nginx.pool(servers),
        servers=servers,
        colours=nginx.colour_state(text or ""),
    )


if __name__ == "__main__":
    main()
