"""PostgreSQL failover (issue 18, Patroni): multi-host URLs, the write pool following a promotion,
reads that go around a replica that is down or hangs.

These tests run PostgreSQL pairs of their own (primary + streaming replica, from the harness), so
the session's shared servers are never stopped or promoted. Both URLs list both servers, as the
deployment writes them: ``DATABASE_URL=...@P1,P2/...?target_session_attrs=read-write`` and
``DATABASE_READ_URL=...@P1,P2/...?target_session_attrs=standby``. Figures are printed (``-s``);
the bounds are correctness bounds with margin for a shared machine, not benchmarks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from conftest import run_migrate, settings_from, unique_email
from harness import Postgres, Stack, stop_process, wait_until
from tutormax.data.db import (
    MONITOR_INTERVAL,
    PRIMARY_READ_POOL,
    PROBE_TIMEOUT,
    UNAVAILABLE_ERRORS,
    Conn,
    Database,
    read_sources,
)
from tutormax.data.resources import open_resources

#: A write succeeds again this soon after the promotion (aim: a second or two).
WRITE_RECOVERY_BOUND = 3.0
#: Seconds between stopping the old primary and promoting the replica: a leader election within
#: Patroni's default ttl of 30 s. psycopg_pool's own backoff (1, 2, 4, 8, 16 s) would by then wait
#: up to 16 s between attempts (measured with it: writes back 12.1 s after the promotion).
PROMOTION_AFTER = 20.0
#: A read-only demotion leaves the old primary up; how soon the promotion follows matters less.
PROMOTION_AFTER_READ_ONLY = 3.0
#: After the first second of a replica outage, no read takes longer than this.
READ_BOUND = 0.2
#: Concurrent readers in the outage drill, against a read pool of READERS // 2 connections.
READERS = 6
#: Reads come from the replica again this soon after it is back.
READ_RETURN_BOUND = 5.0


def write_url(pg: Postgres, ports: list[int] | None = None) -> str:
    return pg.multi_host_url(ports or [pg.primary_port, pg.replica_port], "read-write")


def read_url(pg: Postgres, ports: list[int] | None = None) -> str:
    return pg.multi_host_url(ports or [pg.primary_port, pg.replica_port], "standby")


def new_pair(stack: Stack, name: str) -> Postgres:
    """A started pair with the app's schema, migrated through a multi-host URL that names the standby first."""
    pg = Postgres(stack.base / name)
    pg.start()
    done = run_migrate(write_url(pg, [pg.replica_port, pg.primary_port]))
    assert done.returncode == 0, done.stderr
    pg.wait_replayed()
    return pg


@pytest.fixture(scope="module")
def pair(stack: Stack) -> Iterator[Postgres]:
    """A pair for the tests that bring its replica back afterwards."""
    pg = new_pair(stack, "pg-pair")
    yield pg
    pg.stop()


async def _in_recovery(conn: Conn) -> bool:
    cur = await conn.execute("SELECT pg_is_in_recovery() AS standby")
    row = await cur.fetchone()
    assert row is not None
    return bool(row["standby"])


def test_multi_host_urls_reach_the_leader_and_a_standby_with_keepalives_and_tcp_user_timeout(pair: Postgres) -> None:
    async def run() -> None:
        # Listed standby first for writes, primary first for reads: libpq picks by kind, not by order.
        db = Database(write_url(pair, [pair.replica_port, pair.primary_port]), read_url(pair))
        await db.open()
        try:
            async with db.primary() as conn:
                assert await _in_recovery(conn) is False
                with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 5000
            token = read_sources.set([])
            async with db.read() as conn:
                assert await _in_recovery(conn) is True
            assert read_sources.get() == ["replica"]
            read_sources.reset(token)
        finally:
            await db.close()

    asyncio.run(run())


