"""Blue-green in one implementation: the colours of the upstream file (plugins/module_utils/nginx.py),
the smoke test through a listener, the plan and the gate (plugins/filter/blue_green.py), and what
site.yml keeps of an idle colour (filter release_to_deploy). The cluster scenario drills the playbook
(molecule/cluster/tests/test_blue_green.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from conftest import REPO, JsonHandler, collection_import, run_playbook, serving
from test_site_preflight import good_inventory

nginx = collection_import("plugins.module_utils.nginx")
bg = collection_import("plugins.filter.blue_green")
rollout = collection_import("plugins.filter.rollout")

BACKENDS = [
    {"name": "api1", "address": "10.0.0.11", "colour": "blue"},
    {"name": "api2", "address": "10.0.0.12", "colour": "blue"},
    {"name": "api3", "address": "10.0.0.13", "colour": "green"},
]
COLOURS = {"api1": "blue", "api2": "blue", "api3": "green"}
OTHER = {"blue": "green", "green": "blue"}
RUNNING = {"api1": "1.0.1", "api2": "1.0.1", "api3": "1.0.3"}


def backends(state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return list(nginx.apply_state(nginx.backend_list(BACKENDS, 8000), state or {}))


def rendered(live: str = "", idle: str = "keep", previous: str = "") -> str:
    merged = backends()
    return str(nginx.render(merged, colour=nginx.colours(merged, live, idle, previous)))


# ------------------------------------------------------------------------------------ the file
def test_without_colours_the_file_is_as_before_and_records_none() -> None:
    plain = [{k: v for k, v in b.items() if k != "colour"} for b in BACKENDS]
    merged = list(nginx.backend_list(plain, 8000))
    assert nginx.colours(merged) is None
    text = nginx.render(merged, colour=None)
    assert "tutormax_preview" not in text
    assert "blue-green" not in text
    assert nginx.parse_pool(text) == {"in_service": ["api1", "api2", "api3"], "down": []}
    assert nginx.colour_state(text)["live"] == ""


def test_the_live_colour_serves_publicly_and_the_idle_one_only_on_the_loopback_preview() -> None:
    text = rendered()
    assert nginx.parse_pool(text) == {"in_service": ["api1", "api2"], "down": []}
    assert nginx.parse_pool(text, "tutormax_ws") == {"in_service": ["api1", "api2"], "down": []}
    assert nginx.parse_pool(text, "tutormax_preview") == {"in_service": ["api3"], "down": []}
    assert "listen 127.0.0.1:8082;" in text
    # No other listen line: the preview is not reachable from another address.
    listens = [line.strip() for line in text.splitlines() if line.strip().startswith("listen")]
    assert listens == ["listen 127.0.0.1:8082;"]
    assert nginx.colour_state(text) == {
        "live": "blue", "idle": "green", "decommissioned": False,
        "preview": {"in_service": ["api3"], "down": []},
    }  # fmt: skip


def test_a_switch_swaps_the_colours_and_the_file_keeps_the_live_one_afterwards() -> None:
    switched = rendered(live="green")
    assert nginx.parse_pool(switched) == {"in_service": ["api3"], "down": []}
    assert nginx.parse_pool(switched, "tutormax_preview") == {"in_service": ["api1", "api2"], "down": []}
    # A later run without a colour (site.yml, a drain) keeps what the file records.
    assert rendered(previous=switched) == switched
    assert rendered(live="blue", previous=switched) == rendered()


def test_decommissioned_drops_the_preview_and_keep_keeps_it_until_the_colours_swap() -> None:
    down = rendered(idle="decommissioned")
    assert "tutormax_preview" not in down
    assert "listen " not in down
    assert nginx.colour_state(down)["decommissioned"] is True
    assert rendered(previous=down) == down
    # Switching makes the other colour idle: that one is warm.
    assert nginx.colour_state(rendered(live="green", previous=down))["decommissioned"] is False
    assert rendered(idle="warm", previous=down) == rendered()


def test_colours_take_blue_first_and_a_recorded_colour_that_lost_its_hosts_is_dropped() -> None:
    only_green = [dict(b, colour="green") for b in backends()]
    assert nginx.colours(only_green) == {"live": "green", "idle": "", "decommissioned": False}
    assert nginx.colours(backends(), previous=rendered(live="green")) == {
        "live": "green", "idle": "blue", "decommissioned": False,
    }  # fmt: skip
    assert nginx.colours(only_green, previous=rendered())["live"] == "green"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"api3": "red"}, "colour must be blue or green (api3: 'red')"),
        ({"api3": ""}, "colour is set on some API hosts and not on these: api3"),
    ],
)
def test_colour_problems_name_the_hosts(changes: dict[str, str], expected: str) -> None:
    painted = [dict(b, colour=changes.get(b["name"], b["colour"])) for b in BACKENDS]
    assert any(expected in p for p in nginx.problems(painted))


def test_only_the_live_colour_must_keep_a_backend_in_service() -> None:
    state = {"api1": {"down": True}, "api2": {"down": True}}
    assert nginx.problems(BACKENDS, state, live="green") == []
    assert nginx.problems(BACKENDS, state, live="blue") == [
        "backend_state leaves no backend of the live colour blue in service"
    ]


def test_the_role_filter_reads_each_hosts_colour() -> None:
    filters = collection_import("plugins.filter.nginx_lb").FilterModule().filters()
    hostvars = {h: {"tutormax_private_address": f"10.0.0.{i}", "tutormax_api_colour": c}
                for i, (h, c) in enumerate(COLOURS.items(), 11)}  # fmt: skip
    found = filters["nginx_lb_backends"]([], 8000, list(COLOURS), hostvars, "tutormax_api_colour")
    assert [(b["name"], b["colour"]) for b in found] == list(COLOURS.items())
    assert {b["colour"] for b in filters["nginx_lb_backends"]([], 8000, list(COLOURS), hostvars)} == {""}


# ------------------------------------------------------------------------------------ the smoke test
class Preview(JsonHandler):
    """A preview listener: /health answered by the instances in turn, each with its version and status."""

    answers: ClassVar[list[tuple[str, int, str]]] = []
    paths: ClassVar[dict[str, int]] = {}
    asks = 0

    def do_GET(self) -> None:
        if self.path in Preview.paths:
            self.send_json(Preview.paths[self.path], {})
            return
        instance, status, version = Preview.answers[Preview.asks % len(Preview.answers)]
        Preview.asks += 1
        self.send_json(status, {"status": "ok", "instance_id": instance, "version": version})


@pytest.fixture
def preview() -> Iterator[int]:
    Preview.asks, Preview.paths = 0, {}
    with serving(Preview) as port:
        yield port


def test_smoke_asks_until_every_instance_answered_healthy_with_the_release(preview: int) -> None:
    Preview.answers = [("api3", 200, "1.0.3"), ("api4", 503, "1.0.3"), ("api3", 200, "1.0.3"), ("api4", 200, "1.0.3")]
    Preview.paths = {"/api/health": 200, "/api/tutors?limit=1": 500}
    result = nginx.smoke(preview, ["api3", "api4"], "1.0.3", tries=10, delay=0, paths=list(Preview.paths))
    assert result["asks"] == 4
    assert result["instances"]["api4"] == {"seen": True, "healthy": True, "status": 200, "version": "1.0.3"}
    assert result["paths"] == {"/api/health": 200, "/api/tutors?limit=1": 500}


def test_smoke_reports_a_silent_host_a_wrong_release_and_strangers(preview: int) -> None:
    Preview.answers = [("api3", 200, "1.0.1"), ("api1", 200, "1.0.1")]
    result = nginx.smoke(preview, ["api3", "api4"], "1.0.3", tries=6, delay=0)
    assert result["asks"] == 6
    assert result["instances"]["api3"] == {"seen": True, "healthy": False, "status": 200, "version": "1.0.1"}
    assert result["instances"]["api4"]["seen"] is False
    assert result["other_answers"] == ["api1"]


def test_smoke_of_a_listener_that_does_not_answer() -> None:
    with serving(Preview) as port:
        pass
    result = nginx.smoke(port, ["api3"], "1.0.3", tries=2, delay=0, paths=["/api/health"])
    assert result["instances"]["api3"]["seen"] is False
    assert result["other_answers"] == ["ConnectionRefusedError"]
    assert result["paths"] == {"/api/health": 0}


# ------------------------------------------------------------------------------------ the plan
def pools(*lives: str, decommissioned: bool = False) -> dict[str, dict[str, Any]]:
    return {
        f"lb{i}": {
            "live": live,
            "idle": {"blue": "green", "green": "blue"}.get(live, ""),
            "decommissioned": decommissioned,
        }
        for i, live in enumerate(lives, 1)
    }


def test_a_first_deploy_makes_blue_live_and_targets_green() -> None:
    plan = bg.blue_green_plan(COLOURS, pools("", ""), "deploy", RUNNING, "1.0.3")
    assert plan["problems"] == []
    assert (plan["first"], plan["live"], plan["idle"], plan["target"]) == (True, "blue", "green", "green")
    assert (plan["target_hosts"], plan["version"], plan["live_release"]) == (["api3"], "1.0.3", "1.0.1")


def test_a_switch_targets_the_idle_colour_and_expects_the_release_it_runs() -> None:
    plan = bg.blue_green_plan(COLOURS, pools("blue", "blue"), "switch", RUNNING)
    assert plan["problems"] == []
    assert (plan["target"], plan["target_hosts"], plan["version"], plan["noop"]) == ("green", ["api3"], "1.0.3", False)
    back = bg.blue_green_plan(COLOURS, pools("green", "green"), "switch", RUNNING)
    assert (back["target"], back["target_hosts"], back["version"], back["min_healthy"]) == (
        "blue", ["api1", "api2"], "1.0.1", 2,
    )  # fmt: skip
    assert bg.blue_green_plan(COLOURS, pools("blue", "blue"), "switch", RUNNING, to="blue")["noop"] is True


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((COLOURS, pools("blue"), "upgrade", RUNNING), "blue_green_action must be one of deploy, switch, decommission"),
        ((dict.fromkeys(COLOURS, "blue"), pools("blue"), "switch", RUNNING), "none is green"),
        ((COLOURS | {"api3": "teal"}, pools("blue"), "switch", RUNNING), "tutormax_api_colour must be blue or green"),
        ((COLOURS | {"api3": ""}, pools("blue"), "switch", RUNNING), "not on these: api3"),
        ((COLOURS, pools("blue", "green"), "switch", RUNNING), "the load balancers serve different colours (lb1: blue"),
        ((COLOURS, pools("blue"), "deploy", RUNNING, "latest"), "-e tutormax_version=X.Y.Z (got 'latest')"),
        ((COLOURS, pools("blue", decommissioned=True), "switch", RUNNING), "the idle colour green is decommissioned"),
        ((COLOURS, pools("green"), "switch", RUNNING | {"api2": "1.0.0"}), "api1: 1.0.1, api2: 1.0.0"),
        (
            (COLOURS, pools("green"), "switch", RUNNING, "", "", "3"),
            "asks for 3 healthy hosts, but the blue",
        ),
        ((COLOURS, pools("blue"), "switch", RUNNING, "", "", "half"), "blue_green_min_healthy must be a number"),
        ((COLOURS, pools("blue"), "deploy", RUNNING, "1.0.3", "", "100%", {"api3": "1.0.1"}), "also run Celery: api3"),
    ],
)
def test_the_plan_refuses_with_what_to_fix(args: tuple[Any, ...], expected: str) -> None:
    assert any(expected in p for p in bg.blue_green_plan(*args)["problems"]), bg.blue_green_plan(*args)["problems"]


def test_decommission_moves_only_the_celery_hosts_behind_the_live_release() -> None:
    celery = {"worker1": "1.0.1", "worker2": "1.0.0", "beat1": ""}
    plan = bg.blue_green_plan(COLOURS, pools("blue"), "decommission", RUNNING, celery=celery)
    assert plan["problems"] == []
    assert (plan["idle_hosts"], plan["live_release"], plan["celery_todo"]) == (["api3"], "1.0.1", ["beat1", "worker2"])
    assert bg.blue_green_plan(COLOURS, pools("blue"), "switch", RUNNING, celery=celery)["celery_todo"] == []


def test_the_plan_names_the_colour_hosts_that_run_celery() -> None:
    plan = bg.blue_green_plan(COLOURS, pools("blue"), "deploy", RUNNING, "1.0.3", celery={"api3": "", "w1": ""})
    assert plan["celery_colours"] == ["api3"]
    assert bg.blue_green_plan(COLOURS, pools("blue"), "deploy", RUNNING, "1.0.3")["celery_colours"] == []


def test_a_named_colour_finishes_a_switch_that_stopped_half_way() -> None:
    plan = bg.blue_green_plan(COLOURS, pools("blue", "green"), "switch", RUNNING, to="green")
    assert plan["problems"] == []
    assert (plan["target"], plan["noop"], plan["version"]) == ("green", False, "1.0.3")


@pytest.mark.parametrize(("value", "hosts", "count"), [("100%", 3, 3), ("50%", 3, 2), ("1%", 4, 1), ("2", 5, 2)])
def test_min_healthy_counts(value: str, hosts: int, count: int) -> None:
    assert bg.min_healthy_count(value, hosts) == count


# ------------------------------------------------------------------------------------ the gate
def report(**instances: tuple[bool, bool]) -> dict[str, Any]:
    return {
        "instances": {h: {"seen": seen, "healthy": ok, "status": 200 if ok else 503, "version": "1.0.3"}
                      for h, (seen, ok) in instances.items()},
        "paths": {"/api/health": 200},
    }  # fmt: skip


def test_the_gate_passes_when_every_host_is_healthy_on_every_load_balancer() -> None:
    plan = bg.blue_green_plan(COLOURS | {"api4": "green"}, pools("blue"), "switch", RUNNING | {"api4": "1.0.3"})
    gate = bg.blue_green_gate({"lb1": report(api3=(True, True), api4=(True, True)),
                               "lb2": report(api3=(True, True), api4=(True, True))}, plan)  # fmt: skip
    assert gate["ok"] is True
    assert gate["healthy"] == ["api3", "api4"]


def test_the_gate_refuses_and_names_each_failing_host_and_load_balancer() -> None:
    plan = bg.blue_green_plan(COLOURS | {"api4": "green"}, pools("blue"), "switch", RUNNING | {"api4": "1.0.3"})
    gate = bg.blue_green_gate({"lb1": report(api3=(True, True), api4=(False, False)),
                               "lb2": report(api3=(True, True), api4=(True, False))}, plan)  # fmt: skip
    assert gate["ok"] is False
    assert gate["failing"] == {
        "api4": ["no answer through lb1's preview listener",
                 "answered lb2 with status 503 and version 1.0.3 (expected 200 and 1.0.3)"],
    }  # fmt: skip
    assert "api4: no answer through lb1's preview listener" in gate["msg"]
    assert "(1 of 2 hosts healthy with 1.0.3, 2 needed)" in gate["msg"]


def test_the_gate_takes_fewer_healthy_hosts_when_allowed_but_never_a_failed_path() -> None:
    plan = bg.blue_green_plan(
        COLOURS | {"api4": "green"}, pools("blue"), "switch", RUNNING | {"api4": "1.0.3"}, min_healthy="50%"
    )
    half = report(api3=(True, True), api4=(False, False))
    assert bg.blue_green_gate({"lb1": half}, plan)["ok"] is True
    broken = half | {"paths": {"/api/tutors?limit=1": 500}}
    gate = bg.blue_green_gate({"lb1": broken}, plan)
    assert gate["ok"] is False
    assert "/api/tutors?limit=1 answered 500 through lb1's preview listener" in gate["msg"]
    assert bg.blue_green_gate({}, plan)["ok"] is False


# ------------------------------------------------------------------------------------ site.yml
def test_site_keeps_the_idle_colours_release_out_of_the_decision() -> None:
    release = rollout.release_to_deploy(RUNNING | {"worker1": "1.0.1"}, "", "1.0.0", idle=["api3"])
    assert (release["version"], release["mixed"], release["from"]) == ("1.0.1", False, "running")
    assert release["hosts"] == {"api3": "1.0.3"}
    assert release["decommissioned"] == []
    assert "idle colour: api3 1.0.3" in release["summary"]
    gone = rollout.release_to_deploy(RUNNING, "", "1.0.0", idle=["api3"], decommissioned=True)
    assert gone["decommissioned"] == ["api3"]
    # Without blue-green, the same hosts are a mixed cluster.
    assert rollout.release_to_deploy(RUNNING)["mixed"] is True


def test_every_play_of_the_playbook_reads_its_hosts_from_the_plan() -> None:
    """A play whose hosts are not planned would run for every action."""
    plays = yaml.safe_load((REPO / "playbooks" / "blue_green.yml").read_text())
    preflight = ("localhost", "lb", "api:celery_worker:celery_beat")
    loose = [p["name"] for p in plays if "hosts" in p and p["hosts"] not in preflight
             and "blue_green_hosts" not in p["hosts"]]  # fmt: skip
    assert loose == []


def test_a_rolling_update_of_api_hosts_with_colours_is_refused_before_any_host_is_contacted(tmp_path: Path) -> None:
    inventory = good_inventory()
    inventory["all"]["children"]["api"]["hosts"] = {
        "api1": {"tutormax_api_colour": "blue"}, "api2": {"tutormax_api_colour": "green"},
    }  # fmt: skip
    done = run_playbook(tmp_path, inventory, REPO / "rolling_update.yml", args=("-e", "tutormax_version=1.0.1"))
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert "deploy with playbooks/blue_green.yml, not a rolling update" in output, output[-2000:]
    assert "UNREACHABLE" not in output
