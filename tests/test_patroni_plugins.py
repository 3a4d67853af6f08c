"""PostgreSQL HA's decisions as plugins, without a cluster.

module_utils/patroni.py (endpoints, requests, /cluster read as health, the PATCH /config plan), the
modules patroni_cluster_info and patroni_config run by ansible-playbook on localhost against stand-in
Patroni REST APIs (http.server on loopback, answering the JSON Patroni 3.0.2 answers and recording every
request, its Authorization header and PATCH body), and the filters of plugins/filter/postgres_ha.py.

The stand-in's shapes come from Patroni 3.0.2's source (patroni/utils.py cluster_as_json, patroni/api.py
do_GET_cluster, do_GET_config, do_PATCH_config, check_auth_header) and its docs/rest_api.rst examples:
/cluster has no scope before 3.2, the leader has no lag, a replica's lag may be the string "unknown",
replicas report "running" (3.0.4 and later: "streaming"), GET /config answers 502 without a
configuration in the DCS, PATCH merges nested dicts and deletes nulls, and a PATCH without the
restapi.authentication credentials gets 401.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from conftest import JsonHandler, collection_import, run_task, serving

patroni = collection_import("plugins.module_utils.patroni")
ha = collection_import("plugins.filter.postgres_ha")

USER = "patroni"
PASSWORD = "r3stapiPassw0rdForTests"  # noqa: S105 - a test's own
WRONG = "wrong-one"  # a wrong password, on purpose
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

# GET /cluster of Patroni 3.0.2: a leader, a synchronous standby and an asynchronous replica.
CLUSTER: dict[str, Any] = {
    "members": [
        {"name": "pg1", "role": "leader", "state": "running", "api_url": "http://10.0.0.21:8008/patroni",
         "host": "10.0.0.21", "port": 5432, "timeline": 3},
        {"name": "pg2", "role": "sync_standby", "state": "running", "api_url": "http://10.0.0.22:8008/patroni",
         "host": "10.0.0.22", "port": 5432, "timeline": 3, "lag": 0},
        {"name": "pg3", "role": "replica", "state": "running", "api_url": "http://10.0.0.23:8008/patroni",
         "host": "10.0.0.23", "port": 5432, "timeline": 3, "lag": 1024, "pending_restart": True,
         "tags": {"nofailover": True}},
    ]
}  # fmt: skip
# GET /config as Patroni 3.0.2 keeps it after a bootstrap (numbers it was given as text stay text).
CONFIG: dict[str, Any] = {
    "ttl": 30,
    "loop_wait": 10,
    "retry_timeout": 10,
    "maximum_lag_on_failover": 1048576,
    "postgresql": {
        "use_pg_rewind": True,
        "use_slots": True,
        "parameters": {"max_connections": "100", "wal_log_hints": "on", "hot_standby": "on", "work_mem": "4MB"},
    },
}


# ------------------------------------------------------------------------------------ the stand-in
def patroni_patch_config(config: dict[str, Any], data: dict[str, Any]) -> bool:
    """Patroni 3.0.2's patroni.utils.patch_config, written out again for the stand-in (not the plugin's
    own apply_patch, so the two are checked against each other)."""
    is_changed = False
    for name, value in data.items():
        if value is None:
            if config.pop(name, None) is not None:
                is_changed = True
        elif name in config:
            if isinstance(value, dict):
                if isinstance(config[name], dict):
                    if patroni_patch_config(config[name], value):
                        is_changed = True
                else:
                    config[name] = value
                    is_changed = True
            elif str(config[name]) != str(value):
                config[name] = value
                is_changed = True
        else:
            config[name] = value
            is_changed = True
    return is_changed


def stand_in(state: dict[str, Any]) -> type[JsonHandler]:
    """A Patroni REST API serving ``state``: ``cluster`` and ``config`` (None: 502, as without a
    configuration in the DCS), ``status`` (an HTTP status every request gets instead), ``auth`` (the
    Authorization header PATCH needs, None for none), ``ignore_patch`` (answer without applying).
    Every request is appended to ``state["requests"]`` as (method, path, Authorization, body)."""
    state.setdefault("requests", [])

    class Handler(JsonHandler):
        def record(self, body: Any = None) -> None:  # noqa: ANN401 - JSON
            state["requests"].append((self.command, self.path, self.headers.get("Authorization"), body))

        def do_GET(self) -> None:
            self.record()
            if state.get("status"):
                self.send_json(state["status"], {"error": "stand-in status"})
            elif self.path == "/cluster":
                self.send_json(200, state["cluster"])
            elif self.path == "/config" and state.get("config") is not None:
                self.send_json(200, state["config"])
            elif self.path == "/config":
                self.send_error(502)
            else:
                self.send_error(404)

        def do_PATCH(self) -> None:  # noqa: N802 - http.server dispatches on the name
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            self.record(body)
            if state.get("auth") and self.headers.get("Authorization") != state["auth"]:
                reason = "not authenticated" if self.headers.get("Authorization") else "no auth header received"
                data = reason.encode()
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="Patroni"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if self.path != "/config" or not isinstance(body, dict) or not body:
                self.send_error(400)
                return
            config = copy.deepcopy(state["config"])
            if not state.get("ignore_patch"):
                patroni_patch_config(config, body)
                state["config"] = config
            self.send_json(200, config)

        def do_POST(self) -> None:
            """POST /switchover as Patroni 3.0.2 answers it: in words; the leader moves to the candidate
            (or the first synchronous standby) unless ``switchover`` says otherwise (``refuse``: 412,
            ``unknown``: 503 and no move, ``stuck``: 200 and no move)."""
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            self.record(body)
            members = state["cluster"]["members"]
            leader = next(m for m in members if m["role"] == "leader")
            outcome = state.get("switchover", "move")
            if state.get("auth") and self.headers.get("Authorization") != state["auth"]:
                status, text = 401, "not authenticated"
            elif self.path != "/switchover" or not isinstance(body, dict) or body.get("leader") != leader["name"]:
                status, text = 412, "leader name does not match"
            elif outcome == "refuse":
                status, text = 412, "candidate name does not match with sync_standby"
            elif outcome == "unknown":
                status, text = 503, "Switchover status unknown"
            else:
                status = 200
                new = body.get("candidate") or next(m["name"] for m in members if m["role"] == "sync_standby")
                text = f'Successfully switched over to "{new}"'
                if outcome == "move":
                    for m in members:
                        m["role"] = "leader" if m["name"] == new else m["role"]
                    leader["role"] = "sync_standby"
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def api() -> Iterator[dict[str, Any]]:
    """One stand-in Patroni with the healthy cluster and CONFIG, restapi.authentication set."""
    state: dict[str, Any] = {"cluster": copy.deepcopy(CLUSTER), "config": copy.deepcopy(CONFIG), "auth": AUTH}
    with serving(stand_in(state)) as port:
        state["port"] = port
        state["url"] = f"http://127.0.0.1:{port}"
        yield state


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        return int(server.getsockname()[1])


def run_module(tmp_path: Path, module: str, args: dict[str, Any], *flags: str) -> tuple[Any, dict[str, Any]]:
    return run_task(tmp_path, {f"tutormax.cluster.{module}": args}, *flags)


def asked(state: dict[str, Any], method: str) -> list[tuple[str, str, str | None, Any]]:
    return [r for r in state["requests"] if r[0] == method]


# ------------------------------------------------------------------------------------ endpoints, requests
@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("10.0.0.21", "http://10.0.0.21:8008"),
        ("pg1.internal:8009", "http://pg1.internal:8009"),
        ("fd00::21", "http://[fd00::21]:8008"),
        ("[fd00::21]:8010", "http://[fd00::21]:8010"),
        ("https://pg1:8008/patroni", "https://pg1:8008"),  # a member's api_url as /cluster gives it
        (" http://10.0.0.21:8008/ ", "http://10.0.0.21:8008"),
    ],
)
def test_endpoints_become_base_urls_on_the_default_port(endpoint: str, expected: str) -> None:
    assert patroni.base_url(endpoint, 8008) == expected


@pytest.mark.parametrize("endpoint", ["", "pg1:http", "ftp://pg1", "[fd00::21", "[fd00::21]x", ":8008"])
def test_endpoints_that_are_no_host_or_url_are_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        patroni.base_url(endpoint, 8008)


def test_ask_first_moves_past_dead_and_5xx_endpoints_and_names_them(api: dict[str, Any]) -> None:
    broken: dict[str, Any] = {"status": 500}
    with serving(stand_in(broken)) as broken_port:
        dead = f"http://127.0.0.1:{closed_port()}"
        sick = f"http://127.0.0.1:{broken_port}"
        base, answer, errors = patroni.ask_first([dead, sick, api["url"]], "/cluster", patroni.request)
    assert base == api["url"]
    assert [m["name"] for m in answer["members"]] == ["pg1", "pg2", "pg3"]
    assert [e["endpoint"] for e in errors] == [dead, sick]
    assert "HTTP 500" in errors[1]["error"]


def test_ask_first_stops_at_a_4xx_that_every_member_would_answer(api: dict[str, Any]) -> None:
    with pytest.raises(patroni.PatroniHTTPError) as caught:
        patroni.ask_first([api["url"], api["url"]], "/nothing", patroni.request)
    assert caught.value.status == 404
    assert len(api["requests"]) == 1  # the second endpoint was not asked


def test_ask_first_with_no_answer_lists_every_endpoint() -> None:
    dead = [f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}"]
    with pytest.raises(patroni.NoAnswerError) as caught:
        patroni.ask_first(dead, "/cluster", patroni.request)
    assert [e["endpoint"] for e in caught.value.errors] == dead
    assert "No Patroni REST API answered /cluster" in str(caught.value)


def test_a_host_that_accepts_but_never_answers_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers
        port = silent.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(patroni.PatroniConnectionError, match="timed out"):
            patroni.request(f"http://127.0.0.1:{port}/cluster", timeout=0.5)
    assert time.monotonic() - start < 5


def test_requests_carry_basic_auth_only_when_a_user_is_set(api: dict[str, Any]) -> None:
    patroni.request(api["url"] + "/config")
    patroni.request(api["url"] + "/config", user=USER, password=PASSWORD)
    assert [r[2] for r in api["requests"]] == [None, AUTH]


def test_errors_say_what_patronis_status_means_where_it_means_it() -> None:
    def error(path: str, status: int) -> str:
        return str(patroni.explain(patroni.PatroniHTTPError(f"http://pg1:8008{path}", status, "")))

    assert "restapi.authentication" in error("/config", 401)
    assert "restapi.allowlist" in error("/cluster", 403)
    assert "changed in etcd while this task ran" in error("/config", 409)
    assert "not bootstrapped" in error("/config", 503)
    assert error("/cluster", 503) == "http://pg1:8008/cluster: HTTP 503"  # no /config hint elsewhere


# ------------------------------------------------------------------------------------ /cluster
def test_summarize_reads_leader_replicas_sync_standbys_and_lag() -> None:
    summary = patroni.summarize(CLUSTER)
    assert summary["leader"] == "pg1"
    assert summary["replicas"] == ["pg2", "pg3"]
    assert summary["sync_standbys"] == ["pg2"]
    assert summary["healthy"] is True
    assert summary["problems"] == []
    assert summary["pending_restart"] == ["pg3"]
    assert [m["lag"] for m in summary["members"]] == [None, 0, 1024]
    assert summary["members"][0] == {
        "name": "pg1",
        "role": "leader",
        "state": "running",
        "host": "10.0.0.21",
        "port": 5432,
        "timeline": 3,
        "lag": None,
        "api_url": "http://10.0.0.21:8008/patroni",
        "pending_restart": False,
        "tags": {},
    }


def test_summarize_takes_streaming_replicas_and_unknown_lag() -> None:
    # Patroni 3.0.4 and later report a replica's replication state; a member without xlog_location
    # has lag "unknown".
    cluster = copy.deepcopy(CLUSTER)
    cluster["members"][1]["state"] = "streaming"
    cluster["members"][2]["lag"] = "unknown"
    summary = patroni.summarize(cluster)
    assert summary["healthy"] is True
    assert summary["members"][2]["lag"] is None


def test_a_stopped_member_makes_the_cluster_unhealthy_and_is_named() -> None:
    cluster = copy.deepcopy(CLUSTER)
    cluster["members"][2]["state"] = "stopped"
    summary = patroni.summarize(cluster)
    assert summary["healthy"] is False
    assert len(summary["problems"]) == 1
    assert "pg3 (replica) is stopped" in summary["problems"][0]
    assert "journalctl -u patroni" in summary["problems"][0]


def test_no_leader_lock_is_a_problem_and_the_leader_is_null() -> None:
    cluster = {"members": [dict(m, role="replica") for m in CLUSTER["members"]]}
    summary = patroni.summarize(cluster)
    assert summary["leader"] is None
    assert summary["healthy"] is False
    assert summary["problems"] == [p for p in summary["problems"] if "leader lock" in p]
    assert summary["replicas"] == ["pg1", "pg2", "pg3"]


def test_a_standby_leader_counts_as_the_leader() -> None:
    cluster = copy.deepcopy(CLUSTER)
    cluster["members"][0]["role"] = "standby_leader"
    summary = patroni.summarize(cluster)
    assert summary["leader"] == "pg1"
    assert "pg1" not in summary["replicas"]


def test_an_expected_member_missing_from_the_cluster_is_a_problem() -> None:
    summary = patroni.summarize(CLUSTER, ["pg1", "pg2", "pg3", "pg4"])
    assert summary["healthy"] is False
    assert len(summary["problems"]) == 1
    assert summary["problems"][0].startswith("Member pg4 is not in the cluster")
    assert patroni.summarize(CLUSTER, ["pg3", "pg1"])["healthy"] is True


def test_an_empty_cluster_is_a_problem_and_a_non_cluster_answer_an_error() -> None:
    summary = patroni.summarize({"members": []})
    assert summary["healthy"] is False
    assert "no members" in summary["problems"][0]
    with pytest.raises(patroni.PatroniError):
        patroni.summarize({"state": "running", "role": "master"})  # /patroni's answer, not /cluster's


def test_a_paused_cluster_says_so_and_stays_healthy() -> None:
    summary = patroni.summarize({**CLUSTER, "pause": True})
    assert summary["paused"] is True
    assert summary["healthy"] is True


# ------------------------------------------------------------------------------------ /config plans
def test_plan_patches_only_the_keys_that_differ_with_before_and_after() -> None:
    wanted = {"ttl": 30, "loop_wait": 5, "postgresql": {"parameters": {"max_connections": 200, "work_mem": "4MB"}}}
    patch, before, after = patroni.plan_patch(wanted, CONFIG)
    assert patch == {"loop_wait": 5, "postgresql": {"parameters": {"max_connections": 200}}}
    assert before == {"loop_wait": 10, "postgresql": {"parameters": {"max_connections": "100"}}}
    assert after == patch


@pytest.mark.parametrize(
    "wanted",
    [
        {"ttl": "30", "maximum_lag_on_failover": "1048576"},  # text and numbers alike
        {"postgresql": {"use_slots": "true", "parameters": {"max_connections": 100}}},
        {"postgresql": {"parameters": {"wal_log_hints": True, "hot_standby": "ON"}}},  # YAML's true is on there
        {"postgresql": {"parameters": {"unknown_setting": None}}, "standby_cluster": None},  # absent: no delete
    ],
)
def test_plan_finds_nothing_to_do_when_values_match_as_patroni_stores_them(wanted: dict[str, Any]) -> None:
    assert patroni.plan_patch(wanted, CONFIG) == ({}, {}, {})


def test_on_and_true_are_alike_only_inside_postgresql_parameters() -> None:
    # Outside of them Patroni reads the value itself, and the text "on" is no boolean to it.
    patch = patroni.plan_patch({"synchronous_mode": True}, {"synchronous_mode": "on"})[0]
    assert patch == {"synchronous_mode": True}


def test_plan_deletes_keys_set_to_null_that_are_present() -> None:
    wanted = {"maximum_lag_on_failover": None, "postgresql": {"parameters": {"work_mem": None}}}
    patch, before, after = patroni.plan_patch(wanted, CONFIG)
    assert patch == {"maximum_lag_on_failover": None, "postgresql": {"parameters": {"work_mem": None}}}
    assert before == {"maximum_lag_on_failover": 1048576, "postgresql": {"parameters": {"work_mem": "4MB"}}}
    assert "maximum_lag_on_failover" not in after


def test_a_key_patroni_holds_as_null_counts_as_absent() -> None:
    # Patroni's PATCH deletes only a key whose value is not null, and sets one that is.
    current = {"slots": None, "ttl": 30}
    assert patroni.plan_patch({"slots": None}, current)[0] == {}
    assert patroni.plan_patch({"slots": {"a": {"type": "physical"}}}, current)[0] == {
        "slots": {"a": {"type": "physical"}}
    }


def test_a_new_nested_key_is_sent_without_its_nulls() -> None:
    patch = patroni.plan_patch({"slots": {"keep": {"type": "physical"}, "gone": None}}, CONFIG)[0]
    assert patch == {"slots": {"keep": {"type": "physical"}}}
    assert patroni.plan_patch({"slots": {"gone": None}}, CONFIG)[0] == {}


@pytest.mark.parametrize(
    "wanted",
    [
        {"ttl": 40, "loop_wait": "5", "postgresql": {"parameters": {"max_connections": 300, "work_mem": None}}},
        {"postgresql": {"parameters": {"wal_log_hints": False, "shared_buffers": "1GB"}}, "retry_timeout": None},
        {"postgresql": "replaced by text", "slots": {"a": {"type": "physical", "b": None}}},
        {"synchronous_mode": True, "synchronous_node_count": "1", "ttl": 30.0},
    ],
)
def test_the_plan_applied_the_way_patroni_applies_it_leaves_nothing_to_do(wanted: dict[str, Any]) -> None:
    patch = patroni.plan_patch(wanted, CONFIG)[0]
    assert patch
    as_patroni = copy.deepcopy(CONFIG)
    patroni_patch_config(as_patroni, patch)
    assert patroni.plan_patch(wanted, as_patroni)[0] == {}
    assert patroni.apply_patch(CONFIG, patch) == as_patroni  # what check mode shows is what Patroni makes


# ------------------------------------------------------------------------------------ patroni_cluster_info
def test_cluster_info_reads_the_cluster_from_the_first_endpoint_that_answers(
    tmp_path: Path, api: dict[str, Any]
) -> None:
    dead = closed_port()
    args = {"endpoints": [f"127.0.0.1:{dead}", "127.0.0.1"], "port": api["port"], "expected_members": ["pg1", "pg3"]}
    proc, result = run_module(tmp_path, "patroni_cluster_info", args)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] is False
    assert result["answered"] is True
    assert result["endpoint"] == api["url"]
    assert [e["endpoint"] for e in result["errors"]] == [f"http://127.0.0.1:{dead}"]
    assert result["leader"] == "pg1"
    assert result["replicas"] == ["pg2", "pg3"]
    assert result["sync_standbys"] == ["pg2"]
    assert result["healthy"] is True
    assert result["problems"] == []
    assert result["pending_restart"] == ["pg3"]
    fields = ("name", "role", "state", "host", "port", "timeline", "lag")
    assert [tuple(m[f] for f in fields) for m in result["members"]] == [
        ("pg1", "leader", "running", "10.0.0.21", 5432, 3, None),
        ("pg2", "sync_standby", "running", "10.0.0.22", 5432, 3, 0),
        ("pg3", "replica", "running", "10.0.0.23", 5432, 3, 1024),
    ]  # fmt: skip
    assert asked(api, "GET") == [("GET", "/cluster", None, None)]


def test_cluster_info_reports_an_unhealthy_cluster_without_failing_in_check_mode(
    tmp_path: Path, api: dict[str, Any]
) -> None:
    api["cluster"]["members"][1]["state"] = "starting"
    args = {"endpoints": [api["url"]], "user": USER, "password": PASSWORD}
    proc, result = run_module(tmp_path, "patroni_cluster_info", args, "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["healthy"] is False
    assert result["problems"] == [p for p in result["problems"] if "pg2 (sync_standby) is starting" in p]
    assert len(result["problems"]) == 1
    assert asked(api, "GET")[0][2] == AUTH
    assert PASSWORD not in proc.stdout


def test_cluster_info_fails_when_no_endpoint_answers_unless_allowed(tmp_path: Path) -> None:
    args: dict[str, Any] = {"endpoints": ["127.0.0.1"], "port": closed_port(), "timeout": 2}
    proc, result = run_module(tmp_path, "patroni_cluster_info", args)
    assert proc.returncode != 0
    assert "No Patroni REST API answered /cluster" in result["msg"]
    proc, result = run_module(tmp_path, "patroni_cluster_info", {**args, "allow_no_answer": True})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (result["answered"], result["leader"], result["healthy"]) == (False, None, False)
    assert "No Patroni REST API answered" in result["problems"][0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"password": PASSWORD}, "password needs user"),
        ({"endpoints": ["pg1:http"]}, "endpoints"),
        ({"port": 0, "expected_members": [""]}, "port must be a port number"),
    ],
)
def test_cluster_info_refuses_bad_arguments_and_names_them(tmp_path: Path, args: dict[str, Any], named: str) -> None:
    proc, result = run_module(tmp_path, "patroni_cluster_info", args)
    assert proc.returncode != 0
    assert named in result["msg"]
    assert PASSWORD not in proc.stdout


# ------------------------------------------------------------------------------------ patroni_config
WANTED: dict[str, Any] = {
    "ttl": 30,
    "loop_wait": "10",
    "retry_timeout": 5,
    "maximum_lag_on_failover": None,
    "postgresql": {"parameters": {"max_connections": 200, "wal_log_hints": True, "work_mem": "8MB"}},
}
PATCH: dict[str, Any] = {
    "retry_timeout": 5,
    "maximum_lag_on_failover": None,
    "postgresql": {"parameters": {"max_connections": 200, "work_mem": "8MB"}},
}


def config_args(api: dict[str, Any], **more: Any) -> dict[str, Any]:  # noqa: ANN401
    return {"endpoints": [api["url"]], "user": USER, "password": PASSWORD, "config": WANTED, **more}


def test_config_patches_only_what_differs_with_auth_and_says_so(tmp_path: Path, api: dict[str, Any]) -> None:
    proc, result = run_module(tmp_path, "patroni_config", config_args(api), "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] is True
    assert asked(api, "PATCH") == [("PATCH", "/config", AUTH, PATCH)]
    assert result["patch"] == PATCH
    assert result["diff"]["before"] == {
        "retry_timeout": 10,
        "maximum_lag_on_failover": 1048576,
        "postgresql": {"parameters": {"max_connections": "100", "work_mem": "4MB"}},
    }
    assert result["diff"]["after"] == {
        "retry_timeout": 5,
        "postgresql": {"parameters": {"max_connections": 200, "work_mem": "8MB"}},
    }
    assert "maximum_lag_on_failover" not in api["config"]
    assert api["config"]["postgresql"]["parameters"]["hot_standby"] == "on"  # keys not named stay
    assert result["config"] == api["config"]
    assert result["pending_restart"] == ["pg3"]
    assert PASSWORD not in proc.stdout


def test_config_second_run_sends_no_patch(tmp_path: Path, api: dict[str, Any]) -> None:
    assert run_module(tmp_path, "patroni_config", config_args(api))[0].returncode == 0
    proc, result = run_module(tmp_path, "patroni_config", config_args(api))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] is False
    assert result["patch"] == {}
    assert len(asked(api, "PATCH")) == 1


def test_config_in_check_mode_sends_nothing_and_shows_the_result(tmp_path: Path, api: dict[str, Any]) -> None:
    proc, result = run_module(tmp_path, "patroni_config", config_args(api), "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] is True
    assert asked(api, "PATCH") == []
    assert api["config"] == CONFIG
    assert result["patch"] == PATCH
    assert result["config"]["postgresql"]["parameters"]["max_connections"] == 200
    assert "maximum_lag_on_failover" not in result["config"]


def test_config_asks_the_next_endpoint_when_one_has_no_configuration(tmp_path: Path, api: dict[str, Any]) -> None:
    lost: dict[str, Any] = {"cluster": CLUSTER, "config": None}  # 502: this Patroni has no config from etcd
    with ExitStack() as stack:
        lost_port = stack.enter_context(serving(stand_in(lost)))
        args = config_args(api, endpoints=[f"127.0.0.1:{lost_port}", api["url"]])
        proc, result = run_module(tmp_path, "patroni_config", args)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["endpoint"] == api["url"]
    assert "HTTP 502" in result["errors"][0]["error"]
    assert "not bootstrapped or etcd does not answer" in result["errors"][0]["error"]
    assert len(asked(api, "PATCH")) == 1
    assert asked(lost, "PATCH") == []


def test_config_with_a_wrong_password_fails_and_changes_nothing(tmp_path: Path, api: dict[str, Any]) -> None:
    proc, result = run_module(tmp_path, "patroni_config", config_args(api, password=WRONG))
    assert proc.returncode != 0
    assert "HTTP 401" in result["msg"]
    assert "restapi.authentication" in result["msg"]
    assert api["config"] == CONFIG
    assert WRONG not in proc.stdout


def test_config_fails_when_patroni_answers_the_patch_with_the_old_values(tmp_path: Path, api: dict[str, Any]) -> None:
    api["ignore_patch"] = True
    proc, result = run_module(tmp_path, "patroni_config", config_args(api))
    assert proc.returncode != 0
    assert "still differs" in result["msg"]
    assert result["left"] == PATCH  # everything the PATCH asked is still to do


# ------------------------------------------------------------------------------------ patroni_switchover
def summary_of(cluster: dict[str, Any]) -> dict[str, Any]:
    return dict(patroni.summarize(cluster))


def test_switchover_plan_without_a_candidate_lets_patroni_pick_a_synchronous_standby() -> None:
    plan = patroni.plan_switchover(summary_of(CLUSTER))
    assert plan == {"do": True, "leader": "pg1", "candidate": None, "eligible": ["pg2"], "problems": []}


def test_switchover_plan_to_the_leader_does_nothing() -> None:
    plan = patroni.plan_switchover(summary_of(CLUSTER), "pg1")
    assert (plan["do"], plan["problems"]) == (False, [])


def test_switchover_plan_without_synchronous_mode_takes_any_running_replica() -> None:
    cluster = copy.deepcopy(CLUSTER)
    cluster["members"][1]["role"] = "replica"
    del cluster["members"][2]["tags"]
    plan = patroni.plan_switchover(summary_of(cluster), "pg3")
    assert (plan["do"], plan["eligible"]) == (True, ["pg3"])
    assert patroni.plan_switchover(summary_of(cluster))["eligible"] == ["pg2", "pg3"]


@pytest.mark.parametrize(
    ("change", "candidate", "named"),
    [
        ({}, "pg3", "pg3 is tagged nofailover"),
        ({"tags": {}}, "pg3", "pg3 is not a synchronous standby (pg2 is)"),
        ({}, "pg9", "pg9 is not a member of the cluster (members: pg1, pg2, pg3)"),
        ({"state": "stopped"}, None, "Member pg3 (replica) is stopped"),
        ({"state": "stopped"}, None, "A switchover needs a healthy cluster"),
    ],
)
def test_switchover_plan_refuses_what_patroni_would_and_names_the_fix(
    change: dict[str, Any], candidate: str | None, named: str
) -> None:
    cluster = copy.deepcopy(CLUSTER)
    cluster["members"][2].update(change)
    plan = patroni.plan_switchover(summary_of(cluster), candidate)
    assert plan["do"] is False
    assert any(named in p for p in plan["problems"]), plan["problems"]


def test_switchover_plan_refuses_a_paused_cluster_a_scheduled_switchover_and_no_replica() -> None:
    cluster = {**copy.deepcopy(CLUSTER), "pause": True, "scheduled_switchover": {"at": "2026-12-06T03:00:00+00:00"}}
    problems = " ".join(patroni.plan_switchover(summary_of(cluster))["problems"])
    assert "paused (maintenance mode): `patronictl resume` first" in problems
    assert "A switchover is scheduled already" in problems
    alone = {"members": [CLUSTER["members"][0]]}
    assert "no running replica to switch over to" in " ".join(patroni.plan_switchover(summary_of(alone))["problems"])


def switchover_args(api: dict[str, Any], **more: Any) -> dict[str, Any]:  # noqa: ANN401
    return {"endpoints": [api["url"]], "user": USER, "password": PASSWORD, "wait_timeout": 5, **more}


def test_switchover_posts_once_with_auth_and_waits_for_the_new_leader(tmp_path: Path, api: dict[str, Any]) -> None:
    proc, result = run_module(tmp_path, "patroni_switchover", switchover_args(api, candidate="pg2"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] is True
    assert (result["leader_before"], result["leader"]) == ("pg1", "pg2")
    assert result["answer"] == 'Successfully switched over to "pg2"'
    assert asked(api, "POST") == [("POST", "/switchover", AUTH, {"leader": "pg1", "candidate": "pg2"})]
    assert PASSWORD not in proc.stdout
    # Again, to the member that leads now: nothing to do, nothing sent.
    proc, result = run_module(tmp_path, "patroni_switchover", switchover_args(api, candidate="pg2"))
    assert (proc.returncode, result["changed"], len(asked(api, "POST"))) == (0, False, 1)


def test_switchover_in_check_mode_names_who_would_lead_and_sends_nothing(tmp_path: Path, api: dict[str, Any]) -> None:
    proc, result = run_module(tmp_path, "patroni_switchover", switchover_args(api), "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (result["changed"], result["leader"], result["eligible"]) == (True, "pg1", ["pg2"])
    assert asked(api, "POST") == []


def test_switchover_refused_by_the_plan_sends_nothing(tmp_path: Path, api: dict[str, Any]) -> None:
    proc, result = run_module(tmp_path, "patroni_switchover", switchover_args(api, candidate="pg3"))
    assert proc.returncode != 0
    assert "No switchover: pg3 is tagged nofailover" in result["msg"]
    assert asked(api, "POST") == []


@pytest.mark.parametrize(
    ("outcome", "named"),
    [
        ("refuse", "Patroni refused the switchover: http://127.0.0.1:{port}/switchover: HTTP 412"),
        ("unknown", "'Switchover status unknown', but the cluster was not whole under a new leader within 2.0 s"),
        ("stuck", "but the cluster was not whole under a new leader within 2.0 s"),
    ],
)
def test_switchover_fails_when_the_leader_does_not_move(
    tmp_path: Path, api: dict[str, Any], outcome: str, named: str
) -> None:
    api["switchover"] = outcome
    proc, result = run_module(tmp_path, "patroni_switchover", switchover_args(api, wait_timeout=2))
    assert proc.returncode != 0
    assert named.format(port=api["port"]) in result["msg"]
    assert len(asked(api, "POST")) == 1  # never sent twice
    assert result["leader"] == "pg1"


# ------------------------------------------------------------------------------------ filters
@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([], ["No etcd members are set", "put three or more hosts"]),
        (["etcd1"], ["has 1 host, fewer than three", "put three or more hosts"]),
        (["etcd1", "etcd2"], ["has 2 hosts, fewer than three", "an odd number"]),
        (["e1", "e2", "e3", "e4"], ["4 hosts, an even number", "put 3 or 5 hosts"]),
        (["e1", "e2", "e3", "e4", "e5", "e6"], ["survives losing 2", "needs 4 to answer instead of 3"]),
    ],
)
def test_etcd_member_problems_name_the_count_and_the_fix(members: list[str], expected: list[str]) -> None:
    problems = ha.etcd_member_problems(members)
    assert len(problems) == 1
    for words in expected:
        assert words in problems[0]


@pytest.mark.parametrize("members", [["e1", "e2", "e3"], ["e1", "e2", "e3", "e4", "e5"]])
def test_etcd_member_problems_accept_an_odd_count_of_three_or_more(members: list[str]) -> None:
    assert ha.etcd_member_problems(members) == []


def test_etcd_member_problems_count_a_host_listed_twice_once() -> None:
    problems = ha.etcd_member_problems(["e1", "e2", "e2", "e3"])
    assert problems == ["The etcd group lists e2 more than once: list each host once."]
    with pytest.raises(AnsibleFilterError):
        ha.etcd_member_problems("e1,e2,e3")


def test_etcd_member_problems_name_the_callers_variable() -> None:
    problems = ha.etcd_member_problems(["e1", "e2"], "etcd_members")
    assert problems[0].startswith("etcd_members has 2 hosts, fewer than three")
    assert problems[0].endswith("in etcd_members.")
    assert ha.etcd_member_problems(["e1", "e1", "e2", "e3"], "etcd_members")[0].startswith("etcd_members lists e1")


def test_patroni_timing_defaults_have_no_problem() -> None:
    assert ha.patroni_timing_problems(30, 10, 10) == []
    assert ha.patroni_timing_problems("20", "4", "8") == []  # -e passes text; 4 + 2 x 8 = 20 is allowed


def test_patroni_timing_ttl_below_20_names_the_minimum() -> None:
    problems = ha.patroni_timing_problems(19, 1, 3)
    assert len(problems) == 1
    assert problems[0].startswith("patroni_ttl is 19: Patroni's minimum is 20 seconds")
    assert "set patroni_ttl to 20 or more" in problems[0]


def test_patroni_timing_loop_wait_and_two_retries_beyond_ttl_names_all_three() -> None:
    problems = ha.patroni_timing_problems(30, 10, 11)
    assert len(problems) == 1
    assert "10 + 2 x 11 = 32 s is more than patroni_ttl (30 s)" in problems[0]
    assert "raise patroni_ttl to 32 or more" in problems[0]
    assert "patroni_loop_wait or patroni_retry_timeout" in problems[0]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ((30, 0, 10), "patroni_loop_wait is 0: it must be 1 second or more"),
        ((30, 10, -1), "patroni_retry_timeout is -1"),
        ((-30, 10, 10), "patroni_ttl is -30"),
        (("thirty", 10, 10), "patroni_ttl must be a whole number of seconds"),
        ((30, True, 10), "patroni_loop_wait must be a whole number"),
        ((30, 10, 2.5), "patroni_retry_timeout must be a whole number"),
    ],
)
def test_patroni_timing_refuses_values_that_are_not_positive_whole_seconds(
    values: tuple[Any, Any, Any], named: str
) -> None:
    problems = ha.patroni_timing_problems(*values)
    assert len(problems) == 1  # no rule is checked on a value that is not there
    assert problems[0].startswith(named)


def test_patroni_timing_messages_name_the_callers_variables() -> None:
    names = {"ttl": "postgresql_patroni_ttl", "loop_wait": "postgresql_patroni_loop_wait"}
    problems = ha.patroni_timing_problems(15, 10, 10, names)
    assert problems[0].startswith("postgresql_patroni_ttl is 15")
    assert "postgresql_patroni_loop_wait + 2 x patroni_retry_timeout" in problems[1]
    assert "raise postgresql_patroni_ttl to 30 or more" in problems[1]


CLIENTS = [
    {"name": "api", "hosts": 3, "processes_per_host": 5, "connections_per_process": 10},
    {"name": "celery", "hosts": 2, "processes_per_host": 4, "connections_per_process": 2},
    {"name": "beat", "hosts": 1, "processes_per_host": 1, "connections_per_process": 1},
]


def test_connection_budget_adds_every_client_and_says_when_it_fits() -> None:
    budget = ha.connection_budget(CLIENTS, 200, 3)
    assert budget["needed"] == 150 + 16 + 1
    assert budget["available"] == 197
    assert budget["fits"] is True
    assert budget["parts"] == [
        "api: 3 hosts x 5 processes x 10 connections = 150",
        "celery: 2 hosts x 4 processes x 2 connections = 16",
        "beat: 1 host x 1 process x 1 connection = 1",
    ]
    assert "167" in budget["message"]
    assert "30 to spare" in budget["message"]


def test_connection_budget_that_does_not_fit_names_the_numbers_and_the_fix() -> None:
    budget = ha.connection_budget(CLIENTS, "100", 3)
    assert (budget["needed"], budget["available"], budget["fits"]) == (167, 97, False)
    message = budget["message"]
    assert "need 167 connections but only 97 are available" in message
    assert "postgresql_max_connections 100 minus 3 reserved" in message
    assert "raise postgresql_max_connections to 170 or more" in message
    assert "lower the pool size or the workers" in message
    assert "(api 150, celery 16)" in message


def test_connection_budget_exactly_full_fits() -> None:
    budget = ha.connection_budget(CLIENTS[:1], 153, 3)
    assert (budget["needed"], budget["available"], budget["fits"]) == (150, 150, True)


@pytest.mark.parametrize(
    ("clients", "max_connections", "named"),
    [
        ([{"name": "api", "hosts": 3, "processes_per_host": 5}], 100, "connections_per_process of client 'api'"),
        ([{"name": "api", "hosts": -1, "processes_per_host": 1, "connections_per_process": 1}], 100, "hosts"),
        ([{"hosts": 1, "processes_per_host": 1, "connections_per_process": 1}], 100, "with a name"),
        (CLIENTS, "many", "max_connections must be a whole number"),
        ({"name": "api"}, 100, "clients must be a list"),
    ],
)
def test_connection_budget_refuses_what_it_cannot_count(clients: Any, max_connections: Any, named: str) -> None:  # noqa: ANN401
    with pytest.raises(AnsibleFilterError, match=named):
        ha.connection_budget(clients, max_connections, 3)


def test_filters_run_in_a_playbook_by_their_fqcn(tmp_path: Path) -> None:
    task = {
        "ansible.builtin.debug": {
            "msg": "{{ {'etcd': ['e1', 'e2'] | tutormax.cluster.etcd_member_problems,"
            " 'timing': 30 | tutormax.cluster.patroni_timing_problems(10, 10),"
            " 'budget': clients | tutormax.cluster.connection_budget(100, 3)} }}"
        },
        "vars": {"clients": CLIENTS},
    }
    proc, result = run_task(tmp_path, task)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "fewer than three" in result["msg"]["etcd"][0]
    assert result["msg"]["timing"] == []
    assert result["msg"]["budget"]["fits"] is False
