"""SQL for daily metrics and performance scores."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg.types.json import Jsonb

from tutormax.data.db import Conn
from tutormax.domain import DailyMetrics, PerformanceScore

_METRIC_COLUMNS = (
    "tutor_id, day, sessions_total, sessions_completed, no_shows, cancellations, minutes_taught, "
    "ratings_count, avg_rating::float8 AS avg_rating"
)


async def aggregate_day(conn: Conn, day: dt.date) -> list[int]:
    """Recompute every tutor's metrics for ``day`` (UTC); returns the tutors whose rows changed.

    Deletes the day's rows and inserts them again from sessions and ratings, in one transaction
    serialised by an advisory lock, so re-running a day always leaves the same rows.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tutormax:aggregate'), %s)", (day.toordinal(),))
        cur = await conn.execute("DELETE FROM daily_metrics WHERE day = %s RETURNING tutor_id", (day,))
        touched = {int(row["tutor_id"]) for row in await cur.fetchall()}
        cur = await conn.execute(
            """
            INSERT INTO daily_metrics (tutor_id, day, sessions_total, sessions_completed, no_shows,
                                       cancellations, minutes_taught, ratings_count, rating_sum, avg_rating)
            SELECT s.tutor_id, %(day)s::date,
                   count(*),
                   count(*) FILTER (WHERE s.status = 'completed'),
                   count(*) FILTER (WHERE s.status = 'no_show'),
                   count(*) FILTER (WHERE s.status = 'cancelled'),
                   coalesce(sum(s.duration_minutes) FILTER (WHERE s.status = 'completed'), 0),
                   count(r.id),
                   coalesce(sum(r.score), 0),
                   round(avg(r.score), 3)
            FROM tutoring_sessions s
            LEFT JOIN ratings r ON r.session_id = s.id
            WHERE s.started_at >= %(day)s::date::timestamp AT TIME ZONE 'UTC'
              AND s.started_at < (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'
            GROUP BY s.tutor_id
            RETURNING tutor_id
            """,
            {"day": day},
        )
        touched.update(int(row["tutor_id"]) for row in await cur.fetchall())
        return sorted(touched)


async def for_tutor(conn: Conn, tutor_id: int, start: dt.date, end: dt.date) -> list[DailyMetrics]:
    """A tutor's daily metrics between ``start`` and ``end`` inclusive, oldest first."""
    cur = await conn.execute(
        f"SELECT {_METRIC_COLUMNS} FROM daily_metrics WHERE tutor_id = %s AND day BETWEEN %s AND %s ORDER BY day",  # noqa: S608 - constant columns
        (tutor_id, start, end),
    )
    return [DailyMetrics.model_validate(row) for row in await cur.fetchall()]


async def rows_between(conn: Conn, start: dt.date, end: dt.date, limit: int) -> list[dict[str, Any]]:
    """All tutors' daily metrics in a date range, for the CSV export."""
    cur = await conn.execute(
        f"SELECT {_METRIC_COLUMNS} FROM daily_metrics WHERE day BETWEEN %s AND %s ORDER BY day, tutor_id LIMIT %s",  # noqa: S608 - constant columns
        (start, end, limit),
    )
    return list(await cur.fetchall())


async def window_totals(conn: Conn, day: dt.date, window_days: int) -> list[dict[str, Any]]:
    """Per tutor, the sums of the metrics over the ``window_days`` days ending with ``day``."""
    cur = await conn.execute(
        """
        SELECT tutor_id,
               sum(sessions_total)::int AS sessions_total,
               sum(sessions_completed)::int AS sessions_completed,
               sum(no_shows)::int AS no_shows,
               sum(cancellations)::int AS cancellations,
               sum(ratings_count)::int AS ratings_count,
               sum(rating_sum)::int AS rating_sum
        FROM daily_metrics
        WHERE day > %s::date - %s AND day <= %s::date
        GROUP BY tutor_id
        HAVING sum(sessions_total) > 0
        ORDER BY tutor_id
        """,
        (day, window_days, day),
    )
    return list(await cur.fetchall())


async def store_scores(conn: Conn, day: dt.date, scores: list[tuple[int, float, dict[str, float]]]) -> None:
    """Insert or replace the scores computed for ``day``."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            """
                INSERT INTO performance_scores (tutor_id, computed_for, score, components)
                VALUES (%s, %s, %s, %s)
                ON CONFLICT (tutor_id, computed_for)
                DO UPDATE SET score = EXCLUDED.score, components = EXCLUDED.components, computed_at = now()
                """,
            [(tutor_id, day, score, Jsonb(components)) for tutor_id, score, components in scores],
        )


async def latest_score(conn: Conn, tutor_id: int) -> PerformanceScore | None:
    """A tutor's most recent score with the one before it."""
    cur = await conn.execute(
        """
        SELECT tutor_id, computed_for, score::float8 AS score, components,
               lag(score::float8) OVER (ORDER BY computed_for) AS previous_score
        FROM performance_scores WHERE tutor_id = %s
        ORDER BY computed_for DESC LIMIT 1
        """,
        (tutor_id,),
    )
    row = await cur.fetchone()
    return None if row is None else PerformanceScore.model_validate(row)


async def queue_drop_notifications(conn: Conn, day: dt.date, threshold: float) -> int:
    """Record a pending notification for every score of ``day`` that dropped by ``threshold`` or more."""
    cur = await conn.execute(
        """
        INSERT INTO score_notifications (score_id, tutor_id, previous_score, score)
        SELECT cur.id, cur.tutor_id, prev.score, cur.score
        FROM performance_scores cur
        JOIN LATERAL (
            SELECT score FROM performance_scores p
            WHERE p.tutor_id = cur.tutor_id AND p.computed_for < cur.computed_for
            ORDER BY p.computed_for DESC LIMIT 1
        ) prev ON true
        WHERE cur.computed_for = %s AND prev.score - cur.score >= %s
        ON CONFLICT (score_id) DO NOTHING
        """,
        (day, threshold),
    )
    return cur.rowcount


async def pending_notifications(conn: Conn, day: dt.date) -> list[dict[str, Any]]:
    """Notifications of ``day`` not sent yet, with the tutor's name and email."""
    cur = await conn.execute(
        """
        SELECT n.score_id, n.tutor_id, n.previous_score::float8 AS previous_score, n.score::float8 AS score,
               t.name, t.email
        FROM score_notifications n
        JOIN performance_scores p ON p.id = n.score_id
        JOIN tutors t ON t.id = n.tutor_id
        WHERE p.computed_for = %s AND n.status = 'pending' AND t.active
        ORDER BY n.score_id
        """,
        (day,),
    )
    return list(await cur.fetchall())


async def mark_notification(conn: Conn, score_id: int, *, sent: bool) -> None:
    """Record a send attempt (and its success)."""
    await conn.execute(
        """
        UPDATE score_notifications
        SET attempts = attempts + 1,
            status = CASE WHEN %s THEN 'sent' ELSE status END,
            sent_at = CASE WHEN %s THEN now() ELSE sent_at END
        WHERE score_id = %s
        """,
        (sent, sent, score_id),
    )
