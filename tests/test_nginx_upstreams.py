"""The load balancer's pool in one implementation: plugins/module_utils/nginx.py, the nginx_upstreams
and nginx_pool_info modules, the nginx_lb filters, and the role's upstream.yml and pool_info.yml.

The functions are called directly. The modules run end to end through ansible-playbook on
localhost, with fake `nginx` and `systemctl` first on PATH (they log their arguments; nginx -t
refuses when the test says so) and a stand-in HTTP server for the load balancer's /ping and
/health. The same on real hosts, with a real nginx: the nginx_lb Molecule scenario.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from conftest import REPO, JsonHandler, collection_import, serving

nginx = collection_import("plugins.module_utils.nginx")
filters = collection_import("plugins.filter.nginx_lb").FilterModule().filters()

BACKENDS = [{"name": "api1", "address": "10.0.0.11"}, {"name": "api2", "address": "10.0.0.12"}]
# What roles/nginx_lb/templates/etc/nginx/conf.d/tutormax-upstreams.conf.j2 rendered (the role's last
# template version) for two backends, api1 drained and api2 weighted 3: hosts written by it see no
# change, and so no reload, when the module takes over.
TEMPLATE_OUTPUT = """#
# Ansible managed
#
# TutorMax API backends. The rolling update rewrites only this file (tasks_from: upstream.yml) to
# drain or weight a backend, then reloads nginx gracefully.

# HTTP: fewest active connections wins; shared zone so every worker sees the same failures.
upstream tutormax_api {
    zone tutormax_api 64k;
    least_conn;
    server 10.0.0.11:8000 max_fails=3 fail_timeout=10s down;  # api1
    server 10.0.0.12:8000 max_fails=3 fail_timeout=10s weight=3;  # api2
    keepalive 32;
    keepalive_timeout 4s;
}

