"""The rolling update's decisions (plugins/filter/rollout.py), without hosts.

Which API and Celery hosts a rollout touches and in which order, where the release is installed
first, whether migrations run, which hosts each phase's play runs on, the pool each drain writes,
and the post-check's rows; the filter refuses bad input and names it.
"""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from conftest import collection_import

rollout = collection_import("plugins.filter.rollout")

API = ["api1", "api2", "api3"]
CELERY = ["worker1", "worker2"]
POOL = {"in_service": API, "down": []}


def api_state(host: str, version: str = "1.0.0", installed: bool = False, status: int = 200) -> dict[str, Any]:
    return {
        "current": version,
        "version_installed": installed,
        "health": {"status": status, "version": version, "instance_id": host},
        "units": {},
    }


def celery_state(version: str = "1.0.0", installed: bool = False, beat: bool = False) -> dict[str, Any]:
    units = {"tutormax-worker@1.service": {"active": "active", "releases": [version]}}
    if beat:
        units["tutormax-beat.service"] = {"active": "active", "releases": [version]}
    return {"current": version, "version_installed": installed, "health": None, "units": units}


def states(**override: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {h: api_state(h) for h in API} | {"worker1": celery_state(beat=True), "worker2": celery_state()}
    return out | override


def plan(s: dict[str, dict[str, Any]] | None = None, **kwargs: Any) -> dict[str, Any]:  # noqa: ANN401
    args: dict[str, Any] = {"version": "1.0.1", "api": API, "pools": [POOL], "celery": CELERY, "beat": ["worker1"],
                            "postgres": ["pg1", "pg2"]}  # fmt: skip
    result: dict[str, Any] = rollout.rollout_plan(states() if s is None else s, **(args | kwargs))
    return result


def test_an_update_touches_every_host_api_in_order_and_the_beat_host_last() -> None:
    p = plan()
    assert p["api"] == API
    assert p["celery"] == ["worker2", "worker1"]
    assert p["celery_todo"] == CELERY
    assert p["stage"] == [*API, *CELERY]
    assert p["migrate"] is True
    assert p["downgrade"] is False
    assert p["previous"] == "1.0.0"
    assert p["new"] == []
    assert p["plays"]["api"] == API
    assert p["plays"]["config"] == API
    assert p["plays"]["celery_config"] == CELERY
    assert p["plays"]["migrate"] == ["api1"]
    assert p["plays"]["hba"] == []
    assert p["now_running"] == ["api1 1.0.0", "api2 1.0.0", "api3 1.0.0", "worker1 1.0.0", "worker2 1.0.0"]


def test_hosts_out_of_the_pool_go_first_and_hosts_already_done_are_skipped() -> None:
    s = states(api1=api_state("api1", "1.0.1", installed=True))
    p = plan(s, pools=[{"in_service": ["api1", "api2"], "down": ["api3"]}, POOL])
    assert p["out_of_pool"] == ["api3"]
    assert p["in_service"] == ["api1", "api2"]
    assert p["api"] == ["api3", "api2"]
    assert "api1" not in p["stage"]


def test_a_host_that_answers_unhealthy_or_as_another_instance_is_updated_again() -> None:
    done = api_state("api1", "1.0.1", installed=True)
    s = states(api1=done | {"health": {"status": 503, "version": "1.0.1", "instance_id": "api1"}},
               api2=api_state("api2", "1.0.1") | {"health": {"status": 200, "version": "1.0.1", "instance_id": "x"}},
               api3=api_state("api3", "1.0.1"))  # fmt: skip
    assert plan(s)["api"] == ["api1", "api2"]


def test_force_restarts_hosts_that_already_run_the_version() -> None:
    s = {h: api_state(h, "1.0.1", installed=True) for h in API} | {
        "worker1": celery_state("1.0.1", True, beat=True),
        "worker2": celery_state("1.0.1", True),
    }
    assert plan(s)["api"] == []
    assert plan(s)["plays"]["celery"] == []
    assert plan(s)["migrate"] is False
    forced = plan(s, force=True)
    assert forced["api"] == API
    assert forced["celery_todo"] == CELERY
    assert forced["stage"] == []


def test_a_celery_host_with_a_unit_down_or_on_another_release_is_updated() -> None:
    s = {h: api_state(h, "1.0.1", installed=True) for h in API} | {
        "worker1": celery_state("1.0.1", True, beat=True),
        "worker2": celery_state("1.0.1", True),
    }
    s["worker1"]["units"]["tutormax-beat.service"]["active"] = "failed"
    s["worker2"]["units"]["tutormax-worker@1.service"]["releases"] = ["1.0.0"]
    assert plan(s)["celery_todo"] == CELERY


def test_going_back_skips_migrations_unless_asked_and_installs_nothing_kept() -> None:
    s = {h: api_state(h, "1.0.1", installed=True) for h in API} | {
        "worker1": celery_state("1.0.1", True, beat=True),
        "worker2": celery_state("1.0.1", True),
    }
    for state in s.values():
        state["version_installed"] = True
    back = plan(s, version="1.0.0")
    assert back["downgrade"] is True
    assert back["migrate"] is False
    assert back["plays"]["migrate"] == []
    assert back["stage"] == []
    assert back["previous"] == "1.0.1"
    assert plan(s, version="1.0.0", migrate="true")["migrate"] is True


def test_versions_compare_as_numbers() -> None:
    s = {h: api_state(h, "1.0.9") for h in API} | {"worker1": celery_state("1.0.9", beat=True),
                                                   "worker2": celery_state("1.0.9")}  # fmt: skip
    assert plan(s, version="1.0.10")["downgrade"] is False


def test_a_new_api_host_is_deployed_whole_and_opens_the_database_to_it() -> None:
    s = states(api4={"current": "", "version_installed": False, "health": {"status": 0}, "units": {}})
    p = plan(s, api=[*API, "api4"])
    assert p["new"] == ["api4"]
    assert p["out_of_pool"] == ["api4"]
    assert p["api"][0] == "api4"
    assert "api4" not in p["plays"]["config"]
    assert p["plays"]["new"] == ["api4"]
    assert p["plays"]["hba"] == ["pg1", "pg2"]
    assert p["plays"]["migrate"] == ["api1"], "migrations must run from a host that ran the app before"


def test_check_mode_plans_but_puts_no_host_in_any_play() -> None:
    p = plan(check_mode=True)
    assert p["api"] == API
    assert all(hosts == [] for hosts in p["plays"].values())


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"version": "latest"}, "version"),
        ({"migrate": "maybe"}, "migrate"),
        ({"api": []}, "api"),
        ({"pools": [{"down": []}]}, "in_service"),
    ],
)
def test_plan_refuses_bad_input_and_names_it(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(AnsibleFilterError, match=named):
        plan(**kwargs)


def test_plan_refuses_a_host_it_has_no_state_for() -> None:
    s = states()
    del s["api2"]
    with pytest.raises(AnsibleFilterError, match="api2"):
        plan(s)


@pytest.mark.parametrize(
    ("out_of_pool", "done", "batch", "down"),
    [
        ([], [], ["api1"], ["api1"]),
        (["api3"], [], ["api1"], ["api1", "api3"]),  # a host out of the pool stays out until redeployed
        (["api3"], ["api3"], ["api1"], ["api1"]),
        ([], ["api1"], ["api1", "api2"], ["api2"]),  # api2 failed its gate: it stays out
        ([], ["api1", "api2"], ["api1", "api2"], []),
    ],
)
def test_the_pool_each_drain_writes(out_of_pool: list[str], done: list[str], batch: list[str], down: list[str]) -> None:
    assert rollout.rollout_pool_down({"out_of_pool": out_of_pool}, done, batch) == down


def test_post_check_rows_and_report() -> None:
    info = {
        "health": {"status": 200, "version": "1.0.1"},
        "units": {"tutormax-worker@1.service": {"active": "active", "releases": ["1.0.1"]},
                  "tutormax-beat.service": {"active": "failed", "releases": ["1.0.1"]}},
    }  # fmt: skip
    rows = rollout.rollout_versions(info, True, "worker1")
    assert rows == [
        {"host": "worker1", "what": "tutormax-api (/health)", "versions": ["1.0.1"]},
        {"host": "worker1", "what": "tutormax-beat.service", "versions": []},
        {"host": "worker1", "what": "tutormax-worker@1.service", "versions": ["1.0.1"]},
    ]
    lines = rollout.rollout_report(rows, "1.0.1")
    assert [line.split()[0] for line in lines] == ["OK", "FAIL", "OK"]
    assert lines[1].endswith("not running")


# ------------------------------------------------------------------ site.yml: release and restarts
def test_site_keeps_the_release_every_app_host_runs() -> None:
    r = rollout.release_to_deploy({"api1": "1.0.1", "api2": "1.0.1", "worker1": "1.0.1"}, "", "1.0.0")
    assert (r["version"], r["from"], r["mixed"]) == ("1.0.1", "running", False)


def test_site_deploys_the_shipped_source_on_a_first_deployment_and_keeps_new_hosts_on_the_running_release() -> None:
    assert rollout.release_to_deploy({"api1": "", "worker1": ""}, "", "1.0.0")["version"] == "1.0.0"
    r = rollout.release_to_deploy({"api1": "1.0.1", "api4": ""}, "", "1.0.0")
    assert (r["version"], r["new"]) == ("1.0.1", ["api4"])


def test_site_refuses_mixed_releases_naming_hosts_and_the_command() -> None:
    r = rollout.release_to_deploy({"api1": "1.0.0", "api2": "1.0.1", "worker1": "1.0.1"}, "", "1.0.0")
    assert r["mixed"] is True
    assert r["version"] == ""
    assert r["summary"] == "1.0.0 on api1; 1.0.1 on api2, worker1"
    assert r["converge"] == "ansible-playbook rolling_update.yml -e tutormax_version=1.0.1"
    asked = rollout.release_to_deploy({"api1": "1.0.0", "api2": "1.0.1"}, "1.0.2", "1.0.0")
    assert (asked["version"], asked["from"]) == ("1.0.2", "asked")


def test_site_refuses_a_bad_asked_version() -> None:
    with pytest.raises(AnsibleFilterError, match="tutormax_version"):
        rollout.release_to_deploy({}, "latest", "1.0.0")


def test_restart_plan_takes_only_the_pending_hosts_in_order_beat_last_and_stages_nothing() -> None:
    p = rollout.restart_plan(["api3", "api1"], "1.0.1", API)
    assert p["plays"]["api"] == ["api1", "api3"]
    assert p["api_current"] == {"api1": "1.0.1", "api3": "1.0.1"}
    assert (p["out_of_pool"], p["staged"], p["celery_restart"]) == ([], False, "always")
    c = rollout.restart_plan(["worker1", "worker2"], "1.0.1", [], celery=CELERY, beat=["worker1"])
    assert c["plays"]["celery"] == ["worker2", "worker1"]
    assert c["plays"]["api"] == []
    assert rollout.restart_plan(["api1"], "1.0.1", API, check_mode=True)["plays"] == {"api": [], "celery": []}
    # The pool a drain writes: the batch only (site.yml puts every API host into the pool).
    assert rollout.rollout_pool_down(p, [], ["api1"]) == ["api1"]


def test_rollout_plan_stages_and_restarts_changed_units_unless_forced() -> None:
    assert (plan()["staged"], plan()["celery_restart"]) == (True, "changed")
    assert plan(force=True)["celery_restart"] == "always"
