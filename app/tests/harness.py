"""Real servers for the tests (and the benchmark), started from the Debian binaries on loopback.

* PostgreSQL 15 primary plus a streaming replica made with pg_basebackup, run as the unprivileged
  ``postgres`` user (PostgreSQL refuses root) in a temporary directory.
* Redis master, Redis replica and one Sentinel watching them, with the ACL user the app uses.
* Application processes (uvicorn, gunicorn, Celery) with a given environment.

Ports are picked free at start. Every process is stopped by ``Stack.stop()``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis

PG_BIN = Path("/usr/lib/postgresql/15/bin")
APP_SRC = Path(__file__).resolve().parents[1] / "src"
PG_USER = "postgres"
LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check`` until it returns True; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s (last error: {last!r})")


def _run_pg(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [str(PG_BIN / args[0]), *args[1:]],
        check=False,
        # PostgreSQL refuses to run as root.
        user=PG_USER if os.geteuid() == 0 else None,
        group=PG_USER if os.geteuid() == 0 else None,
        extra_groups=[] if os.geteuid() == 0 else None,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd="/",
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")


@dataclass
class Postgres:
    """A PostgreSQL primary and its streaming replica."""

    base: Path
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    app_password: str = field(default_factory=lambda: "app-" + secrets.token_hex(8))
    replication_password: str = field(default_factory=lambda: secrets.token_hex(8))
    database: str = "tutormax"
    running: list[Path] = field(default_factory=list)

    @property
    def primary_dir(self) -> Path:
        return self.base / "primary"

    @property
    def replica_dir(self) -> Path:
        return self.base / "replica"

    def url(self, port: int | None = None, database: str | None = None) -> str:
        """The app's URL (user tutormax, password auth over TCP)."""
        return (
            f"postgresql://tutormax:{self.app_password}@{LOCALHOST}:{port or self.primary_port}/"
            f"{database or self.database}"
        )

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def replica_url(self) -> str:
        return self.url(self.replica_port)

    def admin(self, port: int | None = None, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection (trust over the Unix socket in the test directory)."""
        return psycopg.connect(
            host=str(self.base), port=port or self.primary_port, user=PG_USER, dbname=database, autocommit=True
        )

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.base, PG_USER, PG_USER)
        _run_pg("initdb", "-D", str(self.primary_dir), "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync")
        conf = self.primary_dir / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                f"\nport = {self.primary_port}\nlisten_addresses = '{LOCALHOST}'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n"
                "synchronous_commit = off\nshared_buffers = 32MB\nmax_connections = 200\n"
                "logging_collector = off\n"
            )
        (self.primary_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all tutormax {LOCALHOST}/32 scram-sha-256\n"
            f"host replication replicator {LOCALHOST}/32 scram-sha-256\n"
        )
        self._pg_ctl_start(self.primary_dir)
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE tutormax LOGIN PASSWORD '{self.app_password}'")
            conn.execute(f"CREATE ROLE replicator LOGIN REPLICATION PASSWORD '{self.replication_password}'")
            conn.execute("CREATE DATABASE tutormax OWNER tutormax")
        _run_pg(
            "pg_basebackup",
            "-h", LOCALHOST, "-p", str(self.primary_port), "-U", "replicator",
            "-D", str(self.replica_dir), "-R", "-X", "stream", "-c", "fast", "--no-sync",
            env={"PGPASSWORD": self.replication_password},
        )  # fmt: skip
        with (self.replica_dir / "postgresql.conf").open("a") as f:
            f.write(f"\nport = {self.replica_port}\n")
        self._pg_ctl_start(self.replica_dir)
        with self.admin(self.replica_port) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            assert row is not None
            assert row[0] is True, "the replica is not in recovery"

    def _pg_ctl_start(self, data: Path) -> None:
        _run_pg("pg_ctl", "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60", "start")
        if data not in self.running:
            self.running.append(data)

    def multi_host_url(self, ports: list[int], target_session_attrs: str) -> str:
        """A libpq multi-host URL over ``ports`` (in that order), as the deployment writes for Patroni."""
        hosts = ",".join(f"{LOCALHOST}:{port}" for port in ports)
        return (
            f"postgresql://tutormax:{self.app_password}@{hosts}/{self.database}"
            f"?target_session_attrs={target_session_attrs}"
        )

    def stop_server(self, data: Path, mode: str = "fast") -> None:
        """Stop one server (``fast``: clients get 57P01 and their connections close)."""
        _run_pg("pg_ctl", "-D", str(data), "-m", mode, "-w", "-t", "60", "stop")

    def start_server(self, data: Path) -> None:
        """Start one server again (a stopped replica resumes streaming from the primary)."""
        self._pg_ctl_start(data)

    def promote(self, data: Path) -> None:
        """Promote a standby and wait until it takes writes."""
        _run_pg("pg_ctl", "-D", str(data), "-w", "-t", "60", "promote")

    def server_pids(self, data: Path) -> list[int]:
        """The postmaster of ``data`` and every process it started (backends, walreceiver ...)."""
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # The parent pid is the 2nd field after the parenthesised command name.
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    @contextlib.contextmanager
    def hung(self, data: Path) -> Iterator[None]:
        """The server frozen with SIGSTOP (postmaster and children): sockets stay open, nothing answers."""
        pids = self.server_pids(data)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def create_database(self, name: str) -> str:
        """A new empty database owned by tutormax; returns its URL on the primary."""
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER tutormax")
        return self.url(self.primary_port, name)

    def wait_replayed(self, timeout: float = 10) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        with self.admin() as conn:
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        lsn = row[0]

        def caught_up() -> bool:
            with self.admin(self.replica_port) as conn:
                r = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
                return bool(r and r[0])

        wait_until(caught_up, timeout, "replica replay")

    def stop(self) -> None:
        for data in reversed(self.running):
            with contextlib.suppress(RuntimeError):
                _run_pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        self.running.clear()


@dataclass
class RedisSet:
    """A Redis master, a replica and one Sentinel (quorum 1), with the ``tutormax`` ACL user."""

    base: Path
    master_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_hex(8))
    app_password: str = field(default_factory=lambda: "app-" + secrets.token_hex(8))
    sentinel_password: str = field(default_factory=lambda: "sen-" + secrets.token_hex(8))
    master_name: str = "tutormax-master"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    #: What the app's ACL user may do: everything on every key and channel except admin and
    #: dangerous commands (the ACL the redis role should give the user, see app/README.md).
    APP_ACL = "~* &* +@all -@admin -@dangerous"

    def _server_args(self, port: int) -> list[str]:
        return [
            "--port", str(port), "--bind", LOCALHOST, "--save", "", "--appendonly", "no",
            "--dir", str(self.base), "--protected-mode", "yes",
            "--requirepass", self.admin_password, "--masterauth", self.admin_password,
            "--user", "tutormax", "on", f">{self.app_password}", *self.APP_ACL.split(),
            "--logfile", str(self.base / f"redis-{port}.log"),
        ]  # fmt: skip

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.procs["master"] = subprocess.Popen(["/usr/bin/redis-server", *self._server_args(self.master_port)])
        self.procs["replica"] = subprocess.Popen(
            [
                "/usr/bin/redis-server",
                *self._server_args(self.replica_port),
                "--replicaof",
                LOCALHOST,
                str(self.master_port),
            ]
        )
        master = self.admin(self.master_port)
        wait_until(lambda: bool(master.ping()), 15, "redis master")
        wait_until(
            lambda: (
                master.info("replication").get("connected_slaves", 0) >= 1
                and self.admin(self.replica_port).info("replication").get("master_link_status") == "up"
            ),
            20,
            "redis replica link",
        )
        conf = self.base / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind {LOCALHOST}\ndaemonize no\n"
            f"logfile {self.base / 'sentinel.log'}\ndir {self.base}\n"
            f"requirepass {self.sentinel_password}\n"
            f"sentinel monitor {self.master_name} {LOCALHOST} {self.master_port} 1\n"
            f"sentinel auth-pass {self.master_name} {self.admin_password}\n"
            f"sentinel down-after-milliseconds {self.master_name} 1000\n"
            f"sentinel failover-timeout {self.master_name} 5000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n"
        )
        self.procs["sentinel"] = subprocess.Popen(["/usr/bin/redis-sentinel", str(conf)])
        sentinel = self.sentinel_client()
        wait_until(
            lambda: len(sentinel.execute_command("SENTINEL", "REPLICAS", self.master_name)) >= 1,
            20,
            "sentinel discovering the replica",
        )

    def admin(self, port: int) -> redis.Redis:
        return redis.Redis(host=LOCALHOST, port=port, password=self.admin_password, socket_timeout=2)

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(host=LOCALHOST, port=self.sentinel_port, password=self.sentinel_password, socket_timeout=2)

    def current_master_port(self) -> int:
        addr = self.sentinel_client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return int(addr[1])

    def app_client(self) -> redis.Redis:
        """A client of the current master, as the app's ACL user."""
        return redis.Redis(
            host=LOCALHOST, port=self.current_master_port(), username="tutormax", password=self.app_password,
            decode_responses=True, socket_timeout=2,
        )  # fmt: skip

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)
        self.procs.clear()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, wait, then SIGKILL (the process and its process group, if it leads one)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL) if _leads_group(proc) else proc.kill()
        proc.wait(5)