# WebSockets: the same hosts, a client address always lands on the same one (consistent hashing
# moves only that host's clients when one is drained).
upstream tutormax_ws {
    zone tutormax_ws 64k;
    hash $remote_addr consistent;
    server 10.0.0.11:8000 max_fails=3 fail_timeout=10s down;  # api1
    server 10.0.0.12:8000 max_fails=3 fail_timeout=10s weight=3;  # api2
}
"""


def merged(state: dict[str, Any] | None = None, backends: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return list(nginx.apply_state(nginx.backend_list(backends or BACKENDS, 8000), state or {}))


# ------------------------------------------------------------------------------------ render and parse
def test_render_equals_what_the_role_template_wrote() -> None:
    text = nginx.render(merged({"api1": {"down": True}, "api2": {"weight": 3}}), 3, "10s", 32, "4s")
    assert text == TEMPLATE_OUTPUT


def test_render_writes_both_upstreams_with_their_balancing_and_the_same_servers() -> None:
    text = nginx.render(merged({"api2": {"down": "yes"}}), max_fails=5, fail_timeout="7s", keepalive=8)
    api = text.split("upstream tutormax_api {")[1].split("}")[0]
    ws = text.split("upstream tutormax_ws {")[1].split("}")[0]
    assert "least_conn;" in api
    assert "zone tutormax_api 64k;" in api
    assert "keepalive 8;" in api
    assert "keepalive_timeout 4s;" in api
    assert "hash $remote_addr consistent;" in ws
    lines = [
        "    server 10.0.0.11:8000 max_fails=5 fail_timeout=7s;  # api1",
        "    server 10.0.0.12:8000 max_fails=5 fail_timeout=7s down;  # api2",
    ]
    assert [line for line in api.splitlines() if "server " in line] == lines
    assert [line for line in ws.splitlines() if "server " in line] == lines


def test_render_brackets_ipv6_addresses_and_keeps_each_port() -> None:
    backends: list[dict[str, Any]] = [
        {"name": "api1", "address": "fd00::11", "port": 9000},
        {"name": "api2", "address": "api2.internal"},
    ]
    text = nginx.render(merged(backends=backends))
    assert "    server [fd00::11]:9000 max_fails=3 fail_timeout=10s;  # api1" in text
    assert "    server api2.internal:8000 max_fails=3 fail_timeout=10s;  # api2" in text
    servers = nginx.parse_servers(text)
    assert [(s["address"], s["port"]) for s in servers] == [("fd00::11", 9000), ("api2.internal", 8000)]


def test_parse_reads_the_pool_of_the_first_upstream_back() -> None:
    text = nginx.render(merged({"api1": {"down": True}, "api2": {"weight": 3}}))
    assert nginx.parse_pool(text) == {"in_service": ["api2"], "down": ["api1"]}
    servers = nginx.parse_servers(text)
    assert [(s["name"], s["weight"], s["down"]) for s in servers] == [("api1", 1, True), ("api2", 3, False)]


def test_parse_takes_only_the_first_upstream_unless_one_is_named() -> None:
    first = nginx.render(merged({"api1": {"down": True}})).split("# WebSockets")[0]
    second = nginx.render(merged({"api2": {"down": True}})).split("# WebSockets")[1]
    text = first + second
    assert nginx.parse_pool(text) == {"in_service": ["api2"], "down": ["api1"]}
    assert nginx.parse_pool(text, "tutormax_ws") == {"in_service": ["api1"], "down": ["api2"]}


def test_parse_names_servers_without_a_comment_by_their_address() -> None:
    text = "upstream tutormax_api { server 10.0.0.1:8000; server 10.0.0.2:8000 down; }\n"
    assert nginx.parse_pool(text) == {"in_service": ["10.0.0.1:8000"], "down": ["10.0.0.2:8000"]}


@pytest.mark.parametrize("text", ["", "# nothing here\n", "server 10.0.0.1:8000;  # api1\n"])
def test_parse_of_a_file_without_an_upstream_is_an_empty_pool(text: str) -> None:
    assert nginx.parse_pool(text) == {"in_service": [], "down": []}


# ------------------------------------------------------------------------------------ the checks
ROLE = {"backends": "nginx_lb_backends", "state": "nginx_lb_backend_state"}
# case -> (backends, state, text every message of the case must hold)
PROBLEMS: dict[str, tuple[list[dict[str, Any]], dict[str, Any], list[str]]] = {
    "empty": ([], {}, ["nginx_lb_backends is empty and the group api has no hosts"]),
    "no-address": ([{"name": "api1", "address": ""}], {}, ["these backends have no address: api1", "api hosts"]),
    "unknown-name": (BACKENDS, {"api9": {"down": True}}, ["nginx_lb_backend_state names unknown backends: api9"]),
    "weight-zero": (BACKENDS, {"api1": {"weight": 0}}, ["nginx_lb_backend_state and nginx_lb_backends weights"]),
    "weight-not-a-number": (BACKENDS, {"api1": {"weight": "x"}}, ["weights must be 1 or more (api1: x)"]),
    "all-down": (
        BACKENDS,
        {"api1": {"down": True}, "api2": {"down": "true"}},
        ["nginx_lb_backend_state leaves no backend in service"],
    ),
    "state-sets-the-address": (BACKENDS, {"api1": {"address": "10.9.9.9"}}, ["nginx_lb_backend_state[api1]"]),
    "state-not-a-dict": (BACKENDS, {"api1": "down"}, ["nginx_lb_backend_state[api1] must be a dict"]),
    "name-twice": ([*BACKENDS, BACKENDS[0]], {}, ["nginx_lb_backends names these backends more than once: api1"]),
    "directive-in-a-name": (
        [{"name": "api1; server evil:80", "address": "10.0.0.11"}],
        {},
        ["nginx_lb_backends has names or addresses nginx cannot take"],
    ),
    "port-zero": ([{"name": "api1", "address": "10.0.0.11", "port": 0}], {}, ["nginx_lb_backends ports"]),
}


@pytest.mark.parametrize("case", list(PROBLEMS))
def test_problems_name_the_role_variables(case: str) -> None:
    backends, state, expected = PROBLEMS[case]
    found = nginx.problems(nginx.backend_list(backends, 8000), state, "api", ROLE)
    assert len(found) == 1, found
    for text in expected:
        assert text in found[0]


def test_problems_name_the_module_arguments_by_default() -> None:
    found = nginx.problems(nginx.backend_list(BACKENDS, 8000), {"api9": {"down": True}})
    assert found == ["backend_state names unknown backends: api9 (known: api1, api2)"]
    assert nginx.problems([]) == ["backends is empty"]


@pytest.mark.parametrize(
    "state", [{}, {"api2": {"down": True}}, {"api1": {"weight": 3}, "api2": {"down": "no"}}, {"api1": {"weight": "2"}}]
)
def test_no_problem_while_a_backend_stays_in_service(state: dict[str, Any]) -> None:
    assert nginx.problems(nginx.backend_list(BACKENDS, 8000), state, "api", ROLE) == []


def test_settings_are_checked_by_name() -> None:
    found = nginx.check_settings(-1, "10 seconds", 0, "4s")
    assert [f.split(" ")[0] for f in found] == ["max_fails", "keepalive", "fail_timeout"]
    assert nginx.check_settings(3, "10s", 32, "500ms") == []


# ------------------------------------------------------------------------------------ the filters
def test_backends_filter_takes_the_given_list_and_fills_port_weight_down() -> None:
    out = filters["nginx_lb_backends"]([{"name": "api1", "address": "10.0.0.11", "weight": 2}], 8001, ["x"], {})
    assert out == [{"name": "api1", "address": "10.0.0.11", "port": 8001, "weight": 2, "down": False, "colour": ""}]


def test_backends_filter_uses_the_group_hosts_default_ipv4_addresses() -> None:
    hostvars = {
        "api1": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.11"}}},
        "api2": {"ansible_facts": {}},
    }
    out = filters["nginx_lb_backends"]([], 8000, ["api1", "api2", "api3"], hostvars)
    assert [(b["name"], b["address"]) for b in out] == [("api1", "10.0.0.11"), ("api2", ""), ("api3", "")]
    problems = filters["nginx_lb_backend_problems"](out, {}, "api")
    assert problems == [
        "these backends have no address: api2, api3 (give it in nginx_lb_backends, or gather facts of the api "
        "hosts in the play first)"
    ]


def test_problems_filter_names_the_role_variables() -> None:
    out = filters["nginx_lb_backend_problems"](BACKENDS, {"api1": {"down": True}, "api2": {"down": True}}, "api")
    assert out == [
        "nginx_lb_backend_state leaves no backend in service: at least one backend must stay in service (not down)"
    ]


# ------------------------------------------------------------------------------------ on the host
class Lb(JsonHandler):
    """The load balancer as the module sees it: /ping, and /health answered by the API instances in
    ``answers`` in turn (``header`` puts the instance in X-Instance-Id instead of the JSON)."""

    answers: ClassVar[list[str]] = ["api1"]
    status = 200
    header = False
    asks: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        Lb.asks[self.path] = Lb.asks.get(self.path, 0) + 1
        if self.path == "/ping":
            self.send_json(200, {"pong": True})
            return
        instance = Lb.answers[(Lb.asks[self.path] - 1) % len(Lb.answers)]
        if Lb.header:
            self.instance_id = instance
            self.send_json(Lb.status, {"status": "degraded"})
        else:
            self.send_json(Lb.status, {"status": "healthy", "instance_id": instance})


@pytest.fixture
def lb_port() -> Iterator[int]:
    Lb.answers, Lb.status, Lb.header, Lb.asks = ["api1"], 200, False, {}
    with serving(Lb) as port:
        yield port


@pytest.mark.parametrize("header", [False, True])
def test_served_sees_the_instance_in_the_json_or_the_header_of_any_status(lb_port: int, header: bool) -> None:
    Lb.answers, Lb.status, Lb.header = ["api1", "api1", "api2"], 503, header
    result = nginx.served(lb_port, "api2", tries=5, delay=0)
    assert result == {"instance": "api2", "seen": True, "requests": 3, "answered_by": ["api1", "api2"]}


def test_served_gives_up_after_the_tries(lb_port: int) -> None:
    result = nginx.served(lb_port, "api3", tries=4, delay=0)
    assert result == {"instance": "api3", "seen": False, "requests": 4, "answered_by": ["api1"]}
    assert Lb.asks["/health"] == 4


def test_served_reports_a_load_balancer_that_does_not_answer() -> None:
    with serving(Lb) as port:
        pass  # closed again: nothing listens on the port now
    result = nginx.served(port, "api1", tries=2, delay=0)
    assert result["seen"] is False
    assert result["answered_by"] == ["ConnectionRefusedError"]


def test_write_atomic_leaves_0644_and_no_temporary_file(tmp_path: Path) -> None:
    dest = tmp_path / "up.conf"
    dest.write_text("old\n")
    dest.chmod(0o600)
    nginx.write_atomic(dest, b"new\n")
    assert dest.read_bytes() == b"new\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.conf"]


# ------------------------------------------------------------------------------------ the modules, end to end
@pytest.fixture
def host(tmp_path: Path, lb_port: int) -> dict[str, Any]:
    """Fake nginx and systemctl (log their arguments; nginx -t exits with nginx.rc when that file
    exists), an upstream file written by an earlier run, and the stand-in's port."""
    bin_dir, log = tmp_path / "bin", tmp_path / "commands.log"
    bin_dir.mkdir()
    for name in ("nginx", "systemctl"):
        script = bin_dir / name
        script.write_text(
            f'#!/bin/sh\necho "{name} $*" >> {log}\n'
            f'if [ "{name}" = nginx ] && [ -f {bin_dir}/nginx.rc ]; then\n'
            '  echo "nginx: [emerg] invalid parameter \\"evil\\"" >&2\n'
            f"  exit $(cat {bin_dir}/nginx.rc)\nfi\nexit 0\n"
        )
        script.chmod(0o755)
    dest = tmp_path / "tutormax-upstreams.conf"
    dest.write_text(nginx.render(merged()))
    dest.chmod(0o644)
    return {"tmp": tmp_path, "bin": bin_dir, "log": log, "dest": dest, "port": lb_port}


