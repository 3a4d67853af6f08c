"""Beat heartbeats: one row per run of the heartbeat task, naming the beat that scheduled it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

Expand step (a new table only): a release before this one runs beside it unchanged.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create beat_heartbeats."""
    op.execute(
        """
        CREATE TABLE beat_heartbeats (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            beat text NOT NULL,
            worker text NOT NULL,
            sent_at timestamptz,
            ran_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX beat_heartbeats_ran_at_idx ON beat_heartbeats (ran_at);
        """
    )


def downgrade() -> None:
    """Drop beat_heartbeats."""
    op.execute("DROP TABLE beat_heartbeats")
