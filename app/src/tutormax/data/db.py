"""PostgreSQL access: a pool for the primary, a pool for the replica, and the read routing rule.

Writes use ``Database.primary()``. Reads use ``Database.read(min_lsn)``: the replica, unless

* no replica is configured (``DATABASE_READ_URL`` unset or equal to ``DATABASE_URL``),
* the replica is down or hangs (then the primary serves reads until the replica answers again), or
* the caller needs to see a write whose commit LSN it knows (``min_lsn``) and the replica has not
  replayed that far yet (read-your-own-write).

Which server answered is recorded in a context variable so the HTTP layer can report it in the
``X-Read-Source`` response header.

**Failover.** With Patroni the leader can change at any time, and both URLs list every PostgreSQL
host: ``DATABASE_URL`` with ``target_session_attrs=read-write`` (the leader, whichever host it is),
``DATABASE_READ_URL`` with ``target_session_attrs=standby`` (any standby). What psycopg does with
such a URL when it opens an async connection (read in psycopg 3.3.9,
``AsyncConnection.connect`` and ``_conninfo_attempts_async.py``):

* it splits ``host=a,b`` / ``port=p,q`` into one attempt per host (and per address a host name
  resolves to, resolved asynchronously) and tries them in the order given
  (``load_balance_hosts=random`` shuffles them);
* every attempt is a single-host libpq connection with the whole ``connect_timeout`` (psycopg
  enforces libpq's minimum of 2 s), so a host that swallows packets costs ``connect_timeout`` per
  new connection before the next host is tried;
* ``target_session_attrs`` goes into every attempt and libpq checks it on that server (``read-write``:
  not read-only; ``standby``: in hot standby), so a server of the wrong kind is just a failed attempt;
  ``prefer-standby`` is done by psycopg as every host with ``standby`` first, then every host again
  with ``any``;
* when every attempt fails, the one ``OperationalError`` lists each host's failure (host and port,
  never the password).

A pooled connection stays with the server it reached, so the pools are kept on the right servers:

* a connection is checked before it is handed out, within ``CHECK_TIMEOUT``: the write pool's must
  take writes, the read pool's must be a standby. A failed check closes it and drains its pool (its
  siblings reached the same server); new connections go through the multi-host URL again;
* a write refused as read-only (SQLSTATE 25006) or ended by a server shutdown (57P01, 57P02, 57P03)
  closes its connection and drains the pool the same way, and is answered 503 (``UNAVAILABLE_ERRORS``);
* a pool gives up a failed connection attempt after ``RECONNECT_TIMEOUT`` rather than retrying with
  psycopg_pool's backoff (1, 2, 4, 8 ... s: after a 30 s leader election the new leader would go
  unused for up to 30 s more). Instead the monitor (one task per ``Database``, so one per process;
  ``open()`` starts it, ``close()`` stops it) starts a new attempt every ``MONITOR_INTERVAL`` while
  requests wait for a connection or a pool is below its minimum;
* the monitor also asks the replica every ``MONITOR_INTERVAL`` whether it is a working standby,
  within ``PROBE_TIMEOUT`` (so a replica that stops answering is found within a second). The probe
  has a connection of its own, made through the multi-host URL; the read pool then connects to the
  one standby that connection reached (``_pin_replica``), so a new read connection never waits
  ``connect_timeout`` on a dead host listed before it, and when the probe reconnects to another
  standby the read pool moves there (its connections are made again before reads return to it).
  While the replica does not answer, reads go to the primary without touching the read pool,
  and reads that were waiting on the replica are cut off, whether running a query or still waiting
  for a connection or its check (``fetch_one`` then asks the primary);
* reads that go to the primary (the replica down, a read-your-own-write, a row not yet on the
  replica) have a pool of their own in the API (``primary_read_pool`` connections, at most, on the
  leader): a write can wait seconds on its commit (a synchronous standby lost: until Patroni names
  another, up to its loop_wait), and those reads must not queue behind it for the write pool;
* TCP keepalives and ``tcp_user_timeout`` (``TCP_KWARGS``) end connections to a host that vanished
  (power off, network partition) instead of waiting minutes for TCP. A server *process* that hangs
  is not caught by TCP (its kernel still acknowledges everything), only by the bounded checks: on a
  timeout the connection's socket is shut down, not the query cancelled, because psycopg answers a
  cancelled query with a cancel request and up to 10 s more of waiting for the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Literal, TypeAlias, TypeVar

import psycopg
from psycopg import errors
from psycopg.conninfo import make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

log = logging.getLogger(__name__)

Conn: TypeAlias = psycopg.AsyncConnection[DictRow]
T = TypeVar("T")

#: Errors that mean "the database is not usable right now" (answered with 503, never 500).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError, PoolTimeout, errors.ReadOnlySqlTransaction)

#: Errors after which the server of a connection cannot take writes: demoted to read-only, or going away.
SERVER_GONE: tuple[type[psycopg.Error], ...] = (
    errors.ReadOnlySqlTransaction,  # 25006
    errors.AdminShutdown,  # 57P01
    errors.CrashShutdown,  # 57P02
    errors.CannotConnectNow,  # 57P03
)

#: True on a server that takes writes (the leader).
WRITABLE = "SELECT current_setting('transaction_read_only') = 'off'"
#: Seconds a server has to answer a check at checkout.
CHECK_TIMEOUT = 1.0
#: Connections of the API's pool for reads on the primary (each process; playbooks count them in
#: the connection budget): reads are short, two serve hundreds a second.
PRIMARY_READ_POOL = 2
#: Seconds the replica has to answer the monitor's probe. With MONITOR_INTERVAL, a replica that stops
#: answering is found within 0.75 s (a quarter of a second spare in "nothing after the first
#: second" for a loaded host): reads go to the primary from then on.
PROBE_TIMEOUT = 0.5
#: Seconds between the monitor's rounds: replica probe, and a new connection attempt for a pool in need.
MONITOR_INTERVAL = 0.25
#: Seconds a pool keeps retrying a failed connection attempt before it leaves that to the monitor.
RECONNECT_TIMEOUT = 1.0
#: libpq TCP settings: an idle connection to a vanished host is found dead after 5 + 3 x 1 s, and
#: one whose sent data stays unacknowledged for 5 s is closed (instead of TCP's ~15 minutes).
TCP_KWARGS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 5000,
}

#: Per-request record of which sources served reads ("primary", "replica", "cache").
read_sources: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("read_sources", default=None)


def note_read_source(source: str) -> None:
    """Record that a read was served by ``source`` (no-op outside a traced request)."""
    sources = read_sources.get()
    if sources is not None:
        sources.append(source)


def unavailable_reason(exc: BaseException) -> str:
    """Why the database could not serve a request, in words for a 503 answer (no server details)."""
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return "the server is read-only, a failover may be under way"
    if isinstance(exc, errors.AdminShutdown | errors.CannotConnectNow):
        return "the server is shutting down or starting up, a failover may be under way"
    if isinstance(exc, errors.CrashShutdown):
        return "the server restarted after a crash"
    if isinstance(exc, errors.QueryCanceled):
        return "the query was cancelled or took too long"
    if isinstance(exc, PoolTimeout):
        return "no connection could be had in time"
    return "no server answered"


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message (psycopg's go on with hints and per-host details)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _lost(exc: BaseException) -> bool:
    """True when ``exc`` says the server (not the query) failed."""
    return isinstance(exc, UNAVAILABLE_ERRORS) and not isinstance(exc, errors.QueryCanceled)


def _sever(conn: Conn) -> None:
    """Shut the connection's socket down: whatever waits on it fails at once, as if the server had closed it."""
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return  # already closed
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