def commands(host: dict[str, Any]) -> list[str]:
    log: Path = host["log"]
    return log.read_text().splitlines() if log.exists() else []


def upstreams_task(host: dict[str, Any], **args: Any) -> dict[str, Any]:  # noqa: ANN401 - module arguments
    return {
        "name": "Write the upstreams",
        "tutormax.cluster.nginx_upstreams": {
            "dest": str(host["dest"]),
            "backends": BACKENDS,
            "status_port": host["port"],
            "ping_timeout": 3,
            **args,
        },
        "register": "result",
        "ignore_errors": True,
    }


def play(
    host: dict[str, Any], tasks: list[dict[str, Any]], *args: str, json_out: bool = True, extra: str = ""
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook on localhost (connection local) with the fakes first on PATH."""
    tmp: Path = host["tmp"]
    inventory = {
        "all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    }
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    plays = [
        {
            "name": "Run the tasks on the fake load balancer",
            "hosts": "localhost",
            "gather_facts": False,
            "environment": {"PATH": f"{host['bin']}{os.pathsep}{os.environ['PATH']}"},
            "tasks": tasks,
        }
    ]
    (tmp / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"} | {"ANSIBLE_NOCOLOR": "1"}
    if json_out:
        env |= {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json"}
    extra_args = ["-e", extra] if extra else []
    return subprocess.run(
        ["ansible-playbook", "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml"), *extra_args, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def results(run: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """Each task's result on localhost, in order."""
    assert run.stdout.startswith("{"), run.stdout + run.stderr
    report = json.loads(run.stdout)
    return [t["hosts"]["localhost"] for t in report["plays"][0]["tasks"]]


def test_module_writes_checks_reloads_and_a_second_run_changes_nothing(host: dict[str, Any]) -> None:
    task = upstreams_task(host, backend_state={"api2": {"down": True}}, max_fails=5)
    first, second = results(play(host, [task, task]))
    assert (first.get("failed"), first["changed"], first["reloaded"]) == (None, True, True), first
    expected = nginx.render(merged({"api2": {"down": True}}), max_fails=5)
    assert host["dest"].read_text() == expected
    assert stat.S_IMODE(host["dest"].stat().st_mode) == 0o644
    assert first["pool"] == {
        "before": {"in_service": ["api1", "api2"], "down": []},
        "after": {"in_service": ["api1"], "down": ["api2"]},
    }
    assert first["served"] is None
    assert Lb.asks.get("/ping", 0) >= 1
    assert (second.get("failed"), second["changed"], second["reloaded"]) == (None, False, False), second
    # nginx -t and the reload once, for the first run only.
    assert commands(host) == ["nginx -t -q", "systemctl reload nginx"]
    assert [p.name for p in host["tmp"].iterdir() if p.name.startswith(".")] == []


def test_module_creates_a_missing_file(host: dict[str, Any]) -> None:
    host["dest"].unlink()
    (result,) = results(play(host, [upstreams_task(host, validate=False, reload=False)]))
    assert (result.get("failed"), result["changed"], result["reloaded"]) == (None, True, False), result
    assert host["dest"].read_text() == nginx.render(merged())
    assert commands(host) == []


def test_check_mode_reports_the_change_and_touches_nothing(host: dict[str, Any]) -> None:
    before = host["dest"].read_bytes()
    drain, same = results(
        play(host, [upstreams_task(host, backend_state={"api1": {"down": True}}), upstreams_task(host)], "--check")
    )
    assert (drain.get("failed"), drain["changed"], drain["reloaded"]) == (None, True, False), drain
    assert drain["pool"]["after"] == {"in_service": ["api2"], "down": ["api1"]}
    assert (same.get("failed"), same["changed"]) == (None, False), same
    assert host["dest"].read_bytes() == before
    assert commands(host) == []
    assert Lb.asks == {}


def test_diff_shows_the_server_lines_that_change(host: dict[str, Any]) -> None:
    task = upstreams_task(host, backend_state={"api2": {"down": True}})
    run = play(host, [task], "--check", "--diff", json_out=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "-    server 10.0.0.12:8000 max_fails=3 fail_timeout=10s;  # api2" in run.stdout
    assert "+    server 10.0.0.12:8000 max_fails=3 fail_timeout=10s down;  # api2" in run.stdout
    assert "    server 10.0.0.11:8000" in run.stdout


def test_refusal_by_nginx_puts_the_previous_file_back_and_does_not_reload(host: dict[str, Any]) -> None:
    (host["bin"] / "nginx.rc").write_text("1\n")
    before = host["dest"].read_bytes()
    (result,) = results(play(host, [upstreams_task(host, backend_state={"api2": {"down": True}}, backup=True)]))
    assert result.get("failed") is True, result
    assert "refused by nginx -t" in result["msg"]
    assert 'invalid parameter "evil"' in result["msg"]
    assert result["changed"] is False
    assert host["dest"].read_bytes() == before
    assert commands(host) == ["nginx -t -q"]
    assert sorted(p.name for p in host["tmp"].iterdir() if p.name.startswith(host["dest"].name)) == [
        host["dest"].name
    ]  # neither the new file nor a backup left beside it


def test_wait_served_waits_until_the_instance_answers_through_the_lb(host: dict[str, Any]) -> None:
    Lb.answers = ["api1", "api1", "api1", "api2"]
    task = upstreams_task(host, wait_served={"port": host["port"], "instance": "api2", "tries": 10, "delay": 0})
    (result,) = results(play(host, [task]))
    assert result.get("failed") is None, result
    assert result["changed"] is False  # the pool was right already: it only waited
    assert result["served"] == {"instance": "api2", "seen": True, "requests": 4, "answered_by": ["api1", "api2"]}


def test_wait_served_fails_when_the_instance_never_answers(host: dict[str, Any]) -> None:
    task = upstreams_task(
        host, backend_state={"api2": {"weight": 2}}, wait_served={"port": host["port"], "instance": "api2", "tries": 3}
    )
    (result,) = results(play(host, [task]))
    assert result.get("failed") is True, result
    assert "api2 did not answer /health" in result["msg"]
    assert "answered by: api1" in result["msg"]
    assert result["served"]["requests"] == 3
    assert result["reloaded"] is True  # the pool was written and loaded; only the wait failed
    assert Lb.asks["/health"] == 3


# argument -> (module arguments, text the message must hold)
BAD_ARGUMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "backends-empty": ({"backends": []}, "backends is empty"),
    "backend-state-unknown": (
        {"backend_state": {"api9": {"down": True}}},
        "backend_state names unknown backends: api9",
    ),
    "backend-state-all-down": (
        {"backend_state": {"api1": {"down": True}, "api2": {"down": True}}},
        "backend_state leaves no backend in service",
    ),
    "backend-without-name": ({"backends": [{"address": "10.0.0.1"}]}, "name"),
    "fail-timeout": ({"fail_timeout": "10 seconds"}, "fail_timeout must be a duration"),
    "keepalive": ({"keepalive": 0}, "keepalive must be 1 or more"),
    "status-port": ({"status_port": 70000}, "status_port must be a port number"),
    "wait-served-tries": ({"wait_served": {"port": 80, "instance": "api1", "tries": 0}}, "wait_served.tries"),
    "wait-served-instance": ({"wait_served": {"port": 80}}, "instance"),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, Any]], Path]:
    """One run with every bad argument set, each in its own task; (case -> result, the dest)."""
    tmp = tmp_path_factory.mktemp("nginx_upstreams_arguments")
    (tmp / "bin").mkdir()
    fake: dict[str, Any] = {"tmp": tmp, "bin": tmp / "bin", "dest": tmp / "up.conf", "port": 1}
    tasks = [upstreams_task(fake, **args) | {"name": case} for case, (args, _) in BAD_ARGUMENTS.items()]
    return dict(zip(BAD_ARGUMENTS, results(play(fake, tasks)), strict=True)), fake["dest"]


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_fail_naming_the_argument_and_write_nothing(
    refusals: tuple[dict[str, dict[str, Any]], Path], case: str
) -> None:
    result = refusals[0][case]
    assert result.get("failed") is True, result
    assert BAD_ARGUMENTS[case][1] in result["msg"], result["msg"]
    assert not refusals[1].exists()


