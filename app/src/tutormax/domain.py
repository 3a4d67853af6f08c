"""Domain types shared by every layer: what a tutor, a session, a rating... look like.

Input models validate everything PostgreSQL would otherwise reject (NUL characters, numbers out of
range, naive timestamps), so bad input becomes a 422 with a reason, never a database error.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
)

#: Largest id accepted: the largest integer JSON clients handle exactly (2**53 - 1). PostgreSQL's
#: bigint ids never get near it.
MAX_ID = 2**53 - 1
# Explicit characters, not \s: Python's and JavaScript's \s differ (U+0085), and clients check the
# pattern from the OpenAPI schema with the latter.
EMAIL_PATTERN = re.compile(r"^[^@ \t\r\n\x00]+@[^@ \t\r\n\x00]+\.[^@ \t\r\n\x00]+$")


def _storable(value: str) -> str:
    # The types' patterns tell clients (and the OpenAPI schema) that NUL is refused; PostgreSQL
    # cannot store it. Lone surrogates cannot be encoded as UTF-8.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_text(value: object) -> object:
    # A date is an ISO 8601 string, never a number: pydantic would read 0 or "0" as 1970-01-01.
    if isinstance(value, dt.date) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("must be an ISO 8601 date string")


def _json_integer(value: object) -> object:
    # JSON Schema integers: 5 and 5.0, but not "5" or true (which pydantic would convert).
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer")
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(pattern=NO_NUL), AfterValidator(_storable)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL), AfterValidator(_storable)]
Email = Annotated[
    str, Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN.pattern), AfterValidator(_storable),
    AfterValidator(str.lower),
]  # fmt: skip
Subject = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL), AfterValidator(_storable)]
# Integers in JSON bodies (constraints before the validator, or they vanish from the schema).
Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_json_integer)]
Minutes = Annotated[int, Field(ge=0, le=24 * 60), BeforeValidator(_json_integer)]
Stars = Annotated[int, Field(ge=1, le=5), BeforeValidator(_json_integer)]
Day = Annotated[dt.date, BeforeValidator(_iso_text)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_utc)]
#: A number of days in a date range (at most a year, so a range is always a bounded query).
Days = Annotated[int, Field(ge=1, le=366)]
BodyDays = Annotated[int, Field(ge=1, le=366), BeforeValidator(_json_integer)]
DEFAULT_DAYS = 30


def range_start(end: dt.date, days: int) -> dt.date:
    """First day of the ``days`` days ending with ``end`` (never before year 1)."""
    try:
        return end - dt.timedelta(days=days - 1)
    except OverflowError:
        return dt.date.min


class _Input(BaseModel):
    # No whitespace stripping: what the schema accepts is exactly what is stored.
    model_config = ConfigDict(extra="forbid")


class _Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---------------------------------------------------------------------------------------- tutors
class TutorCreate(_Input):
    """A new tutor."""

    name: Name
    email: Email
    subjects: list[Subject] = Field(default_factory=list, max_length=20)
    hourly_rate: StrictFloat | None = Field(None, ge=0, le=10_000, allow_inf_nan=False)


class TutorUpdate(_Input):
    """Fields of a tutor that may change; omitted fields stay as they are (``hourly_rate: null`` clears it)."""

    # Not nullable in the schema: null is refused (422), omitting the field keeps the value.
    name: Name = Field(default=None)  # type: ignore[assignment]
    subjects: list[Subject] = Field(default=None, max_length=20)  # type: ignore[arg-type]
    hourly_rate: StrictFloat | None = Field(None, ge=0, le=10_000, allow_inf_nan=False)
    active: StrictBool = Field(default=None)  # type: ignore[assignment]


class Tutor(_Output):
    """A tutor as stored."""

    id: int
    name: str
    email: str
    subjects: list[str]
    hourly_rate: float | None
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class TutorPage(_Output):
    """One page of tutors."""

    items: list[Tutor]
    total: int
    limit: int
    offset: int


class TutorFilter(BaseModel):
    """Filters for listing tutors."""

    subject: str | None = None
    active: bool | None = None
    search: str | None = None


# -------------------------------------------------------------------------- sessions and ratings
class SessionStatus(StrEnum):
    """How a tutoring session ended."""

    completed = "completed"
    no_show = "no_show"
    cancelled = "cancelled"


class SessionCreate(_Input):
    """A tutoring session that took place (or was missed)."""

    student_id: Id
    subject: Subject
    started_at: Timestamp
    duration_minutes: Minutes
    status: SessionStatus = SessionStatus.completed


class TutoringSession(_Output):
    """A tutoring session as stored."""

    id: int
    tutor_id: int
    student_id: int
    subject: str
    started_at: dt.datetime
    duration_minutes: int
    status: SessionStatus
    created_at: dt.datetime


class RatingCreate(_Input):
    """A student's rating of a session."""

    score: Stars
    comment: Annotated[Text, Field(max_length=2000)] | None = None


