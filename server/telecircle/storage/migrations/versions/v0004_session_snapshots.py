"""Session snapshots: the live state of open sessions, so a restart resumes them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Frozen: states the schema as of revision 0004 and imports nothing from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_snapshots",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_session_snapshots_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("session_id", name="pk_session_snapshots"),
    )


def downgrade() -> None:
    op.drop_table("session_snapshots")