async def _bounded(conn: Conn, query: str, timeout: float) -> object:
    """The first value ``query`` returns, or OperationalError when the server is silent for ``timeout`` s.

    On a timeout (or a cancellation) the connection is severed, which ends the query at once; it is
    then broken and a pool discards it.
    """

    async def run() -> object:
        cur = await conn.execute(query)
        row = await cur.fetchone()
        return None if row is None else next(iter(row.values()))

    task = asyncio.ensure_future(run())
    try:
        done, _pending = await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            _sever(conn)
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                # The severed connection's error, replaced by ours (or by the cancellation): retrieve
                # it, or asyncio logs "Task exception was never retrieved" with a traceback.
                task.exception()
    if not done:
        raise psycopg.OperationalError(f"no answer from the server within {timeout:g} s")
    return task.result()


class _Pool(AsyncConnectionPool[Conn]):
    """A pool whose ``check()`` (run by the monitor) gives each connection ``CHECK_TIMEOUT`` to answer."""

    @staticmethod
    async def check_connection(conn: Conn) -> None:
        """Bounded liveness check (the default waits as long as TCP does)."""
        await _bounded(conn, "SELECT 1", CHECK_TIMEOUT)


def _pool(
    conninfo: str | Callable[[], str],
    name: str,
    *,
    check: Callable[[Conn], Awaitable[None]],
    min_size: int,
    max_size: int,
    timeout: float,
    kwargs: dict[str, object],
) -> _Pool:
    return _Pool(
        conninfo,
        connection_class=psycopg.AsyncConnection[DictRow],
        kwargs=kwargs,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        name=name,
        open=False,
        check=check,
        reconnect_timeout=RECONNECT_TIMEOUT,
    )


