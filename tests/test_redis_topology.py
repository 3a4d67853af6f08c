"""The redis role's decisions as plugins: the RESP client, the parsers and planners of
plugins/module_utils/redis.py, and the modules redis_topology, redis_sentinel_settings and redis_command
end to end (ansible-playbook on localhost) against real redis-server and redis-sentinel processes that
the tests start on loopback addresses and free ports, and stop.

Each test gets its own 127.X.Y.0/24 corner of the loopback range, so processes of tests running in
parallel never meet: servers and Sentinels are told apart by address (the modules take one port for
all servers and one for all Sentinels, as the role does).
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import collection_import, run_playbook

R = collection_import("plugins.module_utils.redis")

ADMIN = "adm1nPassw0rdForTests"
ADMIN_NEW = "n3wAdminPassw0rdForTests"
WRONG = "not-the-password"
APP = "appPassw0rdForTests42"
SENTINEL = "s3ntinelPassw0rdForTests"
SECRETS = (ADMIN, ADMIN_NEW, APP, SENTINEL)
NAME = "tutormax-master"

needs_redis = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-sentinel")),
    reason="needs Debian's redis-server and redis-sentinel (make host-packages)",
)


# ------------------------------------------------------------------------------------ helpers
def subnet() -> str:
    """A /24 of the loopback range of this test's own: '127.X.Y'."""
    return f"127.{random.randint(64, 254)}.{random.randint(1, 254)}"  # noqa: S311 - not for secrets


