"""SQL for tutors."""

from __future__ import annotations

from typing import Any

from tutormax.data.db import Conn
from tutormax.domain import Tutor, TutorCreate, TutorFilter, TutorUpdate

_COLUMNS = "id, name, email, subjects, hourly_rate::float8 AS hourly_rate, active, created_at, updated_at"


async def insert(conn: Conn, tutor: TutorCreate) -> Tutor:
    """Insert a tutor; raises psycopg.errors.UniqueViolation on a duplicate email."""
    cur = await conn.execute(
        f"INSERT INTO tutors (name, email, subjects, hourly_rate) VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",  # noqa: S608 - constant columns
        (tutor.name, tutor.email, tutor.subjects, tutor.hourly_rate),
    )
    row = await cur.fetchone()
    assert row is not None
    return Tutor.model_validate(row)


async def update(conn: Conn, tutor_id: int, changes: TutorUpdate) -> Tutor | None:
    """Apply the fields set in ``changes``; None when the tutor does not exist."""
    fields = changes.model_dump(exclude_unset=True)
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    # Column names come from the model's fields, never from the caller.
    sets = f"{assignments + ', ' if assignments else ''}updated_at = now()"
    sql = f"UPDATE tutors SET {sets} WHERE id = %(id)s RETURNING {_COLUMNS}"  # noqa: S608
    cur = await conn.execute(sql, {**fields, "id": tutor_id})
    row = await cur.fetchone()
    return None if row is None else Tutor.model_validate(row)


async def get(conn: Conn, tutor_id: int) -> Tutor | None:
    """One tutor or None."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM tutors WHERE id = %s", (tutor_id,))  # noqa: S608 - constant columns
    row = await cur.fetchone()
    return None if row is None else Tutor.model_validate(row)


async def exists(conn: Conn, tutor_id: int) -> bool:
    """True when the tutor exists."""
    cur = await conn.execute("SELECT 1 FROM tutors WHERE id = %s", (tutor_id,))
    return await cur.fetchone() is not None


def _where(filters: TutorFilter) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if filters.subject is not None:
        clauses.append("%(subject)s = ANY(subjects)")
        params["subject"] = filters.subject
    if filters.active is not None:
        clauses.append("active = %(active)s")
        params["active"] = filters.active
    if filters.search:
        escaped = filters.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("(name ILIKE %(search)s OR email ILIKE %(search)s)")
        params["search"] = f"%{escaped}%"
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


async def page(conn: Conn, filters: TutorFilter, limit: int, offset: int) -> tuple[list[Tutor], int]:
    """One page of tutors ordered by id, and the total matching the filters."""
    where, params = _where(filters)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM tutors{where} ORDER BY id LIMIT %(limit)s OFFSET %(offset)s",  # noqa: S608 - built from constant clauses
        {**params, "limit": limit, "offset": offset},
    )
    items = [Tutor.model_validate(row) for row in await cur.fetchall()]
    cur = await conn.execute(f"SELECT count(*) AS n FROM tutors{where}", params)  # noqa: S608 - constant clauses
    row = await cur.fetchone()
    return items, int(row["n"]) if row else 0


async def all_rows(conn: Conn, limit: int) -> list[dict[str, Any]]:
    """Tutors with their latest score, for the CSV export."""
    cur = await conn.execute(
        """
        SELECT t.id, t.name, t.email, array_to_string(t.subjects, ';') AS subjects,
               t.hourly_rate::float8 AS hourly_rate, t.active, t.created_at,
               s.score::float8 AS latest_score, s.computed_for AS latest_score_for
        FROM tutors t
        LEFT JOIN LATERAL (
            SELECT score, computed_for FROM performance_scores p
            WHERE p.tutor_id = t.id ORDER BY computed_for DESC LIMIT 1
        ) s ON true
        ORDER BY t.id LIMIT %s
        """,
        (limit,),
    )
    return list(await cur.fetchall())
