#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""redis_sentinel_settings: converge a running Sentinel's settings, changing only what differs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_sentinel_settings
short_description: Converge a running Redis Sentinel's settings for a master, and its own
description:
  - Reads what the running Sentinel uses (C(SENTINEL MASTER) and C(SENTINEL CONFIG GET *)) and changes only the
    settings that differ from the wanted ones, the master's with one C(SENTINEL SET) and the Sentinel's own with
    C(SENTINEL CONFIG SET). Sentinel saves every change to its config file itself; nothing is restarted.
  - Sentinel keeps the master's password out of C(SENTINEL MASTER); O(auth_pass) is compared with the
    C(sentinel auth-pass) line of the config file Sentinel saves (O(config_file)) instead.
  - Options left out (null) are left alone. Talks RESP over a plain socket; passwords go only into the connection.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  host:
    description: Address of the Sentinel.
    type: str
    default: 127.0.0.1
  port:
    description: Port of the Sentinel.
    type: int
    default: 26379
  password:
    description: Password of the Sentinel (its C(requirepass)); empty for none.
    type: str
    default: ""
  timeout:
    description: Seconds to wait for the connection and each reply.
    type: float
    default: 5
  master_name:
    description: Name under which the Sentinel monitors the master. The Sentinel must monitor it already.
    type: str
    required: true
  quorum:
    description: Sentinels that must agree the master is down.
    type: int
  down_after_milliseconds:
    description: Milliseconds without a valid reply before the Sentinel considers the master down.
    type: int
  failover_timeout:
    description: Milliseconds a failover may take.
    type: int
  parallel_syncs:
    description: Replicas that resynchronise with a new master at the same time.
    type: int
  auth_pass:
    description: Password the Sentinel authenticates to the master and its replicas with.
    type: str
  config_file:
    description: The config file the Sentinel saves its state in, read to compare O(auth_pass).
    type: path
    default: /etc/redis/sentinel.conf
  announce_ip:
    description: Address the Sentinel announces to the others (empty for its own).
    type: str
  resolve_hostnames:
    description: Whether the Sentinel accepts host names instead of IPs.
    type: bool
  announce_hostnames:
    description: Whether the Sentinel announces host names instead of IPs.
    type: bool
attributes:
  check_mode:
    support: full
    description: Reports the settings that differ and changes none of them.
  diff_mode:
    support: full
    description: The managed settings before and after, the master's password masked.
