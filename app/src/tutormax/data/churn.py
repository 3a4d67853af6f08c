"""SQL for churn features and the versioned churn models."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from tutormax.data.db import Conn
from tutormax.domain import ChurnModel

#: Feature columns, in model order. A tutor who left (``active = false``) is a churned example.
FEATURES: tuple[str, ...] = (
    "sessions_30d",
    "completion_rate_30d",
    "no_show_rate_30d",
    "avg_rating_90d",
    "days_since_last_session",
    "latest_score",
)

_FEATURE_SQL = """
SELECT t.id AS tutor_id, NOT t.active AS churned,
       coalesce(s.sessions_30d, 0)::float8 AS sessions_30d,
       coalesce(s.completion_rate_30d, 0)::float8 AS completion_rate_30d,
       coalesce(s.no_show_rate_30d, 0)::float8 AS no_show_rate_30d,
       coalesce(r.avg_rating_90d, 3)::float8 AS avg_rating_90d,
       least(coalesce(s.days_since_last_session, 120), 120)::float8 AS days_since_last_session,
       coalesce(p.score, 50)::float8 AS latest_score
FROM tutors t
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE started_at > now() - interval '30 days') AS sessions_30d,
           avg((status = 'completed')::int) FILTER (WHERE started_at > now() - interval '30 days')
               AS completion_rate_30d,
           avg((status = 'no_show')::int) FILTER (WHERE started_at > now() - interval '30 days')
               AS no_show_rate_30d,
           extract(epoch FROM now() - max(started_at)) / 86400 AS days_since_last_session
    FROM tutoring_sessions WHERE tutor_id = t.id AND started_at <= now()
) s ON true
LEFT JOIN LATERAL (
    SELECT avg(score) AS avg_rating_90d FROM ratings
    WHERE tutor_id = t.id AND created_at > now() - interval '90 days'
) r ON true
LEFT JOIN LATERAL (
    SELECT score FROM performance_scores WHERE tutor_id = t.id ORDER BY computed_for DESC LIMIT 1
) p ON true
"""


async def features(conn: Conn, tutor_id: int | None = None) -> list[dict[str, Any]]:
    """Feature rows (``tutor_id``, ``churned`` and FEATURES) for one tutor, or for training: every
    tutor with at least one session (a tutor who never taught says nothing about leaving)."""
    if tutor_id is not None:
        cur = await conn.execute(_FEATURE_SQL + " WHERE t.id = %s", (tutor_id,))
    else:
        cur = await conn.execute(
            _FEATURE_SQL + " WHERE EXISTS (SELECT 1 FROM tutoring_sessions x WHERE x.tutor_id = t.id) ORDER BY t.id"  # noqa: S608
        )
    return list(await cur.fetchall())


async def store_model(
    conn: Conn,
    *,
    means: list[float],
    scales: list[float],
    coefficients: list[float],
    intercept: float,
    metrics: dict[str, float],
) -> int:
    """Store a trained model as the next version; returns the version."""
    cur = await conn.execute(
        """
        INSERT INTO churn_models (algorithm, feature_names, means, scales, coefficients, intercept, metrics)
        VALUES ('logistic_regression', %s, %s, %s, %s, %s, %s) RETURNING version
        """,
        (list(FEATURES), means, scales, coefficients, intercept, Jsonb(metrics)),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["version"])


async def latest_model(conn: Conn) -> ChurnModel | None:
    """The newest churn model, or None before the first training."""
    cur = await conn.execute(
        """
        SELECT version, feature_names, means, scales, coefficients, intercept, metrics, trained_at
        FROM churn_models ORDER BY version DESC LIMIT 1
        """
    )
    row = await cur.fetchone()
    return None if row is None else ChurnModel.model_validate(row)
