"""Performance scores: computation, cached reads, and emails to tutors whose score dropped."""

from __future__ import annotations

import datetime as dt
import logging
import smtplib

from tutormax.data import metrics as repo
from tutormax.data.db import note_read_source
from tutormax.data.events import publish_event
from tutormax.data.resources import Resources
from tutormax.domain import PerformanceScore, TutorEvent
from tutormax.services.errors import UnavailableError
from tutormax.services.tutors import get_tutor

log = logging.getLogger(__name__)

#: Days of daily metrics a score looks back over.
WINDOW_DAYS = 30
WEIGHTS = {"rating": 0.6, "completion": 0.25, "reliability": 0.15}


def score_key(tutor_id: int) -> str:
    """Cache key of a tutor's latest score."""
    return f"score:{tutor_id}"


def score_from_totals(totals: dict[str, int]) -> tuple[float, dict[str, float]]:
    """Score 0-100 from a tutor's window totals, and its components (each 0-1)."""
    sessions = totals["sessions_total"]
    ratings = totals["ratings_count"]
    components = {
        # No ratings yet: neutral, neither rewarded nor punished.
        "rating": (totals["rating_sum"] / ratings - 1) / 4 if ratings else 0.5,
        "completion": totals["sessions_completed"] / sessions,
        "reliability": 1 - totals["no_shows"] / sessions,
    }
    score = 100 * sum(WEIGHTS[name] * value for name, value in components.items())
    return round(score, 2), {name: round(value, 4) for name, value in components.items()}


async def compute_scores(r: Resources, day: dt.date) -> dict[str, object]:
    """Compute the score for ``day`` of every tutor with sessions in the window ending that day."""
    async with r.db.primary() as conn:
        totals = await repo.window_totals(conn, day, WINDOW_DAYS)
        scores = [(row["tutor_id"], *score_from_totals(row)) for row in totals]
        if scores:
            await repo.store_scores(conn, day, scores)
    await r.cache.invalidate(*(score_key(tutor_id) for tutor_id, _score, _components in scores))
    for tutor_id, score, components in scores:
        event = TutorEvent(
            type="score",
            tutor_id=tutor_id,
            data={"score": score, "computed_for": day.isoformat(), "components": components},
        )
        await publish_event(r.cache, event)
    return {"day": day.isoformat(), "scored": len(scores)}


async def get_score(r: Resources, tutor_id: int) -> PerformanceScore | None:
    """A tutor's latest score (None before the first computation), cached."""
    await get_tutor(r, tutor_id)
    cached = await r.cache.get(score_key(tutor_id))
    if cached is not None:
        note_read_source("cache")
        return None if cached == "null" else PerformanceScore.model_validate_json(cached)
    score = await r.db.fetch(lambda conn: repo.latest_score(conn, tutor_id))
    await r.cache.put(score_key(tutor_id), score.model_dump_json() if score else "null", overwrite=False)
    return score


async def notify_score_drops(r: Resources, day: dt.date) -> dict[str, object]:
    """Email every tutor whose score for ``day`` dropped by SCORE_DROP_THRESHOLD points or more.

    Each drop is recorded once (pending), and marked sent only after the SMTP server accepted the
    message, so a retry re-sends exactly the messages that did not go out.
    """
    async with r.db.primary() as conn:
        queued = await repo.queue_drop_notifications(conn, day, r.settings.score_drop_threshold)
        pending = await repo.pending_notifications(conn, day)
    sent, failed = 0, 0
    for item in pending:
        body = (
            f"Hello {item['name']},\n\n"
            f"your TutorMax performance score for {day.isoformat()} is {item['score']:.2f}, "
            f"down from {item['previous_score']:.2f}.\n"
            "Your daily metrics show where the change comes from.\n\n-- TutorMax\n"
        )
        try:
            await r.mailer.send(item["email"], f"Your TutorMax score dropped to {item['score']:.2f}", body)
        except (smtplib.SMTPException, OSError) as exc:
            log.warning("score-drop email to tutor %s failed: %s", item["tutor_id"], type(exc).__name__)
            failed += 1
            async with r.db.primary() as conn:
                await repo.mark_notification(conn, item["score_id"], sent=False)
            continue
        sent += 1
        async with r.db.primary() as conn:
            await repo.mark_notification(conn, item["score_id"], sent=True)
    if failed:
        raise UnavailableError(f"{failed} of {len(pending)} score-drop emails could not be sent")
    return {"day": day.isoformat(), "queued": queued, "sent": sent}
