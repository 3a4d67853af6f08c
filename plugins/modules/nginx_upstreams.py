#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""nginx_upstreams: write the load balancer's pool, check it with nginx -t, reload, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nginx_upstreams
short_description: Write the TutorMax upstreams of nginx (the load balancer's pool), check, reload and wait
description:
  - Renders the upstream file of the TutorMax load balancer from O(backends) with O(backend_state) applied
    over them (drain with C(down), or weight), in one call. Two upstreams list the same servers,
    C(tutormax_api) (C(least_conn), shared zone, upstream keepalive) and C(tutormax_ws)
    (C(hash $remote_addr consistent)); each server line carries C(max_fails), C(fail_timeout), C(weight) when
    it is not 1, C(down), and a trailing C(# <name>) comment that M(tutormax.cluster.nginx_pool_info) reads back.
  - When the file already holds that content (root:root 0644) nothing is touched and nginx is not reloaded.
  - Otherwise the file is replaced atomically (root:root 0644); with O(validate) C(nginx -t) checks the whole
    configuration and a refusal puts the previous file back and fails before anything reloads; with O(reload)
    C(systemctl reload nginx) follows (new workers take the pool, old ones finish their requests) and the module
    waits until C(http://127.0.0.1:<status_port>/ping) answers.
  - With O(wait_served), after that it asks C(/health) through the load balancer until the given API instance
    answers (the instance is back in the pool and serves), and fails if it never does.
  - >-
    The nginx_lb role writes its upstreams with it (C(tasks_from: upstream.yml) for the rolling update's drains).
  - >-
    Blue-green, when the backends have a O(backends[].colour): the two upstreams list the live colour's servers
    only; the idle colour's servers go into C(tutormax_preview), served on a listener at 127.0.0.1:O(preview_port)
    only (for smoke tests before a switch), unless it is decommissioned. A comment line records the colours;
    M(tutormax.cluster.nginx_pool_info) reads it back, and it is what O(live_colour) and O(idle) keep by default.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  dest:
    description: The upstream file nginx includes.
    type: path
    default: /etc/nginx/conf.d/tutormax-upstreams.conf
  backends:
    description: The backends, in the order they are written.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Backend name (the API host's inventory name), written as the line's C(# name) comment.
        type: str
        required: true
      address:
        description: IP address (IPv6 without brackets is fine) or host name.
        type: str
        required: true
      port:
        description: Port of the API on this backend; O(port) when left out.
        type: int
      weight:
        description: Relative weight.
        type: int
        default: 1
      down:
        description: Out of rotation (drained).
        type: bool
        default: false
      colour:
        description: Blue-green colour, C(blue) or C(green); on every backend or on none (no blue-green).
        type: str
        default: ""
  live_colour:
    description:
      - The colour the public upstreams serve (blue-green). Empty keeps the one the file records while hosts of it
        remain, else C(blue) when blue hosts exist.
    type: str
    default: ""
  idle:
    description:
      - The idle colour's state. V(warm) serves it on the preview listener; V(decommissioned) leaves it out of the
        file (its hosts are stopped); V(keep) keeps what the file records for that colour (else warm).
    type: str
    choices: [keep, warm, decommissioned]
    default: keep
  preview_port:
    description: Port of the idle colour's listener on 127.0.0.1.
    type: int
    default: 8082
  backend_state:
    description:
      - >-
        Per-backend state by name, applied over O(backends), such as C({api1: {down: true}}) to drain or
        C({api2: {weight: 2}}) to weight a backend. Only C(down) and C(weight) may be set.
      - Unknown names, weights below 1 and a state that leaves no backend in service are refused.
    type: dict
    default: {}
  port:
    description: Port of the backends that give none.
    type: int
    default: 8000
  max_fails:
    description: Failed attempts within O(fail_timeout) after which a backend is skipped.
    type: int
    default: 3
  fail_timeout:
    description: Window for counting failures, and how long a failed backend is then skipped (nginx duration).
    type: str
    default: 10s
  keepalive:
    description: Idle keepalive connections each worker keeps to the backends.
    type: int
    default: 32
  keepalive_timeout:
    description: How long an idle upstream keepalive connection stays open (nginx duration).
    type: str
    default: 4s
  validate:
    description: Check the whole configuration with C(nginx -t) after writing; a refusal puts the previous file back.
    type: bool
    default: true
  reload:
    description:
      - Reload nginx after a change and wait until C(/ping) on O(status_port) answers.
      - V(false) leaves the reload to the caller (the nginx_lb role's full run reloads once for all its files).
    type: bool
    default: true
  status_port:
    description: Local port (127.0.0.1) whose C(/ping) answers once nginx runs again.
    type: int
    default: 8081
  ping_timeout:
    description: Most seconds to wait for C(/ping) after the reload.
    type: float
    default: 20
  backup:
    description:
      - Keep a copy of the previous file when it changes (RV(backup_file)), for a caller that checks more files
        with C(nginx -t) afterwards and must be able to put this one back too (the caller removes the copy).
    type: bool
    default: false
  wait_served:
    description:
      - After the reload (or when nothing changed), ask C(http://127.0.0.1:<port>/health) through the load balancer
        until API instance O(wait_served.instance) answers (its C(X-Instance-Id) header or the JSON C(instance_id),
        of any status); fail when it has not after O(wait_served.tries) asks.
    type: dict
    suboptions:
      port:
        description: Plain-HTTP port of the load balancer on 127.0.0.1.
        type: int
        required: true
      instance:
        description: Instance id of the API host that must answer (its inventory name).
        type: str
        required: true
      tries:
        description: Most asks.
        type: int
        default: 30
      delay:
        description: Seconds between two asks.
        type: float
        default: 0.05
attributes:
  check_mode:
    description: Nothing is written, checked, reloaded or asked; C(changed) says whether the file would change.
    support: full
  diff_mode:
    description: The file before and after (its server lines show each backend's state).
    support: full
notes:
  - In check mode nothing is written, checked, reloaded or asked; C(changed) says whether the file would change.
"""

EXAMPLES = r"""
- name: Drain api2 on this load balancer
  tutormax.cluster.nginx_upstreams:
    backends:
      - {name: api1, address: 10.0.0.11}
      - {name: api2, address: 10.0.0.12}
    backend_state:
      api2: {down: true}

- name: Put api2 back and wait until requests reach it through this load balancer
  tutormax.cluster.nginx_upstreams:
    backends:
      - {name: api1, address: 10.0.0.11}
      - {name: api2, address: 10.0.0.12}
    wait_served: {port: 80, instance: api2, tries: 30}
  register: upstreams
"""

RETURN = r"""
dest:
  description: The upstream file.
  returned: always
  type: str
  sample: /etc/nginx/conf.d/tutormax-upstreams.conf
reloaded:
  description: Whether nginx was reloaded.
  returned: always
  type: bool
pool:
  description: The pool (names in service and down) in the file before and after.
  returned: always
  type: dict
  sample: {"before": {"in_service": ["api1", "api2"], "down": []}, "after": {"in_service": ["api1"], "down": ["api2"]}}
served:
  description:
    - With O(wait_served) (not in check mode), whether the instance answered, after how many asks, and which
      answers came (instance ids, or C(status <code>) and error names); null otherwise.
  returned: always
  type: dict
  sample: {"instance": "api2", "seen": true, "requests": 3, "answered_by": ["api1", "api2"]}
colours:
  description: The colours the file records before and after (live, idle, decommissioned); null without blue-green.
  returned: always
  type: dict
  sample: {"before": {"live": "blue", "idle": "green", "decommissioned": false}, "after": {"live": "green",
    "idle": "blue", "decommissioned": false}}
seconds:
  description: Seconds spent writing, checking, reloading and waiting.
  returned: always
  type: float
backup_file:
  description: Copy of the previous file (O(backup), when the file changed and existed).
  returned: when a backup was made
  type: str
stderr:
  description: What C(nginx -t) said when it refused the file.
  returned: on refusal
  type: str
"""

import time
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import nginx


def _check_arguments(module: AnsibleModule, previous: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Refuse bad arguments, naming them; return the backends with their state applied, and the colours."""
    p = module.params
    found = nginx.check_settings(p["max_fails"], p["fail_timeout"], p["keepalive"], p["keepalive_timeout"])
    for name in ("port", "status_port"):
        if not 0 < p[name] < 65536:
            found.append(f"{name} must be a port number 1-65535 (got {p[name]})")
    if not 0 < p["preview_port"] < 65536:
        found.append(f"preview_port must be a port number 1-65535 (got {p['preview_port']})")
    if p["live_colour"] and p["live_colour"] not in nginx.COLOURS:
        found.append(f"live_colour must be blue or green (got {p['live_colour']!r})")
    if p["ping_timeout"] <= 0:
        found.append(f"ping_timeout must be more than 0 (got {p['ping_timeout']})")
    w = p["wait_served"]
    if w:
        if not 0 < w["port"] < 65536:
            found.append(f"wait_served.port must be a port number 1-65535 (got {w['port']})")
        if not w["instance"].strip():
            found.append("wait_served.instance must name the API instance to wait for")
        if w["tries"] < 1:
            found.append(f"wait_served.tries must be 1 or more (got {w['tries']})")
        if w["delay"] < 0:
            found.append(f"wait_served.delay must be 0 or more (got {w['delay']})")
    given = [{k: v for k, v in b.items() if v is not None} for b in p["backends"]]
    backends = nginx.backend_list(given, p["port"])
    colours = None
    if not nginx.colour_problems(backends):
        colours = nginx.colours(backends, p["live_colour"], p["idle"], previous)
    live = colours["live"] if colours else ""
    found += nginx.problems(backends, p["backend_state"], names=nginx.MODULE_NAMES, live=live)
    if found:
        module.fail_json(msg="; ".join(found))
    return list(nginx.apply_state(backends, p["backend_state"])), colours


def _colours(text: str) -> dict[str, Any] | None:
    state = nginx.colour_state(text)
    return {k: state[k] for k in ("live", "idle", "decommissioned")} if state["live"] else None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "default": nginx.DEFAULT_PATH},
            "backends": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "address": {"type": "str", "required": True},
                    "port": {"type": "int"},
                    "weight": {"type": "int", "default": 1},
                    "down": {"type": "bool", "default": False},
                    "colour": {"type": "str", "default": ""},
                },
            },
            "live_colour": {"type": "str", "default": ""},
            "idle": {"type": "str", "default": "keep", "choices": list(nginx.IDLE_STATES)},
            "preview_port": {"type": "int", "default": nginx.DEFAULT_PREVIEW_PORT},
            "backend_state": {"type": "dict", "default": {}},
            "port": {"type": "int", "default": 8000},
            "max_fails": {"type": "int", "default": 3},
            "fail_timeout": {"type": "str", "default": "10s"},
            "keepalive": {"type": "int", "default": 32},
            "keepalive_timeout": {"type": "str", "default": "4s"},
            "validate": {"type": "bool", "default": True},
            "reload": {"type": "bool", "default": True},
            "status_port": {"type": "int", "default": 8081},
            "ping_timeout": {"type": "float", "default": 20.0},
            "backup": {"type": "bool", "default": False},
            "wait_served": {
                "type": "dict",
                "options": {
                    "port": {"type": "int", "required": True},
                    "instance": {"type": "str", "required": True},
                    "tries": {"type": "int", "default": 30},
                    "delay": {"type": "float", "default": 0.05},
                },
            },
        },
        supports_check_mode=True,
    )
    p = module.params
    dest = Path(p["dest"])
    try:
        previous: bytes | None = dest.read_bytes() if dest.exists() else None
    except OSError as exc:
        module.fail_json(msg=f"cannot read {dest}: {exc}")
    before_text = previous.decode(errors="replace") if previous is not None else ""
    backends, colours = _check_arguments(module, before_text)
    content = nginx.render(
        backends, p["max_fails"], p["fail_timeout"], p["keepalive"], p["keepalive_timeout"], colours, p["preview_port"]
    )
    data = content.encode()
    same, attributes_ok = nginx.in_place(dest, data)

    result: dict[str, Any] = {
        "changed": not (same and attributes_ok),
        "dest": str(dest),
        "reloaded": False,
        "pool": {"before": nginx.parse_pool(before_text), "after": nginx.parse_pool(content)},
        "colours": {"before": _colours(before_text), "after": colours},
        "served": None,
        "seconds": 0.0,
    }
    if module._diff:
        result["diff"] = {
            "before": before_text,
            "after": content,
            "before_header": f"{dest} (before)" if previous is not None else f"{dest} (absent)",
            "after_header": f"{dest} (after)",
        }
    if module.check_mode:
        module.exit_json(**result)

    start = time.monotonic()
    if result["changed"] and p["backup"] and previous is not None:
        result["backup_file"] = module.backup_local(str(dest))
    if same and not attributes_ok:
        nginx.fix_attributes(dest)  # same servers: nginx need not read it again
    elif not same:
        try:
            nginx.write_atomic(dest, data)
        except OSError as exc:
            module.fail_json(msg=f"cannot write {dest}: {exc}", **result)
        if p["validate"]:
            nginx_bin = module.get_bin_path("nginx", required=True)
            rc, _out, err = module.run_command([nginx_bin, "-t", "-q"])
            if rc != 0:
                if previous is None:
                    dest.unlink(missing_ok=True)
                else:
                    nginx.write_atomic(dest, previous)
                if "backup_file" in result:
                    Path(result.pop("backup_file")).unlink(missing_ok=True)
                result.update(changed=False, stderr=err.strip(), seconds=round(time.monotonic() - start, 2))
                module.fail_json(
                    msg=(
                        f"The new upstreams were refused by nginx -t and the previous {dest} put back; nginx was "
                        f"not reloaded. {err.strip()}"
                    ),
                    **result,
                )
        if p["reload"]:
            systemctl = module.get_bin_path("systemctl", required=True)
            rc, _out, err = module.run_command([systemctl, "reload", "nginx"])
            if rc != 0:
                module.fail_json(msg=f"systemctl reload nginx failed: {err.strip()}", **result)
            result["reloaded"] = True
            if not nginx.wait_ping(p["status_port"], p["ping_timeout"]):
                result["seconds"] = round(time.monotonic() - start, 2)
                module.fail_json(
                    msg=(
                        f"nginx did not answer /ping on 127.0.0.1:{p['status_port']} within "
                        f"{p['ping_timeout']:g} s after the reload"
                    ),
                    **result,
                )

    w = p["wait_served"]
    if w:
        result["served"] = nginx.served(w["port"], w["instance"], w["tries"], w["delay"])
        if not result["served"]["seen"]:
            result["seconds"] = round(time.monotonic() - start, 2)
            module.fail_json(
                msg=(
                    f"{w['instance']} did not answer /health through 127.0.0.1:{w['port']} in {w['tries']} asks "
                    f"(answered by: {', '.join(result['served']['answered_by'])})"
                ),
                **result,
            )
    result["seconds"] = round(time.monotonic() - start, 2)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
