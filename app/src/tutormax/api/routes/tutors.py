"""Tutors, their sessions, ratings, metrics, score and churn risk."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from tutormax.api.deps import Res
from tutormax.api.errors import CONFLICT, NOT_FOUND, UNAVAILABLE
from tutormax.domain import (
    DEFAULT_DAYS,
    MAX_ID,
    ChurnRisk,
    DailyMetrics,
    Day,
    Days,
    PerformanceScore,
    Rating,
    RatingCreate,
    SessionCreate,
    Subject,
    Text,
    Tutor,
    TutorCreate,
    TutorFilter,
    TutoringSession,
    TutorPage,
    TutorUpdate,
)
from tutormax.services import activity, churn, metrics, scores, tutors

router = APIRouter(prefix="/api", responses=UNAVAILABLE)

TutorId = Annotated[int, Path(ge=1, le=MAX_ID, description="Tutor id")]
SessionId = Annotated[int, Path(ge=1, le=MAX_ID, description="Session id")]


@router.post("/tutors", status_code=status.HTTP_201_CREATED, response_model=Tutor, responses=CONFLICT, tags=["tutors"])
async def create_tutor(r: Res, body: TutorCreate) -> Tutor:
    """Create a tutor (409 when the email is taken)."""
    return await tutors.create_tutor(r, body)


@router.get("/tutors", response_model=TutorPage, tags=["tutors"])
async def list_tutors(
    r: Res,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    subject: Annotated[Subject | None, Query()] = None,
    active: Annotated[bool | None, Query()] = None,
    search: Annotated[Annotated[Text, Query(min_length=1, max_length=100)] | None, Query()] = None,
) -> TutorPage:
    """Tutors ordered by id, filtered by subject, active flag and a name/email substring."""
    filters = TutorFilter(subject=subject, active=active, search=search)
    return await tutors.list_tutors(r, filters, limit, offset)


@router.get("/tutors/{tutor_id}", response_model=Tutor, responses=NOT_FOUND, tags=["tutors"])
async def get_tutor(r: Res, tutor_id: TutorId) -> Tutor:
    """One tutor (cached)."""
    return await tutors.get_tutor(r, tutor_id)


@router.patch("/tutors/{tutor_id}", response_model=Tutor, responses=NOT_FOUND, tags=["tutors"])
async def update_tutor(r: Res, tutor_id: TutorId, body: TutorUpdate) -> Tutor:
    """Change a tutor's name, subjects, rate or active flag."""
    return await tutors.update_tutor(r, tutor_id, body)


@router.post(
    "/tutors/{tutor_id}/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=TutoringSession,
    responses=NOT_FOUND,
    tags=["activity"],
)
async def record_session(r: Res, tutor_id: TutorId, body: SessionCreate) -> TutoringSession:
    """Record a tutoring session of this tutor."""
    return await activity.record_session(r, tutor_id, body)


@router.post(
    "/sessions/{session_id}/rating",
    status_code=status.HTTP_201_CREATED,
    response_model=Rating,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["activity"],
)
async def rate_session(r: Res, session_id: SessionId, body: RatingCreate) -> Rating:
    """Record the student's rating of a session (one per session)."""
    return await activity.record_rating(r, session_id, body)


@router.get("/tutors/{tutor_id}/metrics", response_model=list[DailyMetrics], responses=NOT_FOUND, tags=["metrics"])
async def daily_metrics(
    r: Res,
    tutor_id: TutorId,
    end: Annotated[Day | None, Query(description="Last day (default: today, UTC)")] = None,
    days: Annotated[Days, Query(description="Number of days ending with end")] = DEFAULT_DAYS,
) -> list[DailyMetrics]:
    """The tutor's aggregated metrics per day (cached)."""
    return await metrics.get_daily_metrics(r, tutor_id, end, days)


@router.get("/tutors/{tutor_id}/score", response_model=PerformanceScore | None, responses=NOT_FOUND, tags=["metrics"])
async def performance_score(r: Res, tutor_id: TutorId) -> PerformanceScore | None:
    """The tutor's latest performance score with the previous one; null before the first computation."""
    return await scores.get_score(r, tutor_id)


@router.get("/tutors/{tutor_id}/churn-risk", response_model=ChurnRisk, responses=NOT_FOUND, tags=["metrics"])
async def churn_risk(r: Res, tutor_id: TutorId) -> ChurnRisk:
    """Probability that the tutor leaves, from the latest churn model (null before the first training)."""
    return await churn.churn_risk(r, tutor_id)
