#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""redis_topology: which redis-server is the master, asked the way the redis role keeps it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_topology
short_description: Find the current Redis master from the Sentinels, else the redis-servers, else the inventory
description:
  - Asks every Sentinel in O(sentinels) for the master it monitors under O(master_name) (C(SENTINEL MASTER)) and
    keeps the answer with the highest config epoch, which is how Sentinels settle disagreements among themselves.
    While a Sentinel reports a failover in progress, asks again every second for up to O(failover_wait) seconds;
    the failover's outcome is the topology to keep.
  - When no Sentinel answers (all stopped, or none monitors O(master_name) yet), asks every redis-server in
    O(servers) for its C(ROLE). Exactly one that says C(master) is the master; several is a split brain, which
    the module refuses to resolve (it fails and names them).
  - When nothing answers, the master is O(initial_master) (the first deployment, or all of Redis is down).
  - Optionally checks whether the redis-server at O(auth_check_host) accepts O(server_password).
  - Talks RESP over plain sockets (no redis-cli, no Python packages); passwords go only into the connection.
    All hosts are asked at once, so a dead host costs one O(timeout). Changes nothing.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  sentinels:
    description: Addresses (IPs or names) of the Sentinels to ask.
    type: list
    elements: str
    default: []
  sentinel_port:
    description: Port of the Sentinels.
    type: int
    default: 26379
  master_name:
    description: Name under which the Sentinels monitor the master.
    type: str
    required: true
  sentinel_password:
    description: Password of the Sentinels (their C(requirepass)); empty for none.
    type: str
    default: ""
  servers:
    description: Addresses of the redis-servers, asked for their C(ROLE) when no Sentinel answers.
    type: list
    elements: str
    default: []
  server_port:
    description: Port of the redis-servers.
    type: int
    default: 6379
  server_password:
    description: Password of the redis-servers' C(default) user (must be allowed C(ROLE)); empty for none.
    type: str
    default: ""
  initial_master:
    description: Address of the master when nothing answers (the inventory's first deployment master).
    type: str
    required: true
  failover_wait:
    description:
      - Seconds to wait out a failover in progress (a Sentinel whose C(flags) include C(failover_in_progress)).
        The module fails when one still runs after that. 0 asks once.
    type: float
    default: 0
  timeout:
    description: Seconds to wait for each connection and reply.
    type: float
    default: 5
  auth_check_host:
    description:
      - Address of a redis-server (usually C(127.0.0.1), this host's own) to check O(server_password) against
        with C(AUTH) and C(PING); the result is RV(auth_check). Empty checks nothing. Needs
        O(server_password).
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: No diff (it changes nothing).
notes:
  - Supports check mode (it only reads).
"""

EXAMPLES = r"""
- name: Find the current master
  tutormax.cluster.redis_topology:
    sentinels: [10.0.0.11, 10.0.0.12, 10.0.0.13]
    master_name: tutormax-master
    sentinel_password: "{{ redis_sentinel_password }}"
    servers: [10.0.0.11, 10.0.0.12, 10.0.0.13]
    server_password: "{{ redis_password }}"
    initial_master: 10.0.0.11
    failover_wait: 11
    auth_check_host: 127.0.0.1
  register: topology

- name: Show it
  ansible.builtin.debug:
    msg: "Master {{ topology.master }}, from {{ topology.explanation }}"
"""

RETURN = r"""
master:
  description: Address of the master this run keeps.
  returned: success
  type: str
  sample: 10.0.0.12
port:
  description: Port of the master as the Sentinels report it; null when the master did not come from them.
  returned: success
  type: int
  sample: 6379
source:
  description: Where RV(master) came from, C(sentinels), C(servers) or C(inventory).
  returned: success
  type: str
  sample: sentinels
known:
  description: Whether a Sentinel or redis-server named the master (false when it is O(initial_master)).
  returned: success
  type: bool
config_epoch:
  description: Config epoch of the Sentinel answer that won; null when no Sentinel answered.
  returned: success
  type: int
  sample: 3
explanation:
  description: Where the master came from, in words.
  returned: success
  type: str
  sample: the Sentinels (config epoch 3)
waited:
  description: Seconds spent waiting out a failover in progress.
  returned: always
  type: float
  sample: 0.0
sentinels:
  description:
    - What each Sentinel said, in the order of O(sentinels). C(answered) false comes with C(error); an answer has
      C(master), C(port), C(config_epoch), C(flags) and C(failover_in_progress).
  returned: always
  type: list
  elements: dict
  sample:
    - {address: 10.0.0.11, answered: true, error: "", master: 10.0.0.12, port: 6379, config_epoch: 3,
       flags: [master], failover_in_progress: false}
    - {address: 10.0.0.13, answered: false, error: "10.0.0.13:26379: Connection refused"}
servers:
  description:
    - What each redis-server said about its C(ROLE), in the order of O(servers); empty when a Sentinel answered
      (the servers are then not asked). An answer has C(role) (C(master), C(slave)) and, for a replica,
      C(master_host), C(master_port) and C(link_state).
  returned: always
  type: list
  elements: dict
  sample:
    - {address: 10.0.0.11, answered: true, error: "", role: master, offset: 1234,
       replicas: [[10.0.0.12, "6379", "1234"]]}
auth_check:
  description:
    - Whether the redis-server at O(auth_check_host) takes O(server_password). C(accepted) is true, false (it
      answered C(WRONGPASS)) or null (it did not answer, or runs without a password); null when nothing was
      checked.
  returned: always
  type: dict
  sample: {address: 127.0.0.1, answered: true, accepted: true, error: ""}
"""

import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import redis


def validate(module: AnsibleModule) -> None:
    p = module.params
    for name in ("sentinel_port", "server_port"):
        if not 0 < p[name] < 65536:
            module.fail_json(msg=f"{name} must be a port number, 1 to 65535 (got {p[name]})")
    if not re.fullmatch(r"\S+", p["master_name"]):
        module.fail_json(msg=f"master_name must be one word without whitespace (got {p['master_name']!r})")
    if not p["initial_master"].strip():
        module.fail_json(msg="initial_master must be the address of the first deployment's master (got '')")
    for name in ("sentinels", "servers"):
        blank = [a for a in p[name] if not a or not a.strip()]
        if blank:
            module.fail_json(msg=f"{name} must be a list of addresses; it has an empty one")
    if p["failover_wait"] < 0:
        module.fail_json(msg=f"failover_wait must be 0 or more seconds (got {p['failover_wait']})")
    if p["auth_check_host"] and not p["server_password"]:
        module.fail_json(msg="auth_check_host needs server_password: the password to check")
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be more than 0 seconds (got {p['timeout']})")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sentinels": {"type": "list", "elements": "str", "default": []},
            "sentinel_port": {"type": "int", "default": 26379},
            "master_name": {"type": "str", "required": True},
            "sentinel_password": {"type": "str", "default": "", "no_log": True},
            "servers": {"type": "list", "elements": "str", "default": []},
            "server_port": {"type": "int", "default": 6379},
            "server_password": {"type": "str", "default": "", "no_log": True},
            "initial_master": {"type": "str", "required": True},
            "failover_wait": {"type": "float", "default": 0.0},
            "timeout": {"type": "float", "default": 5.0},
            "auth_check_host": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    validate(module)
    p = module.params
    result: dict[str, Any] = {"changed": False, "sentinels": [], "servers": [], "waited": 0.0, "auth_check": None}

    if p["auth_check_host"]:
        result["auth_check"] = redis.password_check(
            p["auth_check_host"], p["server_port"], p["server_password"], p["timeout"]
        )

    def ask_sentinels() -> list[dict[str, Any]]:
        views: list[dict[str, Any]] = redis.ask_all(
            p["sentinels"],
            lambda a: redis.sentinel_view(
                a, p["sentinel_port"], p["master_name"], p["sentinel_password"], p["timeout"]
            ),
        )
        return views

    views, waited = redis.wait_for_sentinels(ask_sentinels, p["failover_wait"])
    result.update(sentinels=views, waited=round(waited, 1))
    busy = redis.failovers_in_progress(views)
    if busy:
        module.fail_json(
            msg=f"A failover of {p['master_name']} is still in progress after {waited:.0f} s (Sentinels at "
            f"{', '.join(busy)}); its outcome is the topology to keep: run again once it is over.",
            **result,
        )

    if redis.pick_master(views) is None:
        result["servers"] = redis.ask_all(
            p["servers"], lambda a: redis.server_view(a, p["server_port"], p["server_password"], p["timeout"])
        )
    try:
        decision = redis.decide_master(views, result["servers"], p["initial_master"])
    except redis.SplitBrainError as exc:
        module.fail_json(msg=str(exc), claims=exc.claims, **result)
    module.exit_json(**result, **decision)


if __name__ == "__main__":
    main()
