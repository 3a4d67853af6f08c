#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""patroni_cluster_info: the Patroni cluster as its REST API reports it, read only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: patroni_cluster_info
short_description: Read a Patroni cluster's leader, members and health from Patroni's REST API
description:
  - Asks C(GET /cluster) of the Patroni REST APIs in O(endpoints), in turn, until one answers; every member of a
    cluster reports the whole cluster (from etcd), so one answer is enough and a dead host does not fail the read.
    A refused or timed-out connection, an answer that is not JSON and an HTTP 5xx (a Patroni that lost etcd) move
    on to the next endpoint; an HTTP 4xx (such as wrong credentials) fails at once.
  - Returns the leader, each member (role, state, host, port, timeline, lag), the replicas and synchronous
    standbys, whether the cluster is healthy, and what is wrong in sentences that name the fix.
  - Healthy means a member holds the leader lock and every member is C(running) (Patroni 3.0.2 reports replicas so)
    or C(streaming) (3.0.4 and later). A member whose Patroni stopped drops out of C(/cluster) once its key in etcd
    expires; name the members that should be there in O(expected_members) to count that too.
  - Changes nothing and sets no facts. Stdlib HTTP only (no Python packages on the hosts).
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  endpoints:
    description:
      - Patroni REST APIs to ask, in order; the first that answers wins. Each is a host (C(10.0.0.21), the port is
        O(port)), C(host:port), an IPv6 address (C(::1) or C([::1]:8008)), or a URL (C(https://pg1:8008)).
    type: list
    elements: str
    default: [127.0.0.1]
  port:
    description: Port of the endpoints that name none (Patroni's C(restapi.listen)).
    type: int
    default: 8008
  user:
    description:
      - User of Patroni's C(restapi.authentication); empty sends no credentials. Patroni 3.0 asks them only of
        requests that change something, so reading works without.
    type: str
    default: ""
  password:
    description: Password of O(user).
    type: str
    default: ""
  timeout:
    description: Seconds to wait for each endpoint's connection and answer.
    type: float
    default: 5
  validate_certs:
    description: Whether to check the certificate of an C(https://) endpoint.
    type: bool
    default: true
  ca_path:
    description: CA certificate (PEM) to check an C(https://) endpoint's certificate with.
    type: path
  expected_members:
    description:
      - Member names (Patroni's C(name), one per host) that should be in the cluster; each one missing is a problem
        and makes RV(healthy) false. Empty checks no names.
    type: list
    elements: str
    default: []
  allow_no_answer:
    description:
      - What to do when no endpoint answers. False fails the task. True returns RV(answered) false, no leader,
        RV(healthy) false and the reason in RV(problems) (for a first deployment, where nothing runs yet).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: No diff (it changes nothing).
notes:
  - Supports check mode (it only reads).
  - Written against Patroni 3.0.2 (Debian 12's package), whose C(/cluster) has no C(scope) (3.2 added it).
seealso:
  - module: tutormax.cluster.patroni_config
"""

EXAMPLES = r"""
- name: Read the Patroni cluster from any member
  tutormax.cluster.patroni_cluster_info:
    endpoints: "{{ groups['postgres'] | map('extract', hostvars, 'ansible_host') | list }}"
    expected_members: "{{ groups['postgres'] }}"
  register: patroni

- name: Stop unless the cluster is healthy
  ansible.builtin.assert:
    that: patroni.healthy
    fail_msg: "{{ patroni.problems | join(' ') }}"
    quiet: true

- name: Restart the replicas first, the leader last
  ansible.builtin.debug:
    msg: "{{ patroni.replicas + [patroni.leader] }}"
"""

RETURN = r"""
answered:
  description: Whether an endpoint answered (false only with O(allow_no_answer)).
  returned: always
  type: bool
endpoint:
  description: Base URL of the endpoint that answered; empty when none did.
  returned: always
  type: str
  sample: http://10.0.0.21:8008
errors:
  description: The endpoints asked before the one that answered (or all of them), each with its error.
  returned: always
  type: list
  elements: dict
  sample: [{endpoint: "http://10.0.0.21:8008", error: "http://10.0.0.21:8008/cluster: Connection refused"}]
leader:
  description: Name of the member holding the leader lock (role C(leader), or C(standby_leader) in a standby
    cluster); null when none does.
  returned: always
  type: str
  sample: pg1
members:
  description:
    - Every member Patroni lists, sorted by name (as Patroni sorts them). C(role) is C(leader), C(standby_leader),
      C(sync_standby) or C(replica); C(state) is Patroni's (C(running), C(streaming), C(stopped), C(starting),
      C(crashed), ...); C(lag) is bytes behind the leader, null for the leader and when Patroni reports it
      C(unknown); C(host), C(port) and C(timeline) are null when Patroni does not report them.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: pg1, role: leader, state: running, host: 10.0.0.21, port: 5432, timeline: 3, lag: null,
       api_url: "http://10.0.0.21:8008/patroni", pending_restart: false, tags: {}}
    - {name: pg2, role: replica, state: running, host: 10.0.0.22, port: 5432, timeline: 3, lag: 0,
       api_url: "http://10.0.0.22:8008/patroni", pending_restart: false, tags: {}}
replicas:
  description: Names of the members that are not the leader (asynchronous replicas and synchronous standbys).
  returned: always
  type: list
  elements: str
  sample: [pg2, pg3]
sync_standbys:
  description: Names of the synchronous standbys (role C(sync_standby)).
  returned: always
  type: list
  elements: str
  sample: []
healthy:
  description: A member holds the leader lock, every member is running or streaming, and no name of
    O(expected_members) is missing.
  returned: always
  type: bool
problems:
  description: Why RV(healthy) is false, one sentence each naming the fix; empty when healthy.
  returned: always
  type: list
  elements: str
  sample: ["Member pg3 (replica) is stopped, not running: PostgreSQL there is down or still starting; ..."]
paused:
  description: Whether the cluster is in maintenance mode (C(patronictl pause)), with no automatic failover.
  returned: always
  type: bool
pending_restart:
  description: Names of the members whose PostgreSQL needs a restart to apply a changed setting.
  returned: always
  type: list
  elements: str
  sample: [pg2]
scheduled_switchover:
  description: A scheduled switchover as Patroni reports it (C(at), C(from), C(to)); null when none.
  returned: always
  type: dict
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import patroni


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **patroni.API_ARGUMENT_SPEC,
            "expected_members": {"type": "list", "elements": "str", "default": []},
            "allow_no_answer": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    problems = patroni.api_problems(p)
    if any(not name or not name.strip() for name in p["expected_members"]):
        problems.append("expected_members must be a list of member names; it has an empty one")
    if problems:
        module.fail_json(msg="; ".join(problems))

    try:
        endpoint, answer, errors = patroni.ask_first(patroni.bases(p), "/cluster", patroni.asker(p))
        summary = patroni.summarize(answer, p["expected_members"])
    except patroni.NoAnswerError as exc:
        if not p["allow_no_answer"]:
            module.fail_json(msg=str(exc), errors=exc.errors)
        module.exit_json(
            changed=False,
            answered=False,
            endpoint="",
            errors=exc.errors,
            leader=None,
            members=[],
            replicas=[],
            sync_standbys=[],
            healthy=False,
            problems=[str(exc)],
            paused=False,
            pending_restart=[],
            scheduled_switchover=None,
        )
    except patroni.PatroniError as exc:
        module.fail_json(msg=f"Cannot read the Patroni cluster: {patroni.explain(exc)}")
    result: dict[str, Any] = {"changed": False, "answered": True, "endpoint": endpoint, "errors": errors}
    module.exit_json(**result, **summary)


if __name__ == "__main__":
    main()
