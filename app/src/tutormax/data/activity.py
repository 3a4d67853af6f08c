"""SQL for tutoring sessions and ratings."""

from __future__ import annotations

from tutormax.data.db import Conn
from tutormax.domain import Rating, RatingCreate, SessionCreate, TutoringSession


async def insert_session(conn: Conn, tutor_id: int, session: SessionCreate) -> TutoringSession:
    """Insert a session; raises ForeignKeyViolation when the tutor does not exist."""
    cur = await conn.execute(
        """
        INSERT INTO tutoring_sessions (tutor_id, student_id, subject, started_at, duration_minutes, status)
        VALUES (%s, %s, %s, %s, %s, %s)
        RETURNING id, tutor_id, student_id, subject, started_at, duration_minutes, status, created_at
        """,
        (
            tutor_id,
            session.student_id,
            session.subject,
            session.started_at,
            session.duration_minutes,
            session.status.value,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return TutoringSession.model_validate(row)


async def insert_rating(conn: Conn, session_id: int, rating: RatingCreate) -> Rating | None:
    """Rate a session; None when the session does not exist. UniqueViolation if already rated."""
    cur = await conn.execute(
        """
        INSERT INTO ratings (session_id, tutor_id, score, comment)
        SELECT id, tutor_id, %s, %s FROM tutoring_sessions WHERE id = %s
        RETURNING id, session_id, tutor_id, score, comment, created_at
        """,
        (rating.score, rating.comment, session_id),
    )
    row = await cur.fetchone()
    return None if row is None else Rating.model_validate(row)
