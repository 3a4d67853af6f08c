"""Tutoring sessions and ratings, with live events for subscribers."""

from __future__ import annotations

from psycopg import errors as pg_errors

from tutormax.data import activity as repo
from tutormax.data.events import publish_event
from tutormax.data.resources import Resources
from tutormax.domain import Rating, RatingCreate, SessionCreate, TutorEvent, TutoringSession
from tutormax.services.errors import ConflictError, NotFoundError


async def record_session(r: Resources, tutor_id: int, data: SessionCreate) -> TutoringSession:
    """Record a session on the primary and tell the tutor's subscribers."""
    try:
        async with r.db.primary() as conn:
            session = await repo.insert_session(conn, tutor_id, data)
    except pg_errors.ForeignKeyViolation:
        raise NotFoundError(f"tutor {tutor_id} not found") from None
    await publish_event(r.cache, TutorEvent(type="session", tutor_id=tutor_id, data=session.model_dump(mode="json")))
    return session


async def record_rating(r: Resources, session_id: int, data: RatingCreate) -> Rating:
    """Record a student's rating of a session and tell the tutor's subscribers."""
    try:
        async with r.db.primary() as conn:
            rating = await repo.insert_rating(conn, session_id, data)
    except pg_errors.UniqueViolation:
        raise ConflictError(f"session {session_id} is already rated") from None
    if rating is None:
        raise NotFoundError(f"session {session_id} not found")
    await publish_event(
        r.cache, TutorEvent(type="rating", tutor_id=rating.tutor_id, data=rating.model_dump(mode="json"))
    )
    return rating
