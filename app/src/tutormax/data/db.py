"""PostgreSQL access: a pool for the primary, a pool for the replica, and the read routing rule.

Writes use ``Database.primary()``. Reads use ``Database.read(min_lsn)``: the replica, unless

* no replica is configured (``DATABASE_READ_URL`` unset or equal to ``DATABASE_URL``),
* the replica cannot be reached (then the primary serves reads for a few seconds), or
* the caller needs to see a write whose commit LSN it knows (``min_lsn``) and the replica has not
  replayed that far yet (read-your-own-write).

Which server answered is recorded in a context variable so the HTTP layer can report it in the
``X-Read-Source`` response header.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypeAlias, TypeVar

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

log = logging.getLogger(__name__)

Conn: TypeAlias = psycopg.AsyncConnection[DictRow]
T = TypeVar("T")

#: Errors that mean "the database is not usable right now" (answered with 503, never 500).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError, PoolTimeout)

#: Per-request record of which sources served reads ("primary", "replica", "cache").
read_sources: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("read_sources", default=None)


def note_read_source(source: str) -> None:
    """Record that a read was served by ``source`` (no-op outside a traced request)."""
    sources = read_sources.get()
    if sources is not None:
        sources.append(source)


def _pool(
    conninfo: str, name: str, *, min_size: int, max_size: int, timeout: float, kwargs: dict[str, object]
) -> AsyncConnectionPool[Conn]:
    return AsyncConnectionPool(
        conninfo,
        connection_class=psycopg.AsyncConnection[DictRow],
        kwargs=kwargs,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        name=name,
        open=False,
        # A pooled connection may have died with a server restart; check it before handing it out.
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=3600,
    )


class Database:
    """Connection pools to the primary and (optionally) the replica."""

    #: After the replica failed, serve reads from the primary for this many seconds.
    REPLICA_BACKOFF_SECONDS = 5.0

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
    ) -> None:
        kwargs: dict[str, object] = {
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": connect_timeout,
            "application_name": application_name[:63],
            "options": f"-c statement_timeout={statement_timeout_ms}",
        }
        self._timeout = timeout
        self._primary = _pool(
            primary_dsn, "primary", min_size=min_size, max_size=max_size, timeout=timeout, kwargs=kwargs
        )
        self._replica = (
            _pool(replica_dsn, "replica", min_size=min_size, max_size=max_size, timeout=timeout, kwargs=kwargs)
            if replica_dsn
            else None
        )
        self._replica_down_until = 0.0

    @property
    def has_replica(self) -> bool:
        """True when reads have a replica to go to."""
        return self._replica is not None

    async def open(self) -> None:
        """Start the pools without waiting: the service starts even while a database is down."""
        await self._primary.open(wait=False)
        if self._replica is not None:
            await self._replica.open(wait=False)

    async def close(self) -> None:
        """Close both pools."""
        await self._primary.close()
        if self._replica is not None:
            await self._replica.close()

    @asynccontextmanager
    async def primary(self, timeout: float | None = None) -> AsyncIterator[Conn]:
        """A connection to the primary (autocommit: wrap writes in ``conn.transaction()``)."""
        async with self._primary.connection(timeout=timeout or self._timeout) as conn:
            yield conn

    @asynccontextmanager
    async def read(self, min_lsn: str | None = None) -> AsyncIterator[Conn]:
        """A connection for reading: the replica when it is usable and fresh enough, else the primary."""
        async with self._read(min_lsn) as (conn, _on_replica):
            yield conn

    async def fetch_one(self, query: Callable[[Conn], Awaitable[T | None]], min_lsn: str | None = None) -> T | None:
        """Run ``query`` on a read connection; if the replica has no row, ask the primary too.

        Write markers live in Redis and can be lost (Redis failover, expiry during a long lag), so
        "not on the replica" is confirmed on the primary before it becomes a 404.
        """
        async with self._read(min_lsn) as (conn, on_replica):
            result = await query(conn)
        if result is None and on_replica:
            async with self._primary.connection(timeout=self._timeout) as conn:
                note_read_source("primary")
                result = await query(conn)
        return result

    @asynccontextmanager
    async def _read(self, min_lsn: str | None) -> AsyncIterator[tuple[Conn, bool]]:
        async with AsyncExitStack() as stack:
            conn: Conn | None = None
            if self._replica is not None and time.monotonic() >= self._replica_down_until:
                try:
                    conn = await stack.enter_async_context(self._replica.connection(timeout=min(self._timeout, 1.0)))
                    if min_lsn is not None and not await _has_replayed(conn, min_lsn):
                        conn = None
                except UNAVAILABLE_ERRORS as exc:
                    log.warning("replica unavailable, reading from the primary: %s", type(exc).__name__)
                    self._replica_down_until = time.monotonic() + self.REPLICA_BACKOFF_SECONDS
                    conn = None
            on_replica = conn is not None
            if conn is None:
                conn = await stack.enter_async_context(self._primary.connection(timeout=self._timeout))
            note_read_source("replica" if on_replica else "primary")
            # One yield, the last statement: the exit stack's cleanup is all that follows it.
            yield conn, on_replica

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


async def _has_replayed(conn: Conn, lsn: str) -> bool:
    # NULL when the server is not in recovery (a promoted replica has everything).
    cur = await conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn AS ok", (lsn,))
    row = await cur.fetchone()
    return row is None or row["ok"] is None or bool(row["ok"])
