"""Daily metrics: nightly aggregation and cached reads."""

from __future__ import annotations

import datetime as dt

from pydantic import TypeAdapter

from tutormax.data import metrics as repo
from tutormax.data.db import note_read_source
from tutormax.data.resources import Resources
from tutormax.domain import DailyMetrics, range_start
from tutormax.services.tutors import get_tutor

_METRICS_LIST = TypeAdapter(list[DailyMetrics])


def metrics_key(tutor_id: int) -> str:
    """Cache hash holding every cached metrics range of one tutor (dropped as a whole on change)."""
    return f"metrics:{tutor_id}"


def today() -> dt.date:
    """Today in UTC (the day boundary of all aggregation)."""
    return dt.datetime.now(dt.UTC).date()


async def get_daily_metrics(r: Resources, tutor_id: int, end: dt.date | None, days: int) -> list[DailyMetrics]:
    """A tutor's metrics per day for the ``days`` days ending with ``end`` (default today), cached."""
    end = end or today()
    start = range_start(end, days)
    await get_tutor(r, tutor_id)  # 404 for an unknown tutor
    field = f"{start.isoformat()}:{end.isoformat()}"
    cached = await r.cache.get_field(metrics_key(tutor_id), field)
    if cached is not None:
        note_read_source("cache")
        return _METRICS_LIST.validate_json(cached)
    rows = await r.db.fetch(lambda conn: repo.for_tutor(conn, tutor_id, start, end))
    await r.cache.put_field(metrics_key(tutor_id), field, _METRICS_LIST.dump_json(rows).decode())
    return rows


async def aggregate_day(r: Resources, day: dt.date) -> dict[str, object]:
    """Recompute all tutors' metrics for ``day`` (idempotent) and drop the affected cache entries."""
    async with r.db.primary() as conn:
        tutors = await repo.aggregate_day(conn, day)
    await r.cache.invalidate(*(metrics_key(t) for t in tutors))
    return {"day": day.isoformat(), "tutors": len(tutors)}