def test_the_read_pool_connects_to_the_standby_the_probe_reached_never_to_a_silent_host_listed_first(
    pair: Postgres,
) -> None:
    """A host that takes the TCP connection and never answers (a lost host costs the same: libpq's
    connect_timeout) listed before the standby: the probe pays for it once, in the background; the
    read pool connects to the standby alone, so readers that need new connections get them at once."""

    async def hold(db: Database) -> str:
        token = read_sources.set([])
        try:
            async with db.read() as conn:
                await conn.execute("SELECT pg_sleep(0.2)")
            return ",".join(read_sources.get() or [])
        finally:
            read_sources.reset(token)

    async def run(silent: int) -> tuple[str, float, list[str]]:
        url = read_url(pair, [pair.primary_port, silent, pair.replica_port])
        db = Database(write_url(pair), url, min_size=1, max_size=6, connect_timeout=2)
        await db.open()
        try:
            await asyncio.wait_for(_until(lambda: db.replica_state == "up"), 20)
            target = db._read_conninfo()
            started = time.monotonic()
            sources = await asyncio.gather(*(hold(db) for _ in range(6)))  # five more connections than kept
            return target, time.monotonic() - started, list(sources)
        finally:
            await db.close()

    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:  # listens, never accepts
        silent_port = silent.getsockname()[1]
        target, took, sources = asyncio.run(run(silent_port))
    assert f"port={pair.replica_port}" in target, target
    assert str(silent_port) not in target
    assert sources == ["replica"] * 6, sources
    # Six reads of 0.2 s at once on new connections: well under the 2 s a silent host costs.
    assert took < 1.5, took
    print(f"\nsix concurrent reads on new connections past a silent host: {took:.2f} s")


REFUSALS = """
CREATE OR REPLACE FUNCTION refuse_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'refused as a demoted server would' USING ERRCODE = TG_ARGV[0];
END $$;
CREATE TABLE IF NOT EXISTS refusals (sqlstate text);
ALTER TABLE refusals OWNER TO tutormax;
"""


def _refuse(pg: Postgres, table: str, sqlstate: str, when: str = "true") -> None:
    """Inserts into ``table`` (matching ``when``) fail with ``sqlstate``, as a read-only or stopping server's do."""
    with pg.admin(database="tutormax") as conn:
        conn.execute(REFUSALS)
        conn.execute(f"DROP TRIGGER IF EXISTS refuse ON {table}")
        conn.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH ROW WHEN ({when}) "
            f"EXECUTE FUNCTION refuse_write('{sqlstate}')"
        )


@pytest.mark.parametrize(
    ("sqlstate", "error"),
    [
        ("25006", psycopg.errors.ReadOnlySqlTransaction),
        ("57P01", psycopg.errors.AdminShutdown),
        ("57P02", psycopg.errors.CrashShutdown),
        ("57P03", psycopg.errors.CannotConnectNow),
    ],
)
def test_a_write_refused_as_read_only_or_by_a_shutdown_is_unavailable_and_its_connection_is_dropped(
    pair: Postgres, sqlstate: str, error: type[Exception]
) -> None:
    _refuse(pair, "refusals", sqlstate)

    async def run() -> None:
        db = Database(write_url(pair), max_size=1)
        await db.open()
        try:
            used: list[Conn] = []

            async def write() -> None:
                async with db.primary() as conn:
                    used.append(conn)
                    await conn.execute("INSERT INTO refusals VALUES (%s)", (sqlstate,))

            with pytest.raises(error) as caught:
                await write()
            assert isinstance(caught.value, UNAVAILABLE_ERRORS)  # answered 503, never 500
            assert used[0].closed, "a connection that reached a refusing server went back into the pool"
            async with db.primary() as conn:
                assert conn is not used[0]
                await conn.execute("SELECT 1")
        finally:
            await db.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def pair_api(stack: Stack, pair: Postgres) -> Iterator[str]:
    """An API instance whose URLs list both servers of ``pair``."""
    proc, url = stack.start_uvicorn(
        "api-patroni", DATABASE_URL=write_url(pair), DATABASE_READ_URL=read_url(pair), DATABASE_POOL_TIMEOUT="2"
    )
    yield url
    stop_process(proc)