def free_port(addresses: list[str]) -> int:
    """A port nothing listens on at any of ``addresses``."""
    for _ in range(100):
        probe = socket.socket()
        probe.bind((addresses[0], 0))
        port = int(probe.getsockname()[1])
        probe.close()
        try:
            for address in addresses[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


class Processes:
    """redis-server and redis-sentinel processes of one test, each with its config in ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, binary: str, name: str, config: str, port: int, address: str, password: str) -> Path:
        folder = self.tmp / name
        folder.mkdir()
        conf = folder / f"{name}.conf"
        conf.write_text(
            f'port {port}\nbind {address}\ndaemonize no\ndir {folder}\nlogfile {folder}/log\nsave ""\n{config}'
        )
        proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                if R.ask(address, port, ["PING"], password=password, timeout=1) == "PONG":
                    return conf
            except R.RedisError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (folder / "log").read_text() if (folder / "log").exists() else ""
                raise RuntimeError(f"{binary} {name} did not start:\n{log[-2000:]}")
            time.sleep(0.05)

    def server(self, name: str, address: str, port: int, extra: str = "") -> Path:
        users = f"user default on >{ADMIN} >{ADMIN_NEW} ~* &* +@all\nuser app on >{APP} ~* &* +@all -@admin\n"
        return self.start("redis-server", name, "appendonly no\n" + users + extra, port, address, ADMIN)

    def sentinel(self, name: str, address: str, port: int, master: str, master_port: int, epoch: int = 0) -> Path:
        # quorum 2 with a single Sentinel: it never agrees alone that a master is down, so no test
        # Sentinel ever starts a failover behind the test's back.
        config = (
            f'requirepass "{SENTINEL}"\n'
            f"sentinel resolve-hostnames no\n"
            f"sentinel monitor {NAME} {master} {master_port} 2\n"
            f"sentinel auth-pass {NAME} {ADMIN}\n"
            f"sentinel down-after-milliseconds {NAME} 5000\n"
            f"sentinel failover-timeout {NAME} 60000\n"
            f"sentinel config-epoch {NAME} {epoch}\n"
        )
        return self.start("redis-sentinel", name, config, port, address, SENTINEL)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path / "redis")
    procs.tmp.mkdir()
    try:
        yield procs
    finally:
        procs.stop()


LOCALHOST = {
    "all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
}


def play(tmp_path: Path, tasks: list[dict[str, Any]], results: list[str], **env: str) -> tuple[dict[str, Any], str]:
    """Run ``tasks`` on localhost at verbosity 3 (every result and module argument shown); returns the
    registered ``results`` (read back from a JSON file) and the whole output."""
    save = {
        "name": "Save the results",
        "ansible.builtin.copy": {
            "content": "{{ {" + ", ".join(f"'{r}': {r} | default(none)" for r in results) + "} | to_json }}",
            "dest": str(tmp_path / "results.json"),
            "mode": "0600",
        },
        "diff": False,
        "check_mode": False,
    }
    plays = [{"name": "Modules", "hosts": "localhost", "gather_facts": False, "tasks": [*tasks, save]}]
    result = run_playbook(tmp_path, LOCALHOST, plays, env={"ANSIBLE_VERBOSITY": "3", **env})
    out = result.stdout + result.stderr
    assert (tmp_path / "results.json").exists(), out
    return json.loads((tmp_path / "results.json").read_text()), out


def task(module: str, register: str, args: dict[str, Any], **keywords: Any) -> dict[str, Any]:  # noqa: ANN401
    return {"name": register, f"tutormax.cluster.{module}": args, "register": register, **keywords}


def assert_no_secret(out: str) -> None:
    leaked = [s for s in SECRETS if s in out]
    assert not leaked, f"a password appears in the output: {leaked}"
    # Ansible warns about options that look like secrets but are not no_log.
    assert "Module did not set no_log" not in out, out


# ------------------------------------------------------------------------------------ RESP parsing
def reader(data: bytes, chunk: int = 1) -> Any:  # noqa: ANN401 - a RespReader
    """A RespReader over ``data``, handed out ``chunk`` bytes at a time (replies split anywhere)."""
    view = memoryview(data)
    position = 0

    def recv(_: int) -> bytes:
        nonlocal position
        piece = bytes(view[position : position + chunk])
        position += len(piece)
        return piece

    return R.RespReader(recv)


def test_commands_are_encoded_as_arrays_of_bulk_strings() -> None:
    assert R.encode_command(["SET", "k", 12]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert R.encode_command(["ECHO", "héllo wörld"]) == b"*2\r\n$4\r\nECHO\r\n$13\r\nh\xc3\xa9llo w\xc3\xb6rld\r\n"


def test_every_resp2_type_parses_even_when_split_across_reads() -> None:
    data = (
        b"+OK\r\n-WRONGPASS invalid username-password pair\r\n:-42\r\n$5\r\nhe\r\no\r\n$-1\r\n*-1\r\n*0\r\n"
        b"*3\r\n:1\r\n*2\r\n$1\r\nx\r\n-ERR inner\r\n$0\r\n\r\n"
    )
    for chunk in (1, 3, 1000):
        r = reader(data, chunk)
        assert r.read() == "OK"
        error = r.read()
        assert isinstance(error, R.ReplyError)
        assert error.code == "WRONGPASS"
        assert r.read() == -42
        assert r.read() == "he\r\no"  # a bulk string is read by its length, CRLF inside included
        assert r.read() is None
        assert r.read() is None
        assert r.read() == []
        nested = r.read()
        assert nested[0] == 1
        assert nested[1][0] == "x"
        assert isinstance(nested[1][1], R.ReplyError)
        assert nested[2] == ""


@pytest.mark.parametrize("data", [b"+OK", b"$5\r\nab", b"?what\r\n", b":x\r\n", b"$3\r\nabcd\r\n"])
def test_truncated_or_foreign_replies_raise_a_connection_error(data: bytes) -> None:
    with pytest.raises(R.RedisConnectionError):
        reader(data, 1000).read()


def test_jsonable_turns_nested_error_replies_into_dicts() -> None:
    assert R.jsonable([1, [R.ReplyError("ERR x"), None], "a"]) == [1, [{"error": "ERR x"}, None], "a"]


# ------------------------------------------------------------------------------------ Sentinel and ROLE replies
def sentinel_reply(ip: str, epoch: int, flags: str = "master", port: int = 6379) -> list[str]:
    return ["name", NAME, "ip", ip, "port", str(port), "flags", flags, "config-epoch", str(epoch), "quorum", "2"]


def test_pairs_turns_flat_field_value_replies_into_dicts() -> None:
    assert R.pairs(["quorum", "2", "announce-ip", ""]) == {"quorum": "2", "announce-ip": ""}
    with pytest.raises(ValueError, match="pairs"):
        R.pairs(["quorum"])
    with pytest.raises(ValueError, match="pairs"):
        R.pairs("OK")


def test_a_sentinel_master_reply_becomes_a_view_with_epoch_flags_and_failover_state() -> None:
    view = R.sentinel_master_view("10.0.0.1", sentinel_reply("10.0.0.2", 7, "master,failover_in_progress", 6380))
    assert view == {
        "address": "10.0.0.1",
        "answered": True,
        "error": "",
        "master": "10.0.0.2",
        "port": 6380,
        "config_epoch": 7,
        "flags": ["master", "failover_in_progress"],
        "failover_in_progress": True,
    }
    assert not R.sentinel_master_view("a", sentinel_reply("b", 0, "master,s_down"))["failover_in_progress"]
    with pytest.raises(ValueError, match="config-epoch"):
        R.sentinel_master_view("a", ["name", NAME, "ip", "10.0.0.2", "port", "6379"])


def view(address: str, master: str, epoch: int, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    return {"address": address, "answered": True, "master": master, "port": 6379, "config_epoch": epoch, **extra}


DOWN = {"address": "10.0.0.9", "answered": False, "error": "Connection refused"}


def test_the_highest_config_epoch_wins_whatever_the_order() -> None:
    views = [view("s1", "10.0.0.1", 1), view("s2", "10.0.0.2", 4), DOWN, view("s3", "10.0.0.1", 2)]
    for order in (views, views[::-1]):
        best = R.pick_master(order)
        assert best is not None
        assert (best["master"], best["config_epoch"]) == ("10.0.0.2", 4)


def test_equal_epochs_go_to_the_master_most_sentinels_name_then_the_first() -> None:
    best = R.pick_master([view("s1", "A", 3), view("s2", "B", 3), view("s3", "B", 3)])
    assert best is not None
    assert best["master"] == "B"
    first = R.pick_master([view("s1", "A", 3), view("s2", "B", 3)])
    assert first is not None
    assert first["address"] == "s1"
    assert R.pick_master([DOWN]) is None
    assert R.pick_master([]) is None


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            ["master", 120, [["10.0.0.2", "6379", "120"]]],
            {"role": "master", "offset": 120, "replicas": [["10.0.0.2", "6379", "120"]]},
        ),
        (
            ["slave", "10.0.0.1", 6379, "connected", 118],
            {"role": "slave", "master_host": "10.0.0.1", "master_port": 6379, "link_state": "connected", "offset": 118},
        ),
        (["sentinel", [NAME]], {"role": "sentinel", "masters": [NAME]}),
    ],
    ids=["master", "replica", "sentinel"],
)
def test_role_replies_parse(reply: Any, expected: dict[str, Any]) -> None:  # noqa: ANN401
    assert R.parse_role(reply) == expected


@pytest.mark.parametrize("reply", [None, [], "master", ["master"], ["slave", "10.0.0.1"], [1, 2, 3]])
def test_what_is_not_a_role_reply_is_refused(reply: Any) -> None:  # noqa: ANN401
    with pytest.raises(ValueError, match="ROLE"):
        R.parse_role(reply)


def server(address: str, role: str) -> dict[str, Any]:
    return {"address": address, "answered": True, "role": role}


def test_the_sentinels_answer_beats_the_servers_and_the_inventory() -> None:
    decision = R.decide_master([DOWN, view("s1", "10.0.0.2", 5)], [server("10.0.0.1", "master")], "10.0.0.1")
    assert decision["master"] == "10.0.0.2"
    assert decision["source"] == "sentinels"
    assert decision["known"] is True
    assert decision["explanation"] == "the Sentinels (config epoch 5)"


def test_without_sentinels_the_one_server_that_claims_master_is_kept() -> None:
    servers = [server("10.0.0.1", "slave"), server("10.0.0.3", "master"), {"address": "10.0.0.2", "answered": False}]
    decision = R.decide_master([DOWN], servers, "10.0.0.1")
    assert (decision["master"], decision["source"], decision["known"]) == ("10.0.0.3", "servers", True)
    assert decision["explanation"] == "the redis-servers (no Sentinel answered)"


def test_when_nothing_answers_the_inventory_decides() -> None:
    decision = R.decide_master([DOWN], [{"address": "10.0.0.2", "answered": False}], "10.0.0.1")
    assert (decision["master"], decision["source"], decision["known"]) == ("10.0.0.1", "inventory", False)
    assert decision["explanation"].startswith("the inventory (nothing answered")


def test_two_servers_claiming_master_without_sentinels_is_a_split_brain() -> None:
    with pytest.raises(R.SplitBrainError, match=r"several redis-servers say they are the master: 10.0.0.1, 10.0.0.3"):
        R.decide_master([], [server("10.0.0.1", "master"), server("10.0.0.3", "master")], "10.0.0.1")


def test_failover_waiting_asks_again_until_the_failover_is_over() -> None:
    now = [0.0]
    answers = [
        [view("s1", "A", 3, failover_in_progress=True), view("s2", "A", 3)],
        [view("s1", "A", 3, failover_in_progress=True)],
        [view("s1", "B", 4), view("s2", "B", 4)],
    ]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    views, waited = R.wait_for_sentinels(lambda: answers.pop(0), 10, clock=lambda: now[0], sleep=sleep)
    assert [v["master"] for v in views] == ["B", "B"]
    assert waited == 2.0
    assert R.failovers_in_progress(views) == []


def test_failover_waiting_gives_up_after_the_wait_and_reports_who_still_fails_over() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    busy = [view("s1", "A", 3, failover_in_progress=True), DOWN]
    views, waited = R.wait_for_sentinels(lambda: busy, 2.5, clock=lambda: now[0], sleep=sleep)
    assert waited == 2.5
    assert R.failovers_in_progress(views) == ["s1"]
    _, once = R.wait_for_sentinels(lambda: busy, 0, clock=lambda: now[0], sleep=sleep)
    assert once == 0


# ------------------------------------------------------------------------------------ settings planning
def test_only_settings_that_differ_are_planned_in_the_order_wanted() -> None:
    running = {"quorum": "2", "down-after-milliseconds": "3000", "failover-timeout": "180000", "parallel-syncs": "1"}
    wanted = {"quorum": 2, "down-after-milliseconds": 5000, "failover-timeout": 10000, "parallel-syncs": None}
    assert R.plan_settings(wanted, running, "master") == [
        {"scope": "master", "setting": "down-after-milliseconds", "before": "3000", "after": "5000"},
        {"scope": "master", "setting": "failover-timeout", "before": "180000", "after": "10000"},
    ]
    own = {"announce-ip": "", "resolve-hostnames": "yes"}
    assert R.plan_settings({"announce-ip": "10.0.0.1", "resolve-hostnames": False}, own, "sentinel") == [
        {"scope": "sentinel", "setting": "announce-ip", "before": "", "after": "10.0.0.1"},
        {"scope": "sentinel", "setting": "resolve-hostnames", "before": "yes", "after": "no"},
    ]
    assert R.plan_settings({"announce-hostnames": False}, {}, "sentinel")[0]["before"] is None
    assert R.plan_settings({"quorum": 2, "announce-ip": "x"}, {"quorum": "2", "announce-ip": "x"}, "s") == []


def test_the_master_password_is_compared_with_the_saved_line_and_never_shown() -> None:
    assert R.plan_auth_pass(None, "old") == []
    assert R.plan_auth_pass("same", "same") == []
    changed = R.plan_auth_pass("new-secret", "old-secret")
    assert changed == [{"scope": "master", "setting": "auth-pass", "before": "********", "after": "********"}]
    assert R.plan_auth_pass("new-secret", None)[0]["before"] is None


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("sentinel auth-pass m p4ss", ["sentinel", "auth-pass", "m", "p4ss"]),
        ('requirepass "a b\\"c\\x41"', ["requirepass", 'a b"cA']),
        ("  dir '/var/lib/it\\'s'  ", ["dir", "/var/lib/it's"]),
        ('logfile a"b c"', ["logfile", "ab c"]),
        ("save ''", ["save", ""]),
    ],
)
def test_config_lines_split_like_redis_reads_them(line: str, words: list[str]) -> None:
    assert R.split_config_line(line) == words


@pytest.mark.parametrize("line", ['requirepass "open', "dir 'a'b", 'requirepass "a"b'])
def test_config_lines_redis_would_refuse_raise(line: str) -> None:
    with pytest.raises(ValueError, match="quote"):
        R.split_config_line(line)


def test_config_value_reads_the_last_matching_line_of_the_right_master() -> None:
    text = (
        "# sentinel auth-pass m commented\n"
        "sentinel auth-pass other x\n"
        "sentinel auth-pass m first\n"
        'SENTINEL AUTH-PASS m "second"\n'
        "requirepass top\n"
    )
    assert R.config_value(text, ["sentinel", "auth-pass", "m"]) == "second"
    assert R.config_value(text, ["sentinel", "auth-pass", "none"]) is None
    assert R.config_value(text, ["requirepass"]) == "top"


def test_the_diff_shows_the_settings_as_config_lines_without_the_password() -> None:
    text = R.render_settings("m", {"quorum": "2", "announce-ip": "10.0.0.1", "auth-pass": "x"}, "(hidden)")
    assert text == "sentinel announce-ip 10.0.0.1\nsentinel auth-pass m (hidden)\nsentinel quorum m 2\n"


# ------------------------------------------------------------------------------------ the client, for real
@pytest.fixture
def one_server(processes: Processes) -> tuple[str, int]:
    address = f"{subnet()}.2"
    port = free_port([address])
    processes.server("server", address, port)
    return address, port


@needs_redis
def test_client_authenticates_as_default_and_as_an_acl_user_and_reports_wrong_passwords(
    one_server: tuple[str, int],
) -> None:
    host, port = one_server
    assert R.ask(host, port, ["PING"], password=ADMIN) == "PONG"
    assert R.ask(host, port, ["ACL", "WHOAMI"], password=ADMIN) == "default"
    assert R.ask(host, port, ["ACL", "WHOAMI"], password=APP, user="app") == "app"
    with pytest.raises(R.ReplyError) as wrong:
        R.ask(host, port, ["PING"], password=WRONG)
    assert wrong.value.code == "WRONGPASS"
    with pytest.raises(R.ReplyError) as noauth:
        R.ask(host, port, ["PING"])
    assert noauth.value.code == "NOAUTH"
    with pytest.raises(R.ReplyError, match="NOPERM"):
        R.ask(host, port, ["CONFIG", "GET", "port"], password=APP, user="app")


@needs_redis
def test_client_parses_every_reply_type_from_a_real_server(one_server: tuple[str, int]) -> None:
    host, port = one_server
    big = "x" * 300_000 + "\r\n" + "é" * 1000
    with R.Client(host, port, password=ADMIN) as client:
        assert client.command("SET", "k", big) == "OK"
        assert client.command("GET", "k") == big
        assert client.command("GET", "missing") is None
        assert client.command("INCRBY", "n", -7) == -7
        nested = client.raw_command("EVAL", "return {1, {2, 'two'}, false, redis.error_reply('ERR boom')}", 0)
        assert nested[:3] == [1, [2, "two"], None]
        assert isinstance(nested[3], R.ReplyError)
        with pytest.raises(R.ReplyError, match="unknown command"):
            client.command("NOSUCHCOMMAND")
        assert client.command("PING") == "PONG"  # the connection survives error replies
        assert R.parse_role(client.command("ROLE"))["role"] == "master"


def test_client_times_out_on_a_server_that_never_answers_and_names_refused_connections() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(R.RedisConnectionError, match="timed out"):
            R.ask("127.0.0.1", port, ["PING"], password=WRONG, timeout=0.5)
        assert time.monotonic() - start < 3
    with pytest.raises(R.RedisConnectionError, match=f"127.0.0.1:{port}: Connection refused"):
        R.ask("127.0.0.1", port, ["PING"])


# ------------------------------------------------------------------------------------ redis_topology, end to end
@pytest.fixture
def topology(processes: Processes) -> dict[str, Any]:
    """Two masters that do not know each other (A, B), a replica of A, a Sentinel naming A at config
    epoch 1 and one naming B at epoch 3; the .9 addresses have nothing listening."""
    net = subnet()
    hosts = {k: f"{net}.{n}" for k, n in {"a": 2, "b": 3, "replica": 4, "s1": 5, "s2": 6, "dead": 9}.items()}
    port = free_port([hosts["a"], hosts["b"], hosts["replica"], hosts["dead"]])
    sentinel_port = free_port([hosts["s1"], hosts["s2"], hosts["dead"]])
    processes.server("a", hosts["a"], port)
    processes.server("b", hosts["b"], port)
    processes.server("replica", hosts["replica"], port, f"replicaof {hosts['a']} {port}\nmasterauth {ADMIN}\n")
    processes.sentinel("s1", hosts["s1"], sentinel_port, hosts["a"], port, epoch=1)
    processes.sentinel("s2", hosts["s2"], sentinel_port, hosts["b"], port, epoch=3)
    return {**hosts, "port": port, "sentinel_port": sentinel_port}


def topology_args(t: dict[str, Any], sentinels: list[str], servers: list[str], **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    return {
        "sentinels": [t[s] for s in sentinels],
        "sentinel_port": t["sentinel_port"],
        "master_name": NAME,
        "sentinel_password": SENTINEL,
        "servers": [t[s] for s in servers],
        "server_port": t["port"],
        "server_password": ADMIN,
        "initial_master": t["replica"],
        "timeout": 2,
        **extra,
    }


@needs_redis
def test_redis_topology_finds_the_master_from_sentinels_servers_or_inventory_and_refuses_a_split_brain(
    tmp_path: Path, topology: dict[str, Any]
) -> None:
    t = topology
    tasks = [
        task(
            "redis_topology",
            "sentinels",
            topology_args(t, ["s1", "dead", "s2"], ["a", "b"], auth_check_host=t["a"]),
        ),
        task("redis_topology", "in_check_mode", topology_args(t, ["s1", "s2"], ["a"]), check_mode=True),
        task("redis_topology", "servers", topology_args(t, ["dead"], ["replica", "a", "dead"])),
        task("redis_topology", "unknown_name", topology_args(t, ["s1"], ["a"], master_name="other-master")),
        task("redis_topology", "inventory", topology_args(t, ["dead"], ["dead"])),
        task("redis_topology", "split_brain", topology_args(t, ["dead"], ["a", "replica", "b"]), ignore_errors=True),
        task(
            "redis_topology",
            "wrong_password",
            topology_args(t, ["s2"], [], server_password=WRONG, auth_check_host=t["b"]),
        ),
    ]
    results, out = play(tmp_path, tasks, [str(t_["register"]) for t_ in tasks])
    assert_no_secret(out)

    r = results["sentinels"]
    assert (r["master"], r["source"], r["config_epoch"], r["known"]) == (t["b"], "sentinels", 3, True), r
    assert r["port"] == t["port"]
    assert [(v["address"], v["answered"]) for v in r["sentinels"]] == [
        (t["s1"], True),
        (t["dead"], False),
        (t["s2"], True),
    ]
    assert r["sentinels"][0]["master"] == t["a"]
    assert r["sentinels"][0]["config_epoch"] == 1
    assert "Connection refused" in r["sentinels"][1]["error"]
    assert r["servers"] == [], "the servers are asked only when no Sentinel answers"
    assert r["auth_check"]["accepted"] is True
    assert r["changed"] is False
    assert r["explanation"] == "the Sentinels (config epoch 3)"

    assert results["in_check_mode"]["master"] == t["b"]
    assert results["in_check_mode"]["changed"] is False

    r = results["servers"]
    assert (r["master"], r["source"], r["known"]) == (t["a"], "servers", True), r
    assert [v.get("role") for v in r["servers"]] == ["slave", "master", None]
    assert r["servers"][0]["master_host"] == t["a"]
    assert r["explanation"] == "the redis-servers (no Sentinel answered)"

    r = results["unknown_name"]
    assert (r["master"], r["source"]) == (t["a"], "servers"), r
    assert "No such master" in r["sentinels"][0]["error"]

    r = results["inventory"]
    assert (r["master"], r["source"], r["known"], r["port"]) == (t["replica"], "inventory", False, None), r

    r = results["split_brain"]
    assert r["failed"] is True
    assert r["msg"] == (
        f"No Sentinel answered and several redis-servers say they are the master: {t['a']}, {t['b']}. "
        "Refusing to pick one; see the redis role README's runbook (split brain)."
    )
    assert r["claims"] == [t["a"], t["b"]]

    r = results["wrong_password"]
    assert r["auth_check"]["accepted"] is False
    assert "WRONGPASS" in r["auth_check"]["error"]
    assert r["master"] == t["b"]


# A stand-in Sentinel for the one thing real ones cannot be made to do on demand: report a failover
# in progress for a set time.
def resp(value: object) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(resp(v) for v in value)
    data = str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


@contextmanager
def failing_over_sentinel(address: str, port: int, seconds: float, old: str, new: str) -> Iterator[None]:
    """A Sentinel that names ``old`` with a failover in progress for ``seconds``, then ``new`` at a higher
    epoch (forever when ``seconds`` is negative). The time counts from the first question, so a slow
    ansible-playbook start cannot let the failover end before the module asks."""
    first_asked: list[float] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            commands = R.RespReader(self.request.recv)
            while True:
                try:
                    command = commands.read()
                except R.RedisConnectionError:
                    return
                assert isinstance(command, list)
                if str(command[0]).upper() == "AUTH":
                    self.request.sendall(b"+OK\r\n" if command[-1] == SENTINEL else b"-WRONGPASS no\r\n")
                    continue
                first_asked.append(time.monotonic())
                busy = seconds < 0 or time.monotonic() - first_asked[0] < seconds
                answer = sentinel_reply(old, 3, "master,failover_in_progress") if busy else sentinel_reply(new, 4)
                self.request.sendall(resp(answer))

    server = socketserver.ThreadingTCPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_redis_topology_waits_out_a_failover_in_progress_and_fails_when_it_does_not_end(tmp_path: Path) -> None:
    net = subnet()
    port = free_port([f"{net}.5", f"{net}.6"])
    base = {"sentinel_port": port, "master_name": NAME, "sentinel_password": SENTINEL, "initial_master": f"{net}.1"}
    with (
        failing_over_sentinel(f"{net}.5", port, 2.0, f"{net}.1", f"{net}.2"),
        failing_over_sentinel(f"{net}.6", port, -1, f"{net}.1", f"{net}.2"),
    ):
        tasks = [
            task("redis_topology", "waited", {**base, "sentinels": [f"{net}.5"], "failover_wait": 10}),
            task(
                "redis_topology", "stuck", {**base, "sentinels": [f"{net}.6"], "failover_wait": 1}, ignore_errors=True
            ),
        ]
        results, out = play(tmp_path, tasks, ["waited", "stuck"])
    assert_no_secret(out)
    r = results["waited"]
    assert (r["master"], r["config_epoch"]) == (f"{net}.2", 4), r
    assert r["waited"] >= 1
    r = results["stuck"]
    assert r["failed"] is True
    assert r["msg"].startswith(f"A failover of {NAME} is still in progress after 1 s (Sentinels at {net}.6)"), r


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"sentinel_port": 70000}, "sentinel_port"),
        ({"server_port": 0}, "server_port"),
        ({"master_name": "two words"}, "master_name"),
        ({"initial_master": " "}, "initial_master"),
        ({"failover_wait": -1}, "failover_wait"),
        ({"sentinels": [""]}, "sentinels"),
        ({"auth_check_host": "127.0.0.1", "server_password": ""}, "auth_check_host"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_redis_topology_names_a_bad_argument(tmp_path: Path, args: dict[str, Any], named: str) -> None:
    good = {"master_name": NAME, "initial_master": "127.0.0.1", "server_password": ADMIN, "timeout": 1}
    results, out = play(tmp_path, [task("redis_topology", "bad", {**good, **args}, ignore_errors=True)], ["bad"])
    assert results["bad"]["failed"] is True, out
    assert results["bad"]["msg"].startswith(named + " "), results["bad"]["msg"]
    assert_no_secret(out)


# ------------------------------------------------------------------------------------ redis_sentinel_settings
@pytest.fixture
def sentinel(processes: Processes) -> dict[str, Any]:
    net = subnet()
    master, address = f"{net}.2", f"{net}.5"
    port, sentinel_port = free_port([master]), free_port([address])
    processes.server("master", master, port)
    conf = processes.sentinel("sentinel", address, sentinel_port, master, port)
    return {"address": address, "port": sentinel_port, "conf": conf, "announce": f"{net}.5"}


def running_settings(s: dict[str, Any]) -> dict[str, Any]:
    with R.Client(s["address"], s["port"], password=SENTINEL) as client:
        master = R.pairs(client.command("SENTINEL", "MASTER", NAME))
        own = R.pairs(client.command("SENTINEL", "CONFIG", "GET", "*"))
    keys = ("quorum", "down-after-milliseconds", "failover-timeout", "parallel-syncs")
    return {
        **{k: master[k] for k in keys},
        **{k: own[k] for k in ("announce-ip", "resolve-hostnames", "announce-hostnames")},
        "auth-pass": R.config_value(s["conf"].read_text(), ["sentinel", "auth-pass", NAME]),
    }


def settings_args(s: dict[str, Any], **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    return {
        "host": s["address"],
        "port": s["port"],
        "password": SENTINEL,
        "master_name": NAME,
        "quorum": 3,
        "down_after_milliseconds": 4000,
        "failover_timeout": 20000,
        "parallel_syncs": 2,
        "auth_pass": ADMIN_NEW,
        "config_file": str(s["conf"]),
        "announce_ip": s["announce"],
        "resolve_hostnames": False,
        "announce_hostnames": False,
        **extra,
    }


@needs_redis
def test_redis_sentinel_settings_in_check_mode_reports_the_changes_with_a_diff_and_changes_nothing(
    tmp_path: Path, sentinel: dict[str, Any]
) -> None:
    before = running_settings(sentinel)
    conf = sentinel["conf"].read_text()
    results, out = play(
        tmp_path,
        [task("redis_sentinel_settings", "checked", settings_args(sentinel), check_mode=True)],
        ["checked"],
        ANSIBLE_DIFF_ALWAYS="1",
    )
    assert_no_secret(out)
    r = results["checked"]
    assert r["changed"] is True, out
    assert [c["setting"] for c in r["changes"]] == [
        "quorum",
        "down-after-milliseconds",
        "failover-timeout",
        "parallel-syncs",
        "auth-pass",
        "announce-ip",
    ]
    assert r["changes"][4] == {"scope": "master", "setting": "auth-pass", "before": "********", "after": "********"}
    assert f"-sentinel quorum {NAME} 2" in out
    assert f"+sentinel quorum {NAME} 3" in out
    assert f"+sentinel announce-ip {sentinel['announce']}" in out
    assert f"+sentinel auth-pass {NAME} (hidden, changed)" in out
    assert running_settings(sentinel) == before
    assert sentinel["conf"].read_text() == conf


@needs_redis
def test_redis_sentinel_settings_converges_then_changes_nothing(tmp_path: Path, sentinel: dict[str, Any]) -> None:
    tasks = [
        task("redis_sentinel_settings", "first", settings_args(sentinel)),
        task("redis_sentinel_settings", "second", settings_args(sentinel)),
        task("redis_sentinel_settings", "second_checked", settings_args(sentinel), check_mode=True),
        task(
            "redis_sentinel_settings",
            "partial",
            {
                **{
                    k: v for k, v in settings_args(sentinel).items() if k in ("host", "port", "password", "master_name")
                },
                "quorum": 2,
            },
        ),
    ]
    results, out = play(tmp_path, tasks, ["first", "second", "second_checked", "partial"], ANSIBLE_DIFF_ALWAYS="1")
    assert_no_secret(out)
    assert results["first"]["changed"] is True, out
    assert len(results["first"]["changes"]) == 6
    assert results["second"]["changed"] is False, results["second"]
    assert results["second"]["changes"] == []
    assert results["second_checked"]["changed"] is False
    assert results["partial"]["changes"] == [{"scope": "master", "setting": "quorum", "before": "3", "after": "2"}]
    assert running_settings(sentinel) == {
        "quorum": "2",
        "down-after-milliseconds": "4000",
        "failover-timeout": "20000",
        "parallel-syncs": "2",
        "announce-ip": sentinel["announce"],
        "resolve-hostnames": "no",
        "announce-hostnames": "no",
        "auth-pass": ADMIN_NEW,
    }


@needs_redis
def test_redis_sentinel_settings_names_a_bad_argument_or_an_unknown_master(
    tmp_path: Path, sentinel: dict[str, Any]
) -> None:
    cases: dict[str, dict[str, Any]] = {
        "quorum": {"quorum": 0},
        "port": {"port": 70000},
        "master_name": {"master_name": "other-master"},
        "config_file": {"config_file": str(tmp_path / "missing.conf")},
        "auth_pass": {"auth_pass": "has space"},
        "password": {"password": WRONG},
    }
    tasks = [
        task("redis_sentinel_settings", f"bad_{name}", settings_args(sentinel, **args), ignore_errors=True)
        for name, args in cases.items()
    ]
    results, out = play(tmp_path, tasks, [f"bad_{name}" for name in cases])
    assert_no_secret(out)
    for name in ("quorum", "port", "auth_pass"):
        assert results[f"bad_{name}"]["msg"].startswith(f"{name} must"), results[f"bad_{name}"]
    assert "does not monitor master_name other-master" in results["bad_master_name"]["msg"]
    assert results["bad_config_file"]["msg"].startswith(f"config_file {tmp_path / 'missing.conf'} cannot be read")
    assert "WRONGPASS" in results["bad_password"]["msg"]
    assert all(results[f"bad_{name}"]["failed"] for name in cases)


# ------------------------------------------------------------------------------------ redis_command
@needs_redis
def test_redis_command_waits_for_the_expected_reply_skips_changes_in_check_mode_and_names_bad_arguments(
    tmp_path: Path, one_server: tuple[str, int]
) -> None:
    host, port = one_server
    base = {"host": host, "port": port, "password": ADMIN}
    tasks = [
        task("redis_command", "ping", {**base, "command": ["PING"], "read_only": True, "expect": "PONG", "wait": 5}),
        task("redis_command", "set", {**base, "command": ["SET", "written", "1"]}),
        task("redis_command", "set_checked", {**base, "command": ["SET", "not-written", "1"]}, check_mode=True),
        task(
            "redis_command", "get_checked", {**base, "command": ["GET", "written"], "read_only": True}, check_mode=True
        ),
        task(
            "redis_command",
            "as_app",
            {
                "host": host,
                "port": port,
                "user": "app",
                "password": APP,
                "command": ["ACL", "WHOAMI"],
                "read_only": True,
            },
        ),
        task(
            "redis_command",
            "unexpected",
            {**base, "command": ["ECHO", "no"], "read_only": True, "expect": "yes", "wait": 1, "interval": 0.2},
            ignore_errors=True,
        ),
        task(
            "redis_command",
            "wrong_password",
            {**base, "password": WRONG, "command": ["PING"]},
            ignore_errors=True,
        ),
        task("redis_command", "bad_port", {**base, "port": 0, "command": ["PING"]}, ignore_errors=True),
    ]
    results, out = play(tmp_path, tasks, [str(t["register"]) for t in tasks])
    assert_no_secret(out)
    assert (results["ping"]["reply"], results["ping"]["changed"]) == ("PONG", False)
    assert (results["set"]["reply"], results["set"]["changed"]) == ("OK", True)
    assert (results["set_checked"]["reply"], results["set_checked"]["changed"]) == (None, True)
    assert (results["get_checked"]["reply"], results["get_checked"]["changed"]) == ("1", False)
    assert results["as_app"]["reply"] == "app"
    assert results["unexpected"]["failed"] is True
    assert results["unexpected"]["attempts"] >= 3
    assert "expected 'yes', got 'no'" in results["unexpected"]["msg"]
    assert "WRONGPASS" in results["wrong_password"]["msg"]
    assert results["wrong_password"]["changed"] is False
    assert results["bad_port"]["msg"].startswith("port must")
    assert R.ask(host, port, ["EXISTS", "not-written"], password=ADMIN) == 0


# ------------------------------------------------------------------------------------ documentation
@pytest.mark.parametrize("name", ["redis_topology", "redis_sentinel_settings", "redis_command"])
def test_module_documentation_parses_and_agrees_with_the_argument_spec(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = collection_import(f"plugins.modules.{name}")
    for part in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
        assert yaml.safe_load(getattr(module, part)), part
    documented = yaml.safe_load(module.DOCUMENTATION)["options"]
    captured: dict[str, Any] = {}

    class Captured(Exception):  # noqa: N818 - a signal, not an error
        pass

    def fake(**kwargs: Any) -> None:  # noqa: ANN401
        captured.update(kwargs)
        raise Captured

    monkeypatch.setattr(module, "AnsibleModule", fake)
    with pytest.raises(Captured):
        module.main()
    spec = captured["argument_spec"]
    assert captured["supports_check_mode"] is True
    assert sorted(documented) == sorted(spec)
    for option, entry in spec.items():
        doc = documented[option]
        assert doc["type"] == entry["type"], option
        assert doc.get("required", False) == entry.get("required", False), option
        assert doc.get("default") == entry.get("default"), option
        assert doc.get("elements") == entry.get("elements"), option
    secrets = sorted(k for k, v in spec.items() if v.get("no_log"))
    assert secrets == sorted(k for k in spec if "pass" in k), secrets
