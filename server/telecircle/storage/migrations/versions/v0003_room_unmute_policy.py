"""Rooms: may a patient muted by a clinician unmute themselves (the room's policy).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Frozen: states the schema as of revision 0003 and imports nothing from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "rooms",
        sa.Column(
            "patients_may_unmute", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("rooms") as rooms:
        rooms.drop_column("patients_may_unmute")