notes:
  - In check mode, reports what would change and changes nothing. With --diff, the managed settings before and
    after (the master's password masked).
"""

EXAMPLES = r"""
- name: Converge the running Sentinel
  tutormax.cluster.redis_sentinel_settings:
    password: "{{ redis_sentinel_password }}"
    master_name: tutormax-master
    quorum: 2
    down_after_milliseconds: 3000
    failover_timeout: 10000
    parallel_syncs: 1
    auth_pass: "{{ redis_password }}"
    announce_ip: 10.0.0.11
    resolve_hostnames: false
    announce_hostnames: false
"""

RETURN = r"""
changes:
  description:
    - The settings that differed, in the order above; C(scope) is C(master) (C(SENTINEL SET)) or C(sentinel)
      (C(SENTINEL CONFIG SET)). C(before) is null when the Sentinel did not report the setting; the master's
      password shows as C(********).
  returned: always
  type: list
  elements: dict
  sample: [{scope: master, setting: quorum, before: "3", after: "2"}]
running:
  description: The managed settings as the Sentinel ran with them before this call (the password left out).
  returned: always
  type: dict
  sample: {quorum: "2", down-after-milliseconds: "3000", announce-ip: 10.0.0.11}
"""

import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import redis

# Option name -> the setting's name in Sentinel.
MASTER_OPTIONS = {
    "quorum": "quorum",
    "down_after_milliseconds": "down-after-milliseconds",
    "failover_timeout": "failover-timeout",
    "parallel_syncs": "parallel-syncs",
}
SENTINEL_OPTIONS = {
    "announce_ip": "announce-ip",
    "resolve_hostnames": "resolve-hostnames",
    "announce_hostnames": "announce-hostnames",
}


def validate(module: AnsibleModule) -> None:
    p = module.params
    if not 0 < p["port"] < 65536:
        module.fail_json(msg=f"port must be a port number, 1 to 65535 (got {p['port']})")
    if not re.fullmatch(r"\S+", p["master_name"]):
        module.fail_json(msg=f"master_name must be one word without whitespace (got {p['master_name']!r})")
    for name in ("quorum", "down_after_milliseconds", "failover_timeout", "parallel_syncs"):
        if p[name] is not None and p[name] < 1:
            module.fail_json(msg=f"{name} must be 1 or more (got {p[name]})")
    if p["auth_pass"] is not None and not re.fullmatch(r"\S+", p["auth_pass"]):
        module.fail_json(msg="auth_pass must be one word without whitespace (its value is not shown)")
    if p["announce_ip"] is not None and re.search(r"\s", p["announce_ip"]):
        module.fail_json(msg=f"announce_ip must be an address without whitespace (got {p['announce_ip']!r})")
    if p["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be more than 0 seconds (got {p['timeout']})")


def saved_auth_pass(module: AnsibleModule, path: str, master_name: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError as exc:
        module.fail_json(msg=f"config_file {path} cannot be read to compare auth_pass: {exc.strerror or exc}")
    saved: str | None = redis.config_value(text, ["sentinel", "auth-pass", master_name])
    return saved


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 26379},
            "password": {"type": "str", "default": "", "no_log": True},
            "timeout": {"type": "float", "default": 5.0},
            "master_name": {"type": "str", "required": True},
            "quorum": {"type": "int"},
            "down_after_milliseconds": {"type": "int"},
            "failover_timeout": {"type": "int"},
            "parallel_syncs": {"type": "int"},
            "auth_pass": {"type": "str", "no_log": True},
            "config_file": {"type": "path", "default": "/etc/redis/sentinel.conf"},
            "announce_ip": {"type": "str"},
            "resolve_hostnames": {"type": "bool"},
            "announce_hostnames": {"type": "bool"},
        },
        supports_check_mode=True,
    )
    validate(module)
    p = module.params
    name = p["master_name"]
    client = redis.Client(p["host"], p["port"], password=p["password"] or None, timeout=p["timeout"])
    try:
        client.connect()
        reply = client.raw_command("SENTINEL", "MASTER", name)
        if isinstance(reply, redis.ReplyError):
            module.fail_json(msg=f"The Sentinel at {client.address} does not monitor master_name {name}: {reply}")
        master = redis.pairs(reply)
        own = redis.pairs(client.command("SENTINEL", "CONFIG", "GET", "*"))
    except (redis.RedisError, ValueError) as exc:
        client.close()
        module.fail_json(msg=f"Cannot read the Sentinel's settings at {client.address}: {exc}")

    wanted_master = {MASTER_OPTIONS[k]: p[k] for k in MASTER_OPTIONS}
    wanted_own = {SENTINEL_OPTIONS[k]: p[k] for k in SENTINEL_OPTIONS}
    saved = saved_auth_pass(module, p["config_file"], name) if p["auth_pass"] is not None else None
    auth_change = redis.plan_auth_pass(p["auth_pass"], saved)
    changes = (
        redis.plan_settings(wanted_master, master, "master")
        + auth_change
        + redis.plan_settings(wanted_own, own, "sentinel")
    )
    running: dict[str, Any] = {k: master.get(k) for k in wanted_master if wanted_master[k] is not None}
    running.update({k: own.get(k) for k in wanted_own if wanted_own[k] is not None})
    result: dict[str, Any] = {"changed": bool(changes), "changes": changes, "running": running}

    if module._diff:
        after = dict(running)
        after.update({c["setting"]: c["after"] for c in changes if c["setting"] != redis.AUTH_PASS})
        shown_before = shown_after = None
        if p["auth_pass"] is not None:
            shown_before = "(not set)" if saved is None else "(hidden)"
            shown_after = "(hidden, changed)" if auth_change else shown_before
        result["diff"] = {
            "before": redis.render_settings(name, running, shown_before),
            "after": redis.render_settings(name, after, shown_after),
            "before_header": f"Sentinel {client.address} (running)",
            "after_header": f"Sentinel {client.address} (wanted)",
        }

    if changes and not module.check_mode:
        try:
            master_args: list[str] = []
            for change in changes:
                if change["scope"] == "master":
                    value = p["auth_pass"] if change["setting"] == redis.AUTH_PASS else change["after"]
                    master_args += [change["setting"], value]
            if master_args:
                client.command("SENTINEL", "SET", name, *master_args)
            for change in changes:
                if change["scope"] == "sentinel":
                    client.command("SENTINEL", "CONFIG", "SET", change["setting"], change["after"])
        except redis.RedisError as exc:
            client.close()
            module.fail_json(msg=f"The Sentinel at {client.address} refused a setting: {exc}", **result)
    client.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
