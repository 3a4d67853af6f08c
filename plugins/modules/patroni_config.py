#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""patroni_config: converge Patroni's dynamic configuration, patching only what differs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: patroni_config
short_description: Converge a Patroni cluster's dynamic configuration through its REST API
description:
  - Reads the dynamic configuration (kept in etcd, the same for every member) with C(GET /config) from the first of
    O(endpoints) that answers, compares it with O(config), and sends C(PATCH /config) with only the keys that
    differ. Patroni applies the change on every member on its next loop.
  - Nested dicts compare key by key, as Patroni merges them (C(postgresql.parameters.max_connections) alone, not
    the whole C(postgresql) block); keys O(config) does not name are left alone; a key set to null is deleted
    (nothing happens when it is absent).
  - Values compare as Patroni stores them, whatever their type. C(100) and C("100") are the same, and so are
    C(true) and C("true"). Inside C(postgresql.parameters), C(on), C(true) and C(yes) are the same value, and so
    are C(off), C(false) and C(no), because PostgreSQL reads them alike.
  - The PATCH carries Patroni's C(restapi.authentication) credentials (O(user), O(password)) when given. After it,
    the module checks that the configuration Patroni answered with matches O(config).
  - Also returns which members report C(pending_restart) in C(GET /cluster). Patroni sets this flag after it has
    applied a change, on its next loop, so right after a change the list may still be empty. Read
    M(tutormax.cluster.patroni_cluster_info) a few seconds later, before restarting.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  config:
    description:
      - >-
        The wanted dynamic configuration, or part of it, as C(patronictl edit-config) shows it, e.g.
        C({ttl: 30, loop_wait: 10, postgresql: {parameters: {max_connections: 200}}}). A null value deletes the key.
    type: dict
    required: true
  endpoints:
    description:
      - Patroni REST APIs to ask, in order; the first that answers wins, and the PATCH goes to it. Each is a host
        (C(10.0.0.21), the port is O(port)), C(host:port), an IPv6 address (C(::1) or C([::1]:8008)), or a URL
        (C(https://pg1:8008)). A refused or timed-out connection and an HTTP 5xx move on to the next; an HTTP 4xx
        fails at once.
    type: list
    elements: str
    default: [127.0.0.1]
  port:
    description: Port of the endpoints that name none (Patroni's C(restapi.listen)).
    type: int
    default: 8008
  user:
    description: User of Patroni's C(restapi.authentication), needed for the PATCH when Patroni has one set.
    type: str
    default: ""
  password:
    description: Password of O(user).
    type: str
    default: ""
  timeout:
    description: Seconds to wait for each connection and answer.
    type: float
    default: 5
  validate_certs:
    description: Whether to check the certificate of an C(https://) endpoint.
    type: bool
    default: true
  ca_path:
    description: CA certificate (PEM) to check an C(https://) endpoint's certificate with.
    type: path
attributes:
  check_mode:
    support: full
    description: Reads and compares, and sends no PATCH; RV(config) is what the PATCH would make.
  diff_mode:
    support: full
    description: The changed keys before and after.
notes:
  - In check mode, reports what would change and changes nothing. With --diff, the changed keys before and after.
  - Written against Patroni 3.0.2 (Debian 12's package) and its C(GET)/C(PATCH /config).
seealso:
  - module: tutormax.cluster.patroni_cluster_info
"""

EXAMPLES = r"""
- name: Converge Patroni's dynamic configuration
  tutormax.cluster.patroni_config:
    endpoints: "{{ groups['postgres'] | map('extract', hostvars, 'ansible_host') | list }}"
    user: "{{ patroni_restapi_user }}"
    password: "{{ patroni_restapi_password }}"
    config:
      ttl: "{{ patroni_ttl }}"
      loop_wait: "{{ patroni_loop_wait }}"
      retry_timeout: "{{ patroni_retry_timeout }}"
      postgresql:
        parameters:
          max_connections: "{{ postgresql_max_connections }}"
          wal_log_hints: true
          old_setting: null # deleted from the dynamic configuration
  run_once: true
  register: patroni_dynamic

- name: Say which members need a restart
  ansible.builtin.debug:
    msg: "Restart needed on {{ patroni_dynamic.pending_restart | join(', ') }}"
  when: patroni_dynamic.pending_restart | default([], true) | length > 0
"""

RETURN = r"""
patch:
  description: The body of the C(PATCH /config) sent (in check mode, that would be sent); empty when nothing
    differs.
  returned: always
  type: dict
  sample: {postgresql: {parameters: {max_connections: 200}}}
diff:
  description: The changed keys only, nested as in the configuration, before and after; a deleted key is missing
    from C(after), a new one from C(before).
  returned: always
  type: dict
  sample: {before: {postgresql: {parameters: {max_connections: "100"}}},
           after: {postgresql: {parameters: {max_connections: 200}}}}
config:
  description: The whole dynamic configuration after the task, as Patroni answered the PATCH (in check mode and
    when nothing changed, as it would be).
  returned: always
  type: dict
  sample: {ttl: 30, loop_wait: 10, retry_timeout: 10, postgresql: {parameters: {max_connections: 200}}}
pending_restart:
  description:
    - Names of the members that report C(pending_restart) in C(GET /cluster), read at the end of the task; null
      when C(/cluster) could not be read (a warning says why). Patroni sets the flag on its next loop after a
      change, so it can lag behind the PATCH by a few seconds.
  returned: always
  type: list
  elements: str
  sample: [pg1, pg2]
endpoint:
  description: Base URL of the endpoint that answered (and took the PATCH).
  returned: always
  type: str
  sample: http://10.0.0.21:8008
errors:
  description: The endpoints asked before the one that answered, each with its error.
  returned: always
  type: list
  elements: dict
  sample: []
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import patroni


def main() -> None:
    module = AnsibleModule(
        argument_spec={"config": {"type": "dict", "required": True}, **patroni.API_ARGUMENT_SPEC},
        supports_check_mode=True,
    )
    p = module.params
    problems = patroni.api_problems(p)
    if problems:
        module.fail_json(msg="; ".join(problems))
    wanted = p["config"]

    try:
        endpoint, current, errors = patroni.ask_first(patroni.bases(p), "/config", patroni.asker(p))
    except patroni.NoAnswerError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)
    except patroni.PatroniError as exc:
        module.fail_json(msg=f"Cannot read Patroni's dynamic configuration: {patroni.explain(exc)}")
    if not isinstance(current, dict):
        module.fail_json(msg=f"{endpoint}/config answered something other than a configuration: {current!r:.120}")

    patch, before, after = patroni.plan_patch(wanted, current)
    header = f"Patroni dynamic configuration ({endpoint})"
    result: dict[str, Any] = {
        "changed": bool(patch),
        "patch": patch,
        "diff": {"before": before, "after": after, "before_header": header, "after_header": header},
        "endpoint": endpoint,
        "errors": errors,
        "config": patroni.apply_patch(current, patch),
        "pending_restart": None,
    }

    if patch and not module.check_mode:
        try:
            answer = patroni.asker(p, "PATCH", patch)(endpoint + "/config")
        except patroni.PatroniError as exc:
            module.fail_json(msg=f"Patroni refused the change: {patroni.explain(exc)}", **result)
        if not isinstance(answer, dict):
            module.fail_json(msg=f"{endpoint}/config answered the PATCH with {answer!r:.120}", **result)
        result["config"] = answer
        left = patroni.plan_patch(wanted, answer)[0]
        if left:
            module.fail_json(
                msg=f"Patroni took the PATCH, but its configuration still differs from config in {sorted(left)}",
                left=left,
                **result,
            )

    others = [b for b in patroni.bases(p) if b != endpoint]
    try:
        cluster = patroni.ask_first([endpoint, *others], "/cluster", patroni.asker(p))[1]
        result["pending_restart"] = patroni.summarize(cluster)["pending_restart"]
    except patroni.PatroniError as exc:
        module.warn(f"pending_restart is unknown: {patroni.explain(exc)}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
