#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""patroni_switchover: a planned switchover of a Patroni cluster, waited on until the cluster is whole."""

from __future__ import annotations

DOCUMENTATION = r"""
module: patroni_switchover
short_description: Hand a Patroni cluster's leadership to another member and wait until the cluster is whole
description:
  - Reads the cluster with C(GET /cluster) from the first of O(endpoints) that answers, and decides whether a
    switchover can go (M(tutormax.cluster.patroni_cluster_info)'s reading; the rules are Patroni's own). It
    refuses, naming the fix, a cluster that is not healthy, paused or has a switchover scheduled; a O(candidate)
    that is not a member, is tagged C(nofailover), or is not a synchronous standby when synchronous replication is
    on (Patroni promotes only a synchronous standby, so no acknowledged write is lost).
  - When O(candidate) is the leader already, nothing happens (C(changed=false)), so running it twice is safe.
  - Otherwise sends C(POST /switchover) with the current leader (and O(candidate) when given; without one,
    Patroni picks the healthiest eligible replica) to the leader's REST API, with Patroni's
    C(restapi.authentication) credentials. Patroni stops the leader's PostgreSQL (clients get a connection
    error for the few seconds it takes), promotes the candidate, and restarts the old leader as its replica.
  - Then waits, up to O(wait_timeout) seconds, until another member holds the leader lock and every member that
    was there before is running again, so the next task finds the cluster whole.
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
options:
  candidate:
    description: Member name (Patroni's C(name)) to hand the leadership to; empty lets Patroni pick.
    type: str
    default: ""
  wait_timeout:
    description: Seconds to wait after Patroni's answer for the new leader and every member to be running.
    type: float
    default: 90
  endpoints:
    description:
      - Patroni REST APIs to read the cluster from, in order; the first that answers wins. Each is a host
        (C(10.0.0.21), the port is O(port)), C(host:port), an IPv6 address (C(::1) or C([::1]:8008)), or a URL.
    type: list
    elements: str
    default: [127.0.0.1]
  port:
    description: Port of the endpoints that name none (Patroni's C(restapi.listen)).
    type: int
    default: 8008
  user:
    description: User of Patroni's C(restapi.authentication); Patroni asks it of a switchover when one is set.
    type: str
    default: ""
  password:
    description: Password of O(user).
    type: str
    default: ""
  timeout:
    description: Seconds to wait for each connection and answer (the switchover's own answer may take longer
      on Patroni's side; the wait is bounded by O(wait_timeout)).
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
    description: Reads the cluster and says whether the switchover would go and to whom; sends nothing.
  diff_mode:
    support: none
    description: No diff; RV(leader_before) and RV(leader) say what moved.
notes:
  - Written against Patroni 3.0.2 (Debian 12's package), whose C(POST /switchover) answers in words (200
    "Successfully switched over to ...", 412 with the reason it refuses, 503 when the outcome is unknown).
seealso:
  - module: tutormax.cluster.patroni_cluster_info
"""

EXAMPLES = r"""
- name: Hand the leadership to pg2 (or let Patroni pick with candidate left empty)
  tutormax.cluster.patroni_switchover:
    endpoints: "{{ groups['postgres'] | map('extract', hostvars, 'ansible_host') | list }}"
    user: "{{ patroni_restapi_user }}"
    password: "{{ patroni_restapi_password }}"
    candidate: pg2
  run_once: true
  register: switchover
"""

