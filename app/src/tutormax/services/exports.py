"""CSV exports: requested through the API, built by the worker, stored in PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import uuid
from typing import Any

from tutormax.data import exports as repo
from tutormax.data import metrics as metrics_repo
from tutormax.data import tutors as tutors_repo
from tutormax.data.resources import Resources
from tutormax.data.taskqueue import BUILD_EXPORT
from tutormax.domain import Export, ExportKind, ExportRequest, ExportStatus, TutorsExportRequest, range_start
from tutormax.services.errors import ConflictError, NotFoundError, UnavailableError
from tutormax.services.metrics import today

log = logging.getLogger(__name__)


def export_key(export_id: uuid.UUID) -> str:
    """Write-marker name of one export."""
    return f"export:{export_id}"


def _params(request: ExportRequest) -> dict[str, Any]:
    if isinstance(request, TutorsExportRequest):
        return {}
    end = request.end or today()
    start = range_start(end, request.days)
    return {"start": start.isoformat(), "end": end.isoformat()}


async def request_export(r: Resources, request: ExportRequest) -> Export:
    """Record the export on the primary and hand it to the worker."""
    params = _params(request)
    export_id = uuid.uuid4()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=r.settings.export_retention_hours)
    async with r.db.primary() as conn:
        export = await repo.insert(conn, export_id, request.kind.value, params, expires)
        lsn = await r.db.commit_lsn(conn)
    await r.cache.mark_written(export_key(export_id), lsn)
    if r.queue is None:
        raise UnavailableError("no task queue in this process")
    try:
        await r.queue.enqueue(BUILD_EXPORT, str(export_id))
    except Exception as exc:
        log.error("export %s could not be queued: %s", export_id, type(exc).__name__)
        async with r.db.primary() as conn:
            await repo.fail(conn, export_id, "the task queue was unavailable")
        raise UnavailableError("the task queue is unavailable; try again") from None
    return export


async def get_export(r: Resources, export_id: uuid.UUID) -> Export:
    """An export's state (read-your-own-write: the request, the worker's result)."""
    min_lsn = await r.cache.written_lsn(export_key(export_id))
    export = await r.db.fetch_one(lambda conn: repo.get(conn, export_id), min_lsn)
    if export is None:
        raise NotFoundError(f"export {export_id} not found")
    return export


async def export_content(r: Resources, export_id: uuid.UUID) -> bytes:
    """The CSV of a finished export."""
    min_lsn = await r.cache.written_lsn(export_key(export_id))
    found = await r.db.fetch_one(lambda conn: repo.content(conn, export_id), min_lsn)
    if found is None:
        raise NotFoundError(f"export {export_id} not found")
    status, data = found
    if status != ExportStatus.done or data is None:
        raise ConflictError(f"export {export_id} is {status}, not done")
    return data


#: Text starting with these is a formula to spreadsheet programs (CSV injection): such values get
#: a leading apostrophe, which spreadsheets show as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    # RFC 4180: CRLF line ends, so every field holding CR or LF is quoted (with a bare "\n"
    # terminator the csv module leaves a lone CR unquoted, and readers split the row there).
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return buffer.getvalue().encode("utf-8")


TUTOR_COLUMNS = [
    "id",
    "name",
    "email",
    "subjects",
    "hourly_rate",
    "active",
    "created_at",
    "latest_score",
    "latest_score_for",
]
METRIC_COLUMNS = [
    "tutor_id", "day", "sessions_total", "sessions_completed", "no_shows", "cancellations",
    "minutes_taught", "ratings_count", "avg_rating",
]  # fmt: skip


async def build_export(r: Resources, export_id: uuid.UUID) -> dict[str, object]:
    """Build and store the CSV. Reads the replica once it has every write made before the request."""
    async with r.db.primary() as conn:
        job = await repo.start(conn, export_id)
    if job is None:
        return {"export_id": str(export_id), "status": "gone or already done"}
    limit = r.settings.export_max_rows
    async with r.db.read(job["requested_lsn"]) as conn:
        if job["kind"] == ExportKind.tutors:
            rows, columns = await tutors_repo.all_rows(conn, limit + 1), TUTOR_COLUMNS
        else:
            start = dt.date.fromisoformat(job["params"]["start"])
            end = dt.date.fromisoformat(job["params"]["end"])
            rows, columns = await metrics_repo.rows_between(conn, start, end, limit + 1), METRIC_COLUMNS
    async with r.db.primary() as conn:
        if len(rows) > limit:
            await repo.fail(conn, export_id, f"more than EXPORT_MAX_ROWS ({limit}) rows")
            status = ExportStatus.failed
        else:
            await repo.finish(conn, export_id, _csv(rows, columns), len(rows))
            status = ExportStatus.done
        lsn = await r.db.commit_lsn(conn)
    await r.cache.mark_written(export_key(export_id), lsn)
    return {"export_id": str(export_id), "status": status.value, "rows": len(rows)}


async def purge_expired(r: Resources) -> dict[str, object]:
    """Delete exports past their retention."""
    async with r.db.primary() as conn:
        deleted = await repo.purge_expired(conn)
    return {"deleted": deleted}