class Database:
    """Connection pools to the primary and (optionally) the replica, and the monitor that tends them."""

    def __init__(
        self,
        primary_dsn: str,
        replica_dsn: str | None = None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        connect_timeout: int = 3,
        statement_timeout_ms: int = 15000,
        application_name: str = "tutormax",
        primary_read_pool: int = 0,
    ) -> None:
        self._kwargs: dict[str, object] = {
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": connect_timeout,
            "application_name": application_name[:63],
            "options": f"-c statement_timeout={statement_timeout_ms}",
            **TCP_KWARGS,
        }
        self._timeout = timeout
        self._primary = _pool(
            primary_dsn,
            "primary",
            check=self._check_primary,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs=self._kwargs,
        )
        #: Reads on the primary: a pool of their own (never queued behind writes waiting on their
        #: commit), or with none (a Celery task's reads and writes take turns) the write pool.
        self._primary_reads = (
            _pool(
                primary_dsn,
                "primary-reads",
                check=self._check_primary_reads,
                min_size=min(min_size, primary_read_pool),
                max_size=primary_read_pool,
                timeout=timeout,
                kwargs=self._kwargs,
            )
            if primary_read_pool
            else self._primary
        )
        self._replica_dsn = replica_dsn
        #: The one standby the monitor's probe reached (its host and port in the replica URL): the read
        #: pool connects there, so a new read connection never waits on a dead host listed before it.
        self._replica_target: str | None = None
        self._replica = (
            _pool(
                self._read_conninfo,
                "replica",
                check=self._check_replica,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                kwargs=self._kwargs,
            )
            if replica_dsn
            else None
        )
        #: What the monitor last found: reads use the replica only while it is "up".
        self._replica_state: Literal["unknown", "up", "down"] = "unknown"
        self._replica_known = asyncio.Event()
        #: Set while the replica is "down": readers still waiting for a replica connection give up.
        self._replica_gone = asyncio.Event()
        #: Replica connections lent to readers right now (cut off when the replica stops answering).
        self._replica_lent: set[Conn] = set()
        self._monitor: asyncio.Task[None] | None = None

    def _read_conninfo(self) -> str:
        """Where the read pool connects: the standby the probe found, else the whole replica URL."""
        return self._replica_target or self._replica_dsn or ""

    @property
    def has_replica(self) -> bool:
        """True when reads have a replica to go to."""
        return self._replica is not None

    @property
    def replica_state(self) -> str:
        """``up``, ``down`` or ``unknown`` (before the first probe; ``down`` also without a replica)."""
        return self._replica_state if self._replica is not None else "down"

    @property
    def monitoring(self) -> bool:
        """True while the monitor task runs (between ``open()`` and ``close()``)."""
        return self._monitor is not None and not self._monitor.done()

    async def open(self) -> None:
        """Start the pools without waiting (the service starts even while a database is down) and the monitor."""
        await self._primary.open(wait=False)
        if self._primary_reads is not self._primary:
            await self._primary_reads.open(wait=False)
        if self._replica is not None:
            await self._replica.open(wait=False)
        self._monitor = asyncio.create_task(self._run_monitor(), name="tutormax-db-monitor")

    async def close(self) -> None:
        """Stop the monitor, close both pools."""
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        await self._primary.close()
        if self._primary_reads is not self._primary:
            await self._primary_reads.close()
        if self._replica is not None:
            await self._replica.close()

    @asynccontextmanager
    async def primary(self, timeout: float | None = None) -> AsyncIterator[Conn]:
        """A connection to the primary (autocommit: wrap writes in ``conn.transaction()``).

        A write refused as read-only, or cut by a server shutdown, closes the connection (it is
        never handed out again) and drains the pool before the error goes on to become a 503.
        """
        async with self._primary.connection(timeout=timeout or self._timeout) as conn:
            try:
                yield conn
            except SERVER_GONE as exc:
                log.warning("primary: %s (SQLSTATE %s); reconnecting", unavailable_reason(exc), exc.sqlstate)
                await conn.close()
                await self._primary.drain()
                raise

    @asynccontextmanager
    async def read(self, min_lsn: str | None = None) -> AsyncIterator[Conn]:
        """A connection for reading: the replica when it is usable and fresh enough, else the primary."""
        async with self._read(min_lsn) as (conn, _on_replica):
            yield conn

    async def fetch(self, query: Callable[[Conn], Awaitable[T]], min_lsn: str | None = None) -> T:
        """Run ``query`` on a read connection; when the replica is lost under it, run it again on the
        primary (a read in flight as the replica dies is answered, not a 503)."""
        result, _on_replica = await self._fetch(query, min_lsn)
        return result

    async def fetch_one(self, query: Callable[[Conn], Awaitable[T | None]], min_lsn: str | None = None) -> T | None:
        """``fetch``, and if the replica has no row, ask the primary.

        Write markers live in Redis and can be lost (Redis failover, expiry during a long lag), so
        "not on the replica" is confirmed on the primary before it becomes a 404.
        """
        result, on_replica = await self._fetch(query, min_lsn)
        if result is None and on_replica:
            result = await self._on_primary(query)
        return result

    async def _fetch(self, query: Callable[[Conn], Awaitable[T]], min_lsn: str | None) -> tuple[T, bool]:
        """``query``'s result and whether the replica gave it."""
        on_replica = False
        try:
            async with self._read(min_lsn) as (conn, on_replica):
                return await query(conn), on_replica
        except UNAVAILABLE_ERRORS as exc:
            if not (on_replica and _lost(exc)):
                raise
        return await self._on_primary(query), False

    async def _on_primary(self, query: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._primary_reads.connection(timeout=self._timeout) as conn:
            note_read_source("primary")
            return await query(conn)

    @asynccontextmanager
    async def _read(self, min_lsn: str | None) -> AsyncIterator[tuple[Conn, bool]]:
        async with AsyncExitStack() as stack:
            conn: Conn | None = None
            if self._replica is not None and await self._replica_usable():
                try:
                    conn = await self._replica_connection(stack)
                    self._replica_lent.add(conn)
                    stack.callback(self._replica_lent.discard, conn)
                    if min_lsn is not None and not await _has_replayed(conn, min_lsn):
                        conn = None
                except UNAVAILABLE_ERRORS as exc:
                    self._replica_failed(type(exc).__name__)
                    conn = None
            on_replica = conn is not None
            if conn is None:
                conn = await stack.enter_async_context(self._primary_reads.connection(timeout=self._timeout))
            note_read_source("replica" if on_replica else "primary")
            try:
                yield conn, on_replica
            except UNAVAILABLE_ERRORS as exc:
                if on_replica and _lost(exc):
                    self._replica_failed(type(exc).__name__)
                raise

    async def _replica_connection(self, stack: AsyncExitStack) -> Conn:
        """A connection from the read pool, returned to it when ``stack`` closes.

        The wait (for a free connection, then for its check) ends with OperationalError as soon as
        the replica is found gone, not when the pool's timeout runs out: a connection's check on a
        host that vanished would otherwise hold the read for CHECK_TIMEOUT.
        """
        pool = self._replica
        assert pool is not None
        getconn = asyncio.ensure_future(pool.getconn(min(self._timeout, 1.0)))
        gone = asyncio.ensure_future(self._replica_gone.wait())
        cancelled = False
        try:
            await asyncio.wait({getconn, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            gone.cancel()
            if not getconn.done():
                getconn.cancel()  # a check under way is severed; the pool discards that connection
                await asyncio.wait({getconn})
            if cancelled and not getconn.cancelled() and getconn.exception() is None:
                await pool.putconn(getconn.result())  # it came as the read was cancelled
        if getconn.cancelled():
            raise psycopg.OperationalError("the replica stopped answering")
        conn = getconn.result()
        stack.push_async_callback(pool.putconn, conn)
        return conn

    async def _replica_usable(self) -> bool:
        if self._replica_state == "unknown":
            # Just opened: give the monitor's first probe a moment rather than guess.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replica_known.wait(), CHECK_TIMEOUT)
        return self._replica_state == "up"

    def _replica_failed(self, reason: str, *, cut_readers: bool = False) -> None:
        if self._replica_state != "down":
            log.warning("replica unavailable (%s): reads go to the primary until it answers again", reason)
        self._replica_state = "down"
        self._replica_known.set()
        self._replica_gone.set()
        if cut_readers:
            # Readers waiting on a server that stopped answering would wait as long as their client does.
            for conn in list(self._replica_lent):
                _sever(conn)

    async def commit_lsn(self, conn: Conn) -> str:
        """The primary's WAL position after a commit: a replica that replayed this far has the write."""
        cur = await conn.execute("SELECT pg_current_wal_insert_lsn()::text AS lsn")
        row = await cur.fetchone()
        assert row is not None
        return str(row["lsn"])

    async def ping(self, timeout: float) -> None:
        """Run ``SELECT 1`` on the primary, waiting at most ``timeout`` seconds for a connection."""
        async with self._primary.connection(timeout=timeout) as conn:
            await conn.execute("SELECT 1")

    # ------------------------------------------------------------------ checks and the monitor
    async def _check_primary(self, conn: Conn) -> None:
        await self._check(self._primary, conn, WRITABLE, "read-only")

    async def _check_primary_reads(self, conn: Conn) -> None:
        await self._check(self._primary_reads, conn, WRITABLE, "read-only")

    async def _check_replica(self, conn: Conn) -> None:
        assert self._replica is not None
        await self._check(self._replica, conn, "SELECT pg_is_in_recovery()", "not a standby")

    async def _check(self, pool: _Pool, conn: Conn, query: str, wrong_kind: str) -> None:
        """The pool's check at checkout: the server answers within CHECK_TIMEOUT and is of the right kind."""
        try:
            if not await _bounded(conn, query, CHECK_TIMEOUT):
                raise psycopg.OperationalError(f"the server is {wrong_kind}")
        except psycopg.Error as exc:
            log.warning("pool %s: a connection failed its check (%s); reconnecting", pool.name, _first_line(exc))
            # Its siblings reached the same server: drop them too, new ones go through the URL again.
            await conn.close()
            await pool.drain()
            raise

    async def _run_monitor(self) -> None:
        # A TaskGroup, not gather(): cancelled, it waits for both loops to finish their cleanup
        # (gather() returns as soon as one child is cancelled and leaves the other running).
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_replica())
            group.create_task(self._keep_pools_connecting())

    async def _keep_pools_connecting(self) -> None:
        """Start a connection attempt for a pool that clients wait on or that is below its minimum."""
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            pools = {self._primary, self._primary_reads, self._replica if self._replica_state == "up" else None}
            for pool in pools:
                if pool is None:
                    continue
                stats = pool.get_stats()
                if stats.get("requests_waiting", 0) or stats.get("pool_size", 0) < stats.get("pool_min", 0):
                    # check() drops broken idle connections and grows the pool by one attempt.
                    await _check(pool)

    async def _watch_replica(self) -> None:
        """Probe the replica every MONITOR_INTERVAL on a connection of its own; set the replica state."""
        if self._replica is None or self._replica_dsn is None:
            return
        conn: Conn | None = None
        try:
            while True:
                established = conn is not None
                try:
                    if conn is None:
                        # Bounded by connect_timeout per host (a hung server is caught by the query below).
                        conn = await psycopg.AsyncConnection[DictRow].connect(self._replica_dsn, **self._kwargs)  # type: ignore[arg-type]
                    standby = await _bounded(conn, "SELECT pg_is_in_recovery()", PROBE_TIMEOUT)
                except psycopg.Error as exc:
                    self._replica_failed(_first_line(exc), cut_readers=established)
                    if conn is not None:
                        await conn.close()
                    conn = None
                else:
                    if standby:
                        await self._pin_replica(conn)
                        await self._replica_answers()
                    else:
                        # Promoted: reads go to the write pool (the same server) until a standby exists.
                        self._replica_failed("not a standby")
                        assert conn is not None
                        await conn.close()
                        conn = None
                await asyncio.sleep(MONITOR_INTERVAL)
        finally:
            if conn is not None:
                await conn.close()

    async def _pin_replica(self, conn: Conn) -> None:
        """Point the read pool at the standby the probe's connection reached (the first of the URL's
        hosts that answered as a standby), dropping pooled connections to another server."""
        assert self._replica is not None
        target = make_conninfo(self._replica_dsn or "", host=conn.info.host, port=str(conn.info.port))
        if target == self._replica_target:
            return
        if self._replica_target is not None:
            log.warning("replica: reads go to %s:%s from now on", conn.info.host, conn.info.port)
        idle = int(self._replica.get_stats().get("pool_available", 0))
        self._replica_target = target
        # drain() closes the idle connections and has the pool open as many new ones (to the target).
        await self._replica.drain()
        if not idle:
            await _check(self._replica)  # grows an empty pool by one
        # Before reads come back (the state is not "up" yet): a read then never waits for a new
        # connection's handshake.
        await _until_available(self._replica, max(1, idle))

    async def _replica_answers(self) -> None:
        if self._replica_state == "up":
            return
        if self._replica_state == "down":
            log.warning("replica answers again: reads go to it")
        assert self._replica is not None
        # Drop idle connections that died with the outage, and have one ready for the next read.
        await _check(self._replica)
        self._replica_gone.clear()
        self._replica_state = "up"
        self._replica_known.set()


async def _check(pool: _Pool) -> None:
    """``pool.check()`` that keeps a cancellation: psycopg_pool counts a connection whose check is
    cancelled as broken and goes on, so without this the monitor would outlive ``close()``."""
    await pool.check()
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _until_available(pool: _Pool, count: int) -> None:
    """Wait until ``pool`` has ``count`` idle connections, at most CHECK_TIMEOUT (the pool's own
    workers connect; nothing is started here, so a cancelled wait leaves nothing behind)."""
    deadline = asyncio.get_running_loop().time() + CHECK_TIMEOUT
    while pool.get_stats().get("pool_available", 0) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)


async def _has_replayed(conn: Conn, lsn: str) -> bool:
    # NULL when the server is not in recovery (a promoted replica has everything).
    cur = await conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn AS ok", (lsn,))
    row = await cur.fetchone()
    return row is None or row["ok"] is None or bool(row["ok"])