@pytest.mark.parametrize(("sqlstate", "reason"), [("25006", "read-only"), ("57P01", "shutting down")])
def test_a_refused_write_is_a_503_with_retry_after_and_the_reason_then_writes_work_again(
    pair: Postgres, pair_api: str, sqlstate: str, reason: str
) -> None:
    _refuse(pair, "tutors", sqlstate, when="NEW.name = 'Refused'")
    with httpx.Client(base_url=pair_api, timeout=15) as client:
        refused = client.post("/api/tutors", json={"name": "Refused", "email": unique_email(), "subjects": ["x"]})
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert reason in refused.json()["detail"]
        assert "database" in refused.json()["detail"]
        created = client.post("/api/tutors", json={"name": "Fine", "email": unique_email(), "subjects": ["x"]})
        assert created.status_code == 201, created.text


@dataclass
class Read:
    started: float
    took: float
    sources: list[str]
    replica_requests: int
    error: str | None


async def _read_through(db: Database, stop: asyncio.Event, interval: float = 0.1) -> list[Read]:
    """Sequential reads (``fetch_one``, the read-by-id path) every ``interval`` s until ``stop``."""
    # The pool's own request count proves that reads did not ask it.
    replica_pool = db._replica
    assert replica_pool is not None
    reads = []
    while not stop.is_set():
        token = read_sources.set([])
        started = time.monotonic()
        error = None
        try:
            await db.fetch_one(_in_recovery)
        except Exception as exc:
            error = repr(exc)
        reads.append(
            Read(
                started,
                time.monotonic() - started,
                list(read_sources.get() or []),
                replica_pool.get_stats()["requests_num"],
                error,
            )
        )
        read_sources.reset(token)
        await asyncio.sleep(interval)
    return reads


