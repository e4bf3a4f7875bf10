"""Notes: per-session wrapped data keys, notes and their sealed versions; the room
policy on sharing notes among a room's clinicians.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Frozen: states the schema as of revision 0005 and imports nothing from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "rooms",
        sa.Column("notes_shared", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_table(
        "session_keys",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(destroyed_at IS NULL) = (wrapped IS NOT NULL AND nonce IS NOT NULL)",
            name="ck_session_keys_live_or_destroyed",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_session_keys_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("session_id", name="pk_session_keys"),
    )
    op.create_index("ix_session_keys_kek_version", "session_keys", ["kek_version"])
    op.create_table(
        "notes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("author_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name="fk_notes_author_id_users"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_notes_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notes"),
    )
    op.create_index("ix_notes_session_id", "notes", ["session_id"])
    op.create_table(
        "note_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("note_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("save_id", sa.String(length=64), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"], name="fk_note_versions_note_id_notes"),
        sa.PrimaryKeyConstraint("id", name="pk_note_versions"),
        sa.UniqueConstraint("note_id", "save_id", name="uq_note_versions_note_id_save_id"),
        sa.UniqueConstraint("note_id", "version", name="uq_note_versions_note_id_version"),
    )


def downgrade() -> None:
    op.drop_table("note_versions")
    op.drop_index("ix_notes_session_id", table_name="notes")
    op.drop_table("notes")
    op.drop_index("ix_session_keys_kek_version", table_name="session_keys")
    op.drop_table("session_keys")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("notes_shared")