class Rating(_Output):
    """A rating as stored."""

    id: int
    session_id: int
    tutor_id: int
    score: int
    comment: str | None
    created_at: dt.datetime


# -------------------------------------------------------------------------------- metrics, score
class DailyMetrics(_Output):
    """One tutor's aggregated activity on one day."""

    tutor_id: int
    day: dt.date
    sessions_total: int
    sessions_completed: int
    no_shows: int
    cancellations: int
    minutes_taught: int
    ratings_count: int
    avg_rating: float | None


class PerformanceScore(_Output):
    """A tutor's performance score (0-100) computed for a day."""

    tutor_id: int
    computed_for: dt.date
    score: float
    components: dict[str, float]
    previous_score: float | None = None


class ChurnRisk(_Output):
    """The churn model's estimate for one tutor (null when no model has been trained yet)."""

    tutor_id: int
    risk: float | None
    model_version: int | None
    features: dict[str, float]


class ChurnModel(_Output):
    """A trained churn model: standardisation and logistic-regression coefficients."""

    version: int
    feature_names: list[str]
    means: list[float]
    scales: list[float]
    coefficients: list[float]
    intercept: float
    metrics: dict[str, float]
    trained_at: dt.datetime

    def predict(self, features: dict[str, float]) -> float:
        """Probability of churn for one tutor's features."""
        z = self.intercept
        for name, mean, scale, coef in zip(self.feature_names, self.means, self.scales, self.coefficients, strict=True):
            z += coef * (features.get(name, 0.0) - mean) / (scale or 1.0)
        return 1.0 / (1.0 + math.exp(-max(min(z, 500.0), -500.0)))


# ---------------------------------------------------------------------------------------- exports
class ExportKind(StrEnum):
    """What an export contains."""

    tutors = "tutors"
    daily_metrics = "daily_metrics"


class ExportStatus(StrEnum):
    """Where an export is in its life."""

    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


class TutorsExportRequest(_Input):
    """Export every tutor with their latest score."""

    kind: Literal[ExportKind.tutors]


class MetricsExportRequest(_Input):
    """Export all tutors' daily metrics of the ``days`` days ending with ``end`` (default today, UTC)."""

    kind: Literal[ExportKind.daily_metrics]
    end: Day | None = None
    days: BodyDays = DEFAULT_DAYS


ExportRequest = Annotated[TutorsExportRequest | MetricsExportRequest, Field(discriminator="kind")]


class Export(_Output):
    """An export's state (the CSV itself is downloaded separately)."""

    id: uuid.UUID
    kind: ExportKind
    status: ExportStatus
    params: dict[str, Any]
    row_count: int | None
    size_bytes: int | None
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    expires_at: dt.datetime


# ---------------------------------------------------------------------------------------- events
class TutorEvent(BaseModel):
    """A live event about a tutor, fanned out to WebSocket subscribers on every instance."""

    type: Literal["rating", "score", "session"]
    tutor_id: int
    data: dict[str, Any]
    at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))


class Health(BaseModel):
    """The health document (exactly the seed's five keys)."""

    status: Literal["healthy", "unhealthy"]
    database: Literal["connected", "disconnected"]
    redis: Literal["connected", "disconnected"]
    version: str
    instance_id: str
