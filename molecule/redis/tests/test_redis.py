"""What the redis role must leave on every host, whatever topology the failover drills left."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"
ADMIN = (SECRETS / "redis_password").read_text().strip()
APP = (SECRETS / "redis_app_password").read_text().strip()
SENTINEL = (SECRETS / "redis_sentinel_password").read_text().strip()
MASTER_NAME = "tutormax-master"


def cli(
    host, *args: str, password: str | None = None, user: str | None = None, addr: str = "127.0.0.1", stdin: str = ""
) -> str:
    """Run redis-cli on ``host``; returns stdout and stderr (errors are answers here, not failures).

    With ``stdin``, redis-cli runs each of its lines as a command on one connection."""
    env = f"REDISCLI_AUTH={shlex.quote(password)} " if password else ""
    flags = f"--user {shlex.quote(user)} " if user else ""
    quoted = " ".join(shlex.quote(a) for a in args)
    feed = f"printf {shlex.quote(stdin)} | " if stdin else ""
    cmd = host.run(f"{feed}{env}redis-cli --no-auth-warning -h {addr} {flags}{quoted}")
    return (cmd.stdout + cmd.stderr).strip()


def sentinel(host, *args: str, addr: str = "127.0.0.1") -> str:
    return cli(host, "-p", "26379", *args, password=SENTINEL, addr=addr)


# The topology does not change while the tests run; ask once per host.
_cache: dict[tuple[str, str], str] = {}


def cached(host, what: str, ask: Callable[[], str]) -> str:
    key = (host.backend.get_hostname(), what)
    if key not in _cache:
        _cache[key] = ask()
    return _cache[key]


def private_address(host) -> str:
    return cached(host, "address", lambda: host.check_output("hostname -I").split()[0])


def fields(flat: str) -> dict[str, str]:
    """A flat "key, value, key, value" reply as a dict (a trailing empty value was stripped)."""
    lines = flat.splitlines()
    lines += [""] * (len(lines) % 2)
    return dict(zip(lines[0::2], lines[1::2], strict=True))


def master_address(host) -> str:
    return cached(host, "master", lambda: sentinel(host, "SENTINEL", "get-master-addr-by-name", MASTER_NAME).split()[0])


def test_redis_server_and_sentinel_are_enabled_and_running(host) -> None:
    for name in ("redis-server", "redis-sentinel"):
        service = host.service(name)
        assert service.is_enabled, name
        assert service.is_running, name


def test_redis_and_sentinel_listen_on_the_private_address_and_loopback_only(host) -> None:
    address = private_address(host)
    for port in (6379, 26379):
        assert host.socket(f"tcp://{address}:{port}").is_listening, port
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, port
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, port


def test_files_holding_secrets_belong_to_redis_and_are_not_world_readable(host) -> None:
    expected = {
        "/etc/redis/redis.conf": "redis",
        "/etc/redis/redis.tutormax.conf": "root",
        "/etc/redis/users.acl": "root",
        "/etc/redis/sentinel.conf": "redis",
    }
    for path, owner in expected.items():
        f = host.file(path)
        assert (f.user, f.group) == (owner, "redis"), path
        assert f.mode & 0o037 == 0, f"{path}: mode {oct(f.mode)}"


def test_this_host_is_the_master_or_a_replica_with_its_link_up(host) -> None:
    master = master_address(host)
    info = cli(host, "INFO", "replication", password=ADMIN)
    if private_address(host) == master:
        assert "role:master" in info
        assert "connected_slaves:2" in info
        assert info.count("state=online") == 2, info
    else:
        assert "role:slave" in info
        assert f"master_host:{master}" in info
        assert "master_link_status:up" in info


def test_every_sentinel_names_the_same_master_which_is_one(host) -> None:
    mine = sentinel(host, "SENTINEL", "master", MASTER_NAME)
    peers = [s["ip"] for s in map(fields, split_entries(sentinel(host, "SENTINEL", "sentinels", MASTER_NAME)))]
    answers = {sentinel(host, "SENTINEL", "get-master-addr-by-name", MASTER_NAME, addr=p).split()[0] for p in peers}
    answers.add(fields(mine)["ip"])
    assert len(answers) == 1, answers
    (master,) = answers
    assert cli(host, "ROLE", password=ADMIN, addr=master).splitlines()[0] == "master"


def split_entries(flat: str) -> list[str]:
    """SENTINEL replicas/sentinels print entries back to back; each starts with the "name" field."""
    entries: list[list[str]] = []
    lines = flat.splitlines()
    for i in range(0, len(lines), 2):
        if lines[i] == "name":
            entries.append([])
        entries[-1].extend(lines[i : i + 2])
    return ["\n".join(e) for e in entries]


def test_each_sentinel_sees_the_master_two_other_sentinels_and_both_replicas(host) -> None:
    master = fields(sentinel(host, "SENTINEL", "master", MASTER_NAME))
    assert master["flags"] == "master"
    assert master["num-other-sentinels"] == "2"
    assert master["num-slaves"] == "2"
    replicas = [fields(e) for e in split_entries(sentinel(host, "SENTINEL", "replicas", MASTER_NAME))]
    assert len(replicas) == 2
    assert all(r["flags"] == "slave" and r["master-link-status"] == "ok" for r in replicas), replicas
    sentinels = [fields(e) for e in split_entries(sentinel(host, "SENTINEL", "sentinels", MASTER_NAME))]
    assert len(sentinels) == 2
    assert all(s["flags"] == "sentinel" for s in sentinels), sentinels
    assert private_address(host) not in {s["ip"] for s in sentinels}


def test_sentinel_settings_come_from_the_inventory(host) -> None:
    master = fields(sentinel(host, "SENTINEL", "master", MASTER_NAME))
    assert master["quorum"] == "2"
    assert master["down-after-milliseconds"] == "3000"
    assert master["failover-timeout"] == "10000"
    assert master["parallel-syncs"] == "1"
    own = fields(sentinel(host, "SENTINEL", "CONFIG", "GET", "*"))
    assert own["announce-ip"] == private_address(host)


def test_commands_without_the_password_are_refused(host) -> None:
    master = master_address(host)
    assert "NOAUTH" in cli(host, "SET", "anonymous", "1", addr=master)
    assert "NOAUTH" in cli(host, "-p", "26379", "SENTINEL", "masters", addr=master)
    assert "WRONGPASS" in cli(host, "PING", password=ADMIN[::-1], addr=master)


@pytest.mark.parametrize("kind", ["list", "pubsub", "transaction", "script"])
def test_the_app_user_can_do_what_celery_needs_on_the_master_from_every_host(host, kind: str) -> None:
    master = master_address(host)
    key = f"verify:{host.backend.get_hostname()}:{kind}"

    def app(*args: str, stdin: str = "") -> str:
        return cli(host, *args, password=APP, user="tutormax", addr=master, stdin=stdin)

    app("DEL", key, f"{key}:z", f"{key}:h", f"{key}:s")
    if kind == "list":
        assert app("LPUSH", key, "task") == "1"
        assert app("BRPOP", key, "1").splitlines() == [key, "task"]
        assert app("SET", f"{key}:s", "value", "EX", "60") == "OK"
        assert app("GET", f"{key}:s") == "value"
    elif kind == "pubsub":
        assert app("PUBLISH", key, "event") == "0"
    elif kind == "transaction":
        # kombu restores unacknowledged messages in MULTI/EXEC pipelines.
        out = app(stdin=f"MULTI\nSADD {key} a\nZADD {key}:z 1 a\nHSET {key}:h f v\nEXEC\n").splitlines()
        assert out == ["OK", "QUEUED", "QUEUED", "QUEUED", "1", "1", "1"], out
    else:
        # kombu and Celery's result backend run Lua scripts (EVALSHA after SCRIPT LOAD).
        assert app("EVAL", "return redis.call('INCR', KEYS[1])", "1", key) == "1"


def test_the_app_user_is_refused_admin_and_dangerous_commands(host) -> None:
    master = master_address(host)
    for command in (("CONFIG", "GET", "maxmemory"), ("FLUSHALL",), ("REPLICAOF", "NO", "ONE"), ("KEYS", "*")):
        assert "NOPERM" in cli(host, *command, password=APP, user="tutormax", addr=master), command


def test_replicas_refuse_writes(host) -> None:
    if private_address(host) == master_address(host):
        pytest.skip("this host is the master")
    assert "READONLY" in cli(host, "SET", "on-a-replica", "1", password=APP, user="tutormax")


def test_persistence_and_memory_settings(host) -> None:
    def config(name: str) -> str:
        return cli(host, "CONFIG", "GET", name, password=ADMIN).splitlines()[1]

    assert config("appendonly") == "yes"
    assert config("appendfsync") == "everysec"
    assert config("maxmemory-policy") == "noeviction"
    assert config("maxmemory") == str(64 * 1024 * 1024)
    assert config("min-replicas-to-write") == "1"
    assert config("min-replicas-max-lag") == "10"
    assert config("protected-mode") == "yes"


def test_no_unit_failed(host) -> None:
    assert host.check_output("systemctl --failed --no-legend --plain") == ""