RETURN = r"""
leader_before:
  description: The leader before the task.
  returned: always
  type: str
  sample: pg1
leader:
  description: The leader after the task (in check mode the one before, since nothing moved).
  returned: always
  type: str
  sample: pg2
eligible:
  description: The members that may take over (the candidate, or Patroni's choice among these).
  returned: always
  type: list
  elements: str
  sample: [pg2]
answer:
  description: Patroni's answer to the POST; empty when none was sent.
  returned: always
  type: str
  sample: Successfully switched over to "pg2"
seconds:
  description: Seconds from the POST until the new leader and every member were running.
  returned: always
  type: float
  sample: 6.4
members:
  description: The members after the task, as M(tutormax.cluster.patroni_cluster_info) returns them.
  returned: always
  type: list
  elements: dict
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import patroni

# How often the cluster is read while waiting for it to be whole again.
POLL_SECONDS = 0.5


def read_cluster(params: dict[str, Any], expected: list[str]) -> dict[str, Any]:
    """The cluster's summary from the first endpoint that answers; ``expected`` members must be in it."""
    answer = patroni.ask_first(patroni.bases(params), "/cluster", patroni.asker(params))[1]
    summary: dict[str, Any] = patroni.summarize(answer, expected)
    return summary


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **patroni.API_ARGUMENT_SPEC,
            "candidate": {"type": "str", "default": ""},
            "wait_timeout": {"type": "float", "default": 90.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    problems = patroni.api_problems(p)
    if p["wait_timeout"] <= 0:
        problems.append(f"wait_timeout must be more than 0 seconds (got {p['wait_timeout']})")
    if problems:
        module.fail_json(msg="; ".join(problems))

    try:
        before = read_cluster(p, [])
    except patroni.NoAnswerError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)
    except patroni.PatroniError as exc:
        module.fail_json(msg=f"Cannot read the Patroni cluster: {patroni.explain(exc)}")
    plan = patroni.plan_switchover(before, p["candidate"].strip() or None)
    result: dict[str, Any] = {
        "leader_before": plan["leader"],
        "leader": plan["leader"],
        "eligible": plan["eligible"],
        "answer": "",
        "seconds": 0.0,
        "members": before["members"],
    }
    if plan["problems"]:
        module.fail_json(msg="No switchover: " + " ".join(plan["problems"]), **result)
    if not plan["do"] or module.check_mode:
        module.exit_json(changed=plan["do"], **result)

    # One POST, never repeated (a second one could move the leader again): to the leader's own API
    # when it is one of the endpoints (patronictl's way: Patroni wakes its loop at once), else to the
    # first endpoint (any member takes it, through etcd). A 503 means Patroni stopped waiting before
    # the outcome: the wait below decides.
    leader_url = [
        patroni.base_url(m["api_url"]) for m in before["members"] if m["name"] == plan["leader"] and m["api_url"]
    ]
    target = sorted(patroni.bases(p), key=lambda base: base not in leader_url)[0]
    body = {"leader": plan["leader"], **({"candidate": plan["candidate"]} if plan["candidate"] else {})}
    sent = time.monotonic()
    # Patroni answers once the new leader runs (or after its own wait): allow the whole wait for it.
    post = dict(p, timeout=max(p["timeout"], p["wait_timeout"]))
    try:
        answer = patroni.asker(post, "POST", body, as_text=True)(target + "/switchover")
    except patroni.PatroniHTTPError as exc:
        if exc.status != 503:
            module.fail_json(msg=f"Patroni refused the switchover: {patroni.explain(exc)}", **result)
        answer = exc.body.strip()
    except patroni.PatroniError as exc:
        module.fail_json(msg=f"The switchover request got no answer: {patroni.explain(exc)}", **result)
    result["answer"] = str(answer)

    expected = [m["name"] for m in before["members"]]
    now: dict[str, Any] = {}
    while time.monotonic() - sent < p["wait_timeout"]:
        try:
            now = read_cluster(p, expected)
        except patroni.PatroniError:
            now = {}
        moved = now.get("leader") not in (None, plan["leader"])
        if moved and now.get("healthy") and (not plan["candidate"] or now["leader"] == plan["candidate"]):
            break
        time.sleep(POLL_SECONDS)
    else:
        result |= {"leader": now.get("leader"), "members": now.get("members", [])}
        module.fail_json(
            msg=f"Patroni answered {answer!r}, but the cluster was not whole under a new leader within "
            f"{p['wait_timeout']} s: " + " ".join(now.get("problems", ["no member answered"])),
            changed=now.get("leader") not in (None, plan["leader"]),
            **result,
        )
    result |= {"leader": now["leader"], "members": now["members"], "seconds": round(time.monotonic() - sent, 1)}
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
