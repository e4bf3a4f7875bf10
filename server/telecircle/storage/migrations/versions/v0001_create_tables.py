"""Create rooms, sessions, participants, attendance and events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: this file states the schema as of revision 0001 and imports nothing from the
models, so later model changes cannot alter what it builds.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("participant_limit", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.CheckConstraint("participant_limit > 0", name="ck_rooms_participant_limit"),
        sa.PrimaryKeyConstraint("id", name="pk_rooms"),
    )
    op.create_index("ix_rooms_code", "rooms", ["code"], unique=True)

    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.CheckConstraint("status IN ('open', 'ended')", name="ck_sessions_status"),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name="fk_sessions_room_id_rooms"),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_room_id", "sessions", ["room_id"])
    op.create_index(
        "uq_sessions_open_room_id",
        "sessions",
        ["room_id"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )

    op.create_table(
        "participants",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("first_joined_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_participants_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_participants"),
    )
    op.create_index("ix_participants_session_id", "participants", ["session_id"])

    op.create_table(
        "attendance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("participant_id", sa.String(64), nullable=False),
        sa.Column("joined_at", _utc(), nullable=False),
        sa.Column("left_at", _utc(), nullable=True),
        sa.Column("leave_reason", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name="fk_attendance_participant_id_participants",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_attendance_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_attendance"),
    )
    op.create_index("ix_attendance_session_id", "attendance", ["session_id"])
    op.create_index(
        "uq_attendance_open_participant_id",
        "attendance",
        ["participant_id"],
        unique=True,
        sqlite_where=sa.text("left_at IS NULL"),
        postgresql_where=sa.text("left_at IS NULL"),
    )

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_events_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("session_id", "seq", name="uq_events_session_id_seq"),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_index("uq_attendance_open_participant_id", table_name="attendance")
    op.drop_index("ix_attendance_session_id", table_name="attendance")
    op.drop_table("attendance")
    op.drop_index("ix_participants_session_id", table_name="participants")
    op.drop_table("participants")
    op.drop_index("uq_sessions_open_room_id", table_name="sessions")
    op.drop_index("ix_sessions_room_id", table_name="sessions")
    op.drop_table("sessions")
    op.drop_index("ix_rooms_code", table_name="rooms")
    op.drop_table("rooms")