def test_pool_info_reads_the_pool_and_a_missing_file_is_an_empty_pool(host: dict[str, Any]) -> None:
    host["dest"].write_text(nginx.render(merged({"api1": {"down": True}})))
    tasks = [
        {"name": "Read", "tutormax.cluster.nginx_pool_info": {"dest": str(host["dest"])}},
        {"name": "Read none", "tutormax.cluster.nginx_pool_info": {"dest": str(host["tmp"] / "absent.conf")}},
    ]
    present, absent = results(play(host, tasks, "--check"))
    assert (present["changed"], present["exists"]) == (False, True)
    assert present["pool"] == {"in_service": ["api2"], "down": ["api1"]}
    assert present["servers"][0] == {
        "name": "api1",
        "address": "10.0.0.11",
        "port": 8000,
        "weight": 1,
        "down": True,
        "backup": False,
    }
    assert (absent["exists"], absent["pool"]) == (False, {"in_service": [], "down": []})


# ------------------------------------------------------------------------------------ the role's entry points
def test_role_upstream_entry_drains_waits_and_pool_info_sets_nginx_lb_pool(host: dict[str, Any]) -> None:
    Lb.answers = ["api1", "api2"]
    role = "tutormax.cluster.nginx_lb"
    tasks = [
        {
            "name": "Put api2 back weighted 2 and wait for it",
            "ansible.builtin.include_role": {"name": role, "tasks_from": "upstream.yml"},
            "vars": {
                "nginx_lb_backends": BACKENDS,
                "nginx_lb_backend_state": {"api2": {"weight": 2}, "api1": {"down": True}},
                "nginx_lb_status_port": host["port"],
                "nginx_lb_http_port": host["port"],
                "nginx_lb_wait_served": "api2",
                "nginx_lb_wait_served_tries": 5,
            },
        },
        {"name": "Read the pool", "ansible.builtin.include_role": {"name": role, "tasks_from": "pool_info.yml"}},
        {
            "name": "Show what the entry points left",
            "ansible.builtin.debug": {"msg": {"pool": "{{ nginx_lb_pool }}", "upstreams": "{{ nginx_lb_upstreams }}"}},
        },
    ]
    # Role vars (vars/main.yml) rank below extra vars only: point the role at the test's file.
    run = play(host, tasks, extra=json.dumps({"__nginx_lb_upstreams_path": str(host["dest"])}))
    shown = [r for r in results(run) if "msg" in r and isinstance(r["msg"], dict)]
    assert run.returncode == 0, run.stdout[-3000:]
    assert shown, run.stdout[-3000:]
    msg = shown[-1]["msg"]
    assert msg["pool"] == {"in_service": ["api2"], "down": ["api1"]}
    assert msg["upstreams"]["changed"] is True
    assert msg["upstreams"]["served"]["seen"] is True
    assert "weight=2;  # api2" in host["dest"].read_text()
    assert commands(host) == ["nginx -t -q", "systemctl reload nginx"]


