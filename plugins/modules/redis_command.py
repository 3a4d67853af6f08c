#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""redis_command: one command to a redis-server or Sentinel, without redis-cli and its REDISCLI_AUTH."""

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_command
short_description: Send one command to a redis-server or Sentinel, optionally until it gives the expected reply
description:
  - Connects over a plain socket (RESP; no redis-cli, no Python packages), authenticates with O(password) (and
    O(user)) inside the connection, sends O(command) and returns the reply. Unlike redis-cli with C(REDISCLI_AUTH)
    in the task's environment, the password never reaches a command line or an environment that sudo logs.
  - With O(wait), tries again every O(interval) seconds while the server does not answer, answers with an error,
    or (with O(expect)) answers something else, until O(wait) seconds have passed.
  - A command that changes something (O(read_only=false)) reports changed and is not sent in check mode; a read-only
    one (C(PING), C(ROLE), C(INFO)) is sent in check mode too and reports no change.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  host:
    description: Address of the redis-server or Sentinel.
    type: str
    default: 127.0.0.1
  port:
    description: Its port.
    type: int
    default: 6379
  user:
    description: ACL user to authenticate as; empty for the C(default) user.
    type: str
    default: ""
  password:
    description: Password to authenticate with; empty to send no C(AUTH).
    type: str
    default: ""
  command:
    description: The command and its arguments, for example C([ACL, LOAD]).
    type: list
    elements: str
    required: true
  read_only:
    description: Whether the command changes nothing (then it runs in check mode and reports no change).
    type: bool
    default: false
  expect:
    description: The reply (a simple or bulk string) that counts as success, for example C(PONG); null takes any.
    type: str
  wait:
    description: Seconds to keep trying until the command succeeds (and gives O(expect)); 0 tries once.
    type: float
    default: 0
  interval:
    description: Seconds between tries.
    type: float
    default: 1
  timeout:
    description: Seconds to wait for the connection and the reply.
    type: float
    default: 5
attributes:
  check_mode:
    support: full
    description: A read-only command (O(read_only=true)) is sent; any other is not sent and reports changed.
  diff_mode:
    support: none
    description: No diff.
"""

EXAMPLES = r"""
- name: Wait until redis-server answers
  tutormax.cluster.redis_command:
    password: "{{ redis_password }}"
    command: [PING]
    read_only: true
    expect: PONG
    wait: 30

- name: Reload the ACL file
  tutormax.cluster.redis_command:
    password: "{{ redis_password }}"
    command: [ACL, LOAD]
"""

RETURN = r"""
reply:
  description: The reply; error replies inside an array show as C({error => text}). Null in check mode for a
    command that changes something.
  returned: always
  type: raw
  sample: PONG
attempts:
  description: How many times the command was sent (or a connection tried).
  returned: always
  type: int
  sample: 1
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import redis


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 6379},
            "user": {"type": "str", "default": ""},
            "password": {"type": "str", "default": "", "no_log": True},
            "command": {"type": "list", "elements": "str", "required": True},
            "read_only": {"type": "bool", "default": False},
            "expect": {"type": "str"},
            "wait": {"type": "float", "default": 0.0},
            "interval": {"type": "float", "default": 1.0},
            "timeout": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not 0 < p["port"] < 65536:
        module.fail_json(msg=f"port must be a port number, 1 to 65535 (got {p['port']})")
    if not p["command"] or not p["command"][0]:
        module.fail_json(msg="command must name a command, for example [PING]")
    if p["user"] and not p["password"]:
        module.fail_json(msg="user needs password: the user's password")
    for name in ("wait", "interval"):
        if p[name] < 0:
            module.fail_json(msg=f"{name} must be 0 or more seconds (got {p[name]})")
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be more than 0 seconds (got {p['timeout']})")

    result: dict[str, Any] = {"changed": False, "reply": None, "attempts": 0}
    if module.check_mode and not p["read_only"]:
        module.exit_json(**{**result, "changed": True})

    deadline = time.monotonic() + p["wait"]
    while True:
        result["attempts"] += 1
        problem = ""
        try:
            reply = redis.ask(
                p["host"],
                p["port"],
                p["command"],
                password=p["password"] or None,
                user=p["user"] or None,
                timeout=p["timeout"],
            )
            result["reply"] = redis.jsonable(reply)
            if p["expect"] is None or reply == p["expect"]:
                module.exit_json(**{**result, "changed": not p["read_only"]})
            problem = f"expected {p['expect']!r}, got {str(result['reply'])[:200]!r}"
        except redis.RedisError as exc:
            problem = str(exc)
        if time.monotonic() >= deadline:
            tried = f" ({result['attempts']} tries in {p['wait']:g} s)" if p["wait"] else ""
            module.fail_json(msg=f"{p['command'][0]} to {p['host']}:{p['port']} failed{tried}: {problem}", **result)
        time.sleep(p["interval"])


if __name__ == "__main__":
    main()
