"""Initial schema: tutors, sessions, ratings, daily metrics, scores, notifications, churn models, exports.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Expand step (new tables only).
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create every table."""
    op.execute(
        """
        CREATE TABLE tutors (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            email text NOT NULL UNIQUE,
            subjects text[] NOT NULL DEFAULT '{}',
            hourly_rate numeric(10, 2),
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX tutors_subjects_idx ON tutors USING gin (subjects);

        CREATE TABLE tutoring_sessions (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tutor_id bigint NOT NULL REFERENCES tutors (id) ON DELETE CASCADE,
            student_id bigint NOT NULL,
            subject text NOT NULL,
            started_at timestamptz NOT NULL,
            duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 0 AND 1440),
            status text NOT NULL CHECK (status IN ('completed', 'no_show', 'cancelled')),
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX tutoring_sessions_tutor_started_idx ON tutoring_sessions (tutor_id, started_at);
        CREATE INDEX tutoring_sessions_started_idx ON tutoring_sessions (started_at);

        CREATE TABLE ratings (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_id bigint NOT NULL UNIQUE REFERENCES tutoring_sessions (id) ON DELETE CASCADE,
            tutor_id bigint NOT NULL REFERENCES tutors (id) ON DELETE CASCADE,
            score smallint NOT NULL CHECK (score BETWEEN 1 AND 5),
            comment text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ratings_tutor_created_idx ON ratings (tutor_id, created_at);

        CREATE TABLE daily_metrics (
            tutor_id bigint NOT NULL REFERENCES tutors (id) ON DELETE CASCADE,
            day date NOT NULL,
            sessions_total integer NOT NULL,
            sessions_completed integer NOT NULL,
            no_shows integer NOT NULL,
            cancellations integer NOT NULL,
            minutes_taught integer NOT NULL,
            ratings_count integer NOT NULL,
            rating_sum integer NOT NULL,
            avg_rating numeric(4, 3),
            computed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tutor_id, day)
        );
        CREATE INDEX daily_metrics_day_idx ON daily_metrics (day);

        CREATE TABLE performance_scores (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tutor_id bigint NOT NULL REFERENCES tutors (id) ON DELETE CASCADE,
            computed_for date NOT NULL,
            score numeric(5, 2) NOT NULL,
            components jsonb NOT NULL,
            computed_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (tutor_id, computed_for)
        );

        CREATE TABLE score_notifications (
            score_id bigint PRIMARY KEY REFERENCES performance_scores (id) ON DELETE CASCADE,
            tutor_id bigint NOT NULL REFERENCES tutors (id) ON DELETE CASCADE,
            previous_score numeric(5, 2) NOT NULL,
            score numeric(5, 2) NOT NULL,
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
            attempts integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz
        );

        CREATE TABLE churn_models (
            version integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            algorithm text NOT NULL,
            feature_names text[] NOT NULL,
            means double precision[] NOT NULL,
            scales double precision[] NOT NULL,
            coefficients double precision[] NOT NULL,
            intercept double precision NOT NULL,
            metrics jsonb NOT NULL,
            trained_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE exports (
            id uuid PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('tutors', 'daily_metrics')),
            params jsonb NOT NULL DEFAULT '{}',
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
            content bytea,
            content_type text,
            row_count integer,
            size_bytes integer,
            error text,
            requested_lsn pg_lsn,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz,
            expires_at timestamptz NOT NULL
        );
        CREATE INDEX exports_expires_idx ON exports (expires_at);
        """
    )


def downgrade() -> None:
    """Drop every table (development only: it deletes all data)."""
    op.execute(
        """
        DROP TABLE exports, churn_models, score_notifications, performance_scores, daily_metrics,
                   ratings, tutoring_sessions, tutors
        """
    )