@pytest.mark.parametrize("outage", ["stopped", "hung"])
def test_reads_skip_a_replica_that_is_down_or_hangs_after_the_first_second_and_return_to_it(
    pair: Postgres, outage: str
) -> None:
    async def run() -> dict[str, Any]:
        db = Database(write_url(pair), read_url(pair), min_size=1, max_size=READERS // 2)
        await db.open()
        try:
            await asyncio.wait_for(_until(lambda: db.replica_state == "up"), 10)
            stop = asyncio.Event()
            # More readers than the pool has connections: some wait in the pool's queue when it hangs.
            readers = [asyncio.create_task(_read_through(db, stop)) for _ in range(READERS)]
            await asyncio.sleep(0.5)
            if outage == "stopped":
                await asyncio.to_thread(pair.stop_server, pair.replica_dir, "immediate")
                down = time.monotonic()
                await asyncio.sleep(5)
                resumed_at = time.monotonic()
                await asyncio.to_thread(pair.start_server, pair.replica_dir)
            else:
                with pair.hung(pair.replica_dir):
                    down = time.monotonic()
                    await asyncio.sleep(5)
                    resumed_at = time.monotonic()
            resumed = time.monotonic()  # the replica answers from here on
            await asyncio.wait_for(_until(lambda: db.replica_state == "up"), READ_RETURN_BOUND + 5)
            await asyncio.sleep(1.0)
            stop.set()
            reads = sorted((r for done in await asyncio.gather(*readers) for r in done), key=lambda r: r.started)
        finally:
            await db.close()
        return {"reads": reads, "down": down, "resumed_at": resumed_at, "resumed": resumed}

    result = asyncio.run(run())
    reads: list[Read] = result["reads"]
    down, resumed_at, resumed = result["down"], result["resumed_at"], result["resumed"]
    assert [r for r in reads if r.error] == [], "a read failed"
    during = [r for r in reads if down <= r.started < resumed_at]
    # Reads under way when it went (running a query, or waiting for a connection or its check) end
    # when the monitor's probe finds it gone (at most MONITOR_INTERVAL + PROBE_TIMEOUT), not later.
    found_by = down + MONITOR_INTERVAL + PROBE_TIMEOUT
    held = [
        (round(r.started - down, 2), round(r.took, 3))
        for r in during
        if r.started < found_by and r.started + r.took > found_by + READ_BOUND
    ]
    assert held == [], f"reads held past the probe's finding (started s after the outage, took s): {held}"
    assert held == [], f"reads of the first second held past it (started s after the outage, took s): {held}"

    settled = [r for r in during if r.started >= down + 1.0]
    assert len(settled) >= 30, len(settled)
    slow = [(round(r.started - down, 2), round(r.took, 3)) for r in settled if r.took > READ_BOUND]
    assert slow == [], f"reads slower than {READ_BOUND} s after the first second: {slow}"
    assert all(r.sources == ["primary"] for r in settled)
    assert settled[0].replica_requests == settled[-1].replica_requests, "reads asked the replica pool while it was down"
    back = next(r for r in reads if r.started >= resumed and r.sources == ["replica"])
    back_after = back.started + back.took - resumed
    assert back_after < READ_RETURN_BOUND
    first_second = max((r.took for r in during if r.started < down + 1.0), default=0.0)
    print(
        f"\nreplica {outage}: {len(during)} reads during 5 s, slowest in the first second {first_second:.3f} s, "
        f"slowest after it {max(r.took for r in settled):.3f} s; reads from the replica again "
        f"{back_after:.2f} s after it was back"
    )
    pair.wait_replayed(30)


async def _until(check: Any, interval: float = 0.02) -> None:
    while not check():
        await asyncio.sleep(interval)


def test_the_worker_s_resources_start_and_stop_the_replica_monitor(stack: Stack) -> None:
    """The worker opens resources per task (``open_resources(api=False)`` in ``asyncio.run``)."""
    name = f"monitor-{time.monotonic_ns()}"

    async def run() -> None:
        async with open_resources(settings_from(stack.env(API_INSTANCE_ID=name)), api=False) as r:
            assert r.db.monitoring
            await asyncio.wait_for(_until(lambda: r.db.replica_state == "up"), 10)
            token = read_sources.set([])
            async with r.db.read() as conn:
                await conn.execute("SELECT 1")
            assert read_sources.get() == ["replica"]
            read_sources.reset(token)
        assert not r.db.monitoring
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    asyncio.run(run())

    def replica_sessions() -> int:
        with stack.pg.admin(stack.pg.replica_port) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (f"tutormax-worker-{name}",)
            ).fetchone()
            assert row is not None
            return int(row[0])

    wait_until(lambda: replica_sessions() == 0, 5, "the monitor's replica connection closed")