def test_role_builds_the_backends_from_the_group_hosts_facts(tmp_path: Path) -> None:
    """Without nginx_lb_backends: api1's gathered default IPv4 address, and api2 (no facts) refused by
    the preflight on the controller, naming it."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {
        "all": {"vars": local, "children": {"api": {"hosts": {"api1": {}, "api2": {}}}, "lb": {"hosts": {"lb1": {}}}}}
    }
    plays = [
        {
            "name": "Gather api1's facts",
            "hosts": "api1",
            "gather_facts": True,
            "gather_subset": ["network"],
            "tasks": [],
        },
        {
            "name": "Build and check the backends",
            "hosts": "lb",
            "gather_facts": False,
            "tasks": [
                {"name": "Show the backends", "ansible.builtin.debug": {"msg": "{{ __nginx_lb_backends }}"}},
                {
                    "name": "Check them",
                    "ansible.builtin.include_role": {"name": "tutormax.cluster.nginx_lb", "tasks_from": "upstream.yml"},
                },
            ],
            "vars_files": [
                str(REPO / "roles" / "tutormax" / "defaults" / "main.yml"),
                str(REPO / "roles" / "nginx_lb" / "defaults" / "main.yml"),
                str(REPO / "roles" / "nginx_lb" / "vars" / "main.yml"),
            ],
        },
    ]
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    json_only = "ansible.posix.json"
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env |= {
        "ANSIBLE_STDOUT_CALLBACK": json_only,
        "ANSIBLE_CALLBACKS_ENABLED": json_only,
        "ANSIBLE_CACHE_PLUGIN": "memory",
    }
    run = subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode != 0, run.stdout[-3000:]
    tasks = json.loads(run.stdout)["plays"][1]["tasks"]
    shown = tasks[0]["hosts"]["lb1"]["msg"]
    assert [b["name"] for b in shown] == ["api1", "api2"]
    assert shown[0]["address"]  # from api1's facts
    assert (shown[1]["address"], shown[1]["port"]) == ("", 8000)
    refused = [t["hosts"]["lb1"] for t in tasks if t["hosts"].get("lb1", {}).get("failed")]
    assert refused, tasks
    assert refused[0]["msg"].startswith("these backends have no address: api2 (give it in nginx_lb_backends")
