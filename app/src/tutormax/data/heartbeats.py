"""SQL for the beat heartbeats: a row per run of the heartbeat task (which beat scheduled it, which
worker ran it, when), kept a week. The newest row tells which beat is active and that it schedules."""

from __future__ import annotations

import datetime as dt

from tutormax.data.db import Conn

#: Rows older than this are deleted by each run.
RETENTION = dt.timedelta(days=7)


async def record(conn: Conn, beat: str, worker: str, sent_at: dt.datetime | None) -> int:
    """Store one run; delete the rows past RETENTION. Returns the new row's id."""
    await conn.execute("DELETE FROM beat_heartbeats WHERE ran_at < now() - %s", (RETENTION,))
    cur = await conn.execute(
        "INSERT INTO beat_heartbeats (beat, worker, sent_at) VALUES (%s, %s, %s) RETURNING id", (beat, worker, sent_at)
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["id"])
