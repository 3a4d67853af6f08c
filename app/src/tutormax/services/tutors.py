"""Tutors: create, update, read (cached) and list."""

from __future__ import annotations

from psycopg import errors as pg_errors

from tutormax.data import tutors as repo
from tutormax.data.db import note_read_source
from tutormax.data.resources import Resources
from tutormax.domain import Tutor, TutorCreate, TutorFilter, TutorPage, TutorUpdate
from tutormax.services.errors import ConflictError, NotFoundError


def tutor_key(tutor_id: int) -> str:
    """Cache key and write-marker name of one tutor."""
    return f"tutor:{tutor_id}"


async def _remember(r: Resources, tutor: Tutor, lsn: str) -> None:
    # Marker first: a reader that misses the cache from now on knows to wait for this LSN.
    await r.cache.mark_written(tutor_key(tutor.id), lsn)
    await r.cache.put(tutor_key(tutor.id), tutor.model_dump_json(), overwrite=True)


async def create_tutor(r: Resources, data: TutorCreate) -> Tutor:
    """Create a tutor on the primary and cache it (write-through)."""
    try:
        async with r.db.primary() as conn:
            tutor = await repo.insert(conn, data)
            lsn = await r.db.commit_lsn(conn)
    except pg_errors.UniqueViolation:
        raise ConflictError("a tutor with this email already exists") from None
    await _remember(r, tutor, lsn)
    return tutor


async def update_tutor(r: Resources, tutor_id: int, changes: TutorUpdate) -> Tutor:
    """Change a tutor on the primary and replace the cached copy."""
    async with r.db.primary() as conn:
        tutor = await repo.update(conn, tutor_id, changes)
        if tutor is None:
            raise NotFoundError(f"tutor {tutor_id} not found")
        lsn = await r.db.commit_lsn(conn)
    await _remember(r, tutor, lsn)
    return tutor


async def get_tutor(r: Resources, tutor_id: int) -> Tutor:
    """A tutor from the cache, else from the replica (the primary right after a write to it)."""
    cached = await r.cache.get(tutor_key(tutor_id))
    if cached is not None:
        note_read_source("cache")
        return Tutor.model_validate_json(cached)
    min_lsn = await r.cache.written_lsn(tutor_key(tutor_id))
    tutor = await r.db.fetch_one(lambda conn: repo.get(conn, tutor_id), min_lsn)
    if tutor is None:
        raise NotFoundError(f"tutor {tutor_id} not found")
    # Never overwrite: a concurrent write may already have cached a fresher copy.
    await r.cache.put(tutor_key(tutor_id), tutor.model_dump_json(), overwrite=False)
    return tutor


async def list_tutors(r: Resources, filters: TutorFilter, limit: int, offset: int) -> TutorPage:
    """A page of tutors from the replica (lists may trail the primary by the replication lag)."""
    items, total = await r.db.fetch(lambda conn: repo.page(conn, filters, limit, offset))
    return TutorPage(items=items, total=total, limit=limit, offset=offset)
