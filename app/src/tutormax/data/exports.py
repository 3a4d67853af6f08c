"""SQL for CSV exports, stored in PostgreSQL so that any API instance can serve them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg.types.json import Jsonb

from tutormax.data.db import Conn
from tutormax.domain import Export

_COLUMNS = "id, kind, status, params, row_count, size_bytes, error, created_at, finished_at, expires_at"

# requested_lsn: every write committed before the request is at or before this WAL position.
_INSERT = (
    "INSERT INTO exports (id, kind, params, expires_at, requested_lsn)"  # noqa: S608 - constant columns
    f" VALUES (%s, %s, %s, %s, pg_current_wal_insert_lsn()) RETURNING {_COLUMNS}"
)


async def insert(
    conn: Conn, export_id: uuid.UUID, kind: str, params: dict[str, Any], expires_at: dt.datetime
) -> Export:
    """Record a pending export."""
    cur = await conn.execute(_INSERT, (export_id, kind, Jsonb(params), expires_at))
    row = await cur.fetchone()
    assert row is not None
    return Export.model_validate(row)


async def get(conn: Conn, export_id: uuid.UUID) -> Export | None:
    """An export's state, or None."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM exports WHERE id = %s AND expires_at > now()", (export_id,))  # noqa: S608 - constant columns
    row = await cur.fetchone()
    return None if row is None else Export.model_validate(row)


async def content(conn: Conn, export_id: uuid.UUID) -> tuple[str, bytes | None] | None:
    """(status, CSV bytes when done) or None when the export does not exist."""
    cur = await conn.execute("SELECT status, content FROM exports WHERE id = %s AND expires_at > now()", (export_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    data = row["content"]
    return str(row["status"]), bytes(data) if data is not None else None


async def start(conn: Conn, export_id: uuid.UUID) -> dict[str, Any] | None:
    """Mark an export running; returns kind, params and requested_lsn, None if it is gone or done."""
    cur = await conn.execute(
        """
        UPDATE exports SET status = 'running', started_at = now(), error = NULL
        WHERE id = %s AND status IN ('pending', 'running', 'failed')
        RETURNING kind, params, requested_lsn::text AS requested_lsn
        """,
        (export_id,),
    )
    return await cur.fetchone()


async def finish(conn: Conn, export_id: uuid.UUID, data: bytes, row_count: int) -> None:
    """Store the CSV and mark the export done."""
    await conn.execute(
        """
        UPDATE exports SET status = 'done', content = %s, content_type = 'text/csv', row_count = %s,
               size_bytes = %s, finished_at = now()
        WHERE id = %s
        """,
        (data, row_count, len(data), export_id),
    )


async def fail(conn: Conn, export_id: uuid.UUID, error: str) -> None:
    """Mark an export failed with a short reason."""
    await conn.execute(
        "UPDATE exports SET status = 'failed', error = %s, finished_at = now() WHERE id = %s",
        (error[:500], export_id),
    )


async def purge_expired(conn: Conn) -> int:
    """Delete expired exports; returns how many."""
    cur = await conn.execute("DELETE FROM exports WHERE expires_at <= now()")
    return cur.rowcount