def _leads_group(proc: subprocess.Popen[bytes]) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


@dataclass
class Stack:
    """Databases and Redis for a test session, and the app's environment for them."""

    base: Path
    pg: Postgres
    redis: RedisSet
    apps: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(cls, base: Path | None = None) -> Stack:
        base = base or Path(tempfile.mkdtemp(prefix="tutormax-test-"))
        base.chmod(0o755)  # the postgres user must reach its data directories
        stack = cls(base=base, pg=Postgres(base / "pg"), redis=RedisSet(base / "redis"))
        try:
            # Redis (replica sync, Sentinel discovery) and PostgreSQL (initdb, basebackup) start in parallel.
            with ThreadPoolExecutor(2) as pool:
                for future in [pool.submit(stack.redis.start), pool.submit(stack.pg.start)]:
                    future.result()
        except BaseException:
            stack.stop()
            raise
        return stack

    def env(self, **extra: str) -> dict[str, str]:
        """The app's environment (Sentinel mode, replica reads), plus ``extra``."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base),
            "PYTHONPATH": str(APP_SRC),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": self.pg.primary_url,
            "DATABASE_READ_URL": self.pg.replica_url,
            "REDIS_SENTINELS": f"{LOCALHOST}:{self.redis.sentinel_port}",
            "REDIS_MASTER_NAME": self.redis.master_name,
            "REDIS_USERNAME": "tutormax",
            "REDIS_PASSWORD": self.redis.app_password,
            "REDIS_SENTINEL_PASSWORD": self.redis.sentinel_password,
            "LOG_LEVEL": "INFO",
        }
        env.update(extra)
        return env

    def spawn(self, args: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
        """Start an app process (its own process group) logging to ``<base>/<log_name>.log``."""
        log = (self.base / f"{log_name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.base,
        )
        self.apps.append(proc)
        return proc

    def start_uvicorn(self, instance_id: str, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
        """One uvicorn process serving the app; returns it and its base URL once /health answers 200."""
        port = free_port()
        proc = self.spawn(
            ["-m", "uvicorn", "--factory", "tutormax.api.app:create_app", "--host", LOCALHOST, "--port", str(port),
             "--no-access-log"],
            self.env(API_INSTANCE_ID=instance_id, **extra),
            f"uvicorn-{instance_id}",
        )  # fmt: skip
        url = f"http://{LOCALHOST}:{port}"
        wait_for_health(url, proc)
        return proc, url

    def log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, keep: bool = False) -> None:
        for proc in reversed(self.apps):
            stop_process(proc)
        self.apps.clear()
        self.redis.stop()
        self.pg.stop()
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)


def wait_for_health(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    """Wait until ``url``/health answers 200 (fail early if ``proc`` died)."""

    def healthy() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        return httpx.get(f"{url}/health", timeout=2).status_code == 200

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if healthy():
                return
        except RuntimeError:
            raise
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout} s")


@contextlib.contextmanager
def stack_for_tests() -> Iterator[Stack]:
    """A started Stack, stopped at the end."""
    stack = Stack.start()
    try:
        yield stack
    finally:
        stack.stop(keep=bool(os.environ.get("TUTORMAX_KEEP_TEST_DIR")))