def test_resources_closed_at_any_moment_leave_no_task_or_error_behind(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A task's resources may close while the monitor's probe is under way (connecting, querying)."""
    settings = settings_from(stack.env(API_INSTANCE_ID="monitor-close"))

    async def run() -> None:
        for i in range(30):
            async with open_resources(settings, api=False) as r:
                await asyncio.sleep(i * 0.001)
            assert not r.db.monitoring
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(run())
        gc.collect()  # unretrieved task exceptions are reported when the task is collected
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


@pytest.mark.parametrize("demotion", ["stopped", "read-only"])
def test_the_write_pool_follows_a_promotion_without_a_restart(stack: Stack, demotion: str) -> None:
    """The old primary is stopped (or made read-only and left running), the replica promoted
    some seconds later; the same Database writes to the new leader soon after."""
    pg = new_pair(stack, f"pg-promote-{demotion}")
    try:
        after = PROMOTION_AFTER if demotion == "stopped" else PROMOTION_AFTER_READ_ONLY
        figures = asyncio.run(_promote_while_writing(pg, demotion, after))
    finally:
        pg.stop()
    print(
        f"\nPostgreSQL failover ({demotion}): writes work {figures['recovered']:.2f} s after the promotion "
        f"({figures['promote_s']:.2f} s for pg_ctl promote); {figures['failed']} writes refused during the "
        f"{after:.0f} s without a leader, all with 503 errors: {figures['errors']}"
    )
    assert figures["recovered"] < WRITE_RECOVERY_BOUND
    assert figures["read_sources"] == ["primary"]  # no standby left: reads go to the new leader


async def _promote_while_writing(pg: Postgres, demotion: str, after: float) -> dict[str, Any]:
    db = Database(write_url(pg), read_url(pg), min_size=2, max_size=4)
    await db.open()
    try:
        async with db.primary() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS failover_writes (at timestamptz DEFAULT now())")
        if demotion == "stopped":
            await asyncio.to_thread(pg.stop_server, pg.primary_dir)
        else:
            with pg.admin() as conn:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                conn.execute("SELECT pg_reload_conf()")
        promoted: list[float] = []

        async def promote_later() -> float:
            await asyncio.sleep(after)
            start = time.monotonic()
            await asyncio.to_thread(pg.promote, pg.replica_dir)
            promoted.append(time.monotonic())
            return promoted[0] - start

        promotion = asyncio.create_task(promote_later())
        errors: dict[str, int] = {}
        failed = 0
        deadline = time.monotonic() + after + 30
        while time.monotonic() < deadline:
            try:
                async with db.primary() as conn:
                    await conn.execute("INSERT INTO failover_writes DEFAULT VALUES")
            except UNAVAILABLE_ERRORS as exc:
                failed += 1
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            else:
                if promoted:
                    break
            await asyncio.sleep(0.1)
        recovered = time.monotonic() - promoted[0] if promoted else float("inf")
        promote_s = await promotion
        token = read_sources.set([])
        async with db.read() as conn:
            await conn.execute("SELECT 1")
        sources = list(read_sources.get() or [])
        read_sources.reset(token)
    finally:
        await db.close()
    return {"recovered": recovered, "promote_s": promote_s, "failed": failed, "errors": errors, "read_sources": sources}


def test_reads_on_the_primary_do_not_queue_behind_writes_waiting_for_a_synchronous_standby(pair: Postgres) -> None:
    """A lost synchronous standby holds every commit until Patroni names another; reads that go to the
    primary meanwhile (no replica here) still find a connection of the write pool."""
    stalled = 6  # more writes than the write pool has connections

    async def run() -> tuple[list[float], int]:
        db = Database(write_url(pair), None, min_size=1, max_size=4, timeout=3.0, primary_read_pool=PRIMARY_READ_POOL)
        await db.open()
        writes: list[asyncio.Task[None]] = []
        try:
            async with db.primary() as conn:
                await conn.execute("CREATE TABLE IF NOT EXISTS stalled_commits (id serial PRIMARY KEY)")
            await asyncio.to_thread(_synchronous_standby, pair, "nobody")  # no such standby: commits wait
            writes = [asyncio.create_task(_insert(db)) for _ in range(stalled)]
            await asyncio.sleep(0.5)
            took = []
            for _ in range(20):
                started = time.monotonic()
                await db.fetch_one(_in_recovery)
                took.append(time.monotonic() - started)
            waiting = sum(1 for w in writes if not w.done())
        finally:
            await asyncio.to_thread(_synchronous_standby, pair, "")
            await asyncio.gather(*writes, return_exceptions=True)
            await db.close()
        return took, waiting

    took, waiting = asyncio.run(run())
    assert waiting == stalled, f"only {waiting} of {stalled} writes were waiting on their commit"
    assert max(took) < READ_BOUND, f"reads waited behind the stalled writes: {[round(t, 3) for t in took]}"


async def _insert(db: Database) -> None:
    async with db.primary() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = on")  # the test servers run with it off
        await conn.execute("INSERT INTO stalled_commits DEFAULT VALUES")


def _synchronous_standby(pg: Postgres, name: str) -> None:
    with pg.admin() as conn:
        conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{name}'")
        conn.execute("SELECT pg_reload_conf()")
