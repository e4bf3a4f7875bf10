"""Accounts, sign-in, one-time links, organisation settings, the agreement's versions,
room clinicians, scheduled sessions, invites, patient passes, the consent ledger and
the hash-chained audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Frozen: states the schema as of revision 0002 and imports nothing from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_TABLES = (
    "consents",
    "patient_passes",
    "invites",
    "scheduled_sessions",
    "room_clinicians",
    "login_sessions",
    "account_links",
    "users",
    "org_settings",
    "audit_log",
    "audit_head",
    "agreement_versions",
)


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agreement_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_agreement_versions")),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"], unique=False)
    op.create_table(
        "org_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("max_participants", sa.Integer(), nullable=False),
        sa.Column("require_totp", sa.Boolean(), nullable=False),
        sa.Column("recording_consent_required", sa.Boolean(), nullable=False),
        sa.Column("notes_retention_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_org_settings")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.CheckConstraint(
            "role IN ('administrator', 'therapist', 'co_facilitator')", name=op.f("ck_users_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index(op.f("ix_users_username"), "users", ["username"], unique=True)
    op.create_table(
        "account_links",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("used_at", _utc(), nullable=True),
        sa.CheckConstraint(
            "purpose IN ('setup', 'set_password')", name=op.f("ck_account_links_purpose")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_account_links_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_links")),
    )
    op.create_index(op.f("ix_account_links_user_id"), "account_links", ["user_id"], unique=False)
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("second_factor_pending", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("last_seen_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_login_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
    )
    op.create_index(op.f("ix_login_sessions_user_id"), "login_sessions", ["user_id"], unique=False)
    op.create_table(
        "room_clinicians",
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("room_role", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "room_role IN ('owner', 'co_facilitator')", name=op.f("ck_room_clinicians_room_role")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_room_clinicians_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_room_clinicians_user_id_users")
        ),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_room_clinicians")),
    )
    op.create_index(
        op.f("ix_room_clinicians_user_id"), "room_clinicians", ["user_id"], unique=False
    )
    op.create_table(
        "scheduled_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("starts_at", _utc(), nullable=False),
        sa.Column("planned_minutes", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("cancelled_at", _utc(), nullable=True),
        sa.CheckConstraint(
            "planned_minutes BETWEEN 60 AND 180", name=op.f("ck_scheduled_sessions_planned_minutes")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_scheduled_sessions_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_scheduled_sessions_room_id_rooms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_sessions")),
    )
    op.create_index(
        op.f("ix_scheduled_sessions_room_id"), "scheduled_sessions", ["room_id"], unique=False
    )
    op.create_table(
        "invites",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("scheduled_session_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.Column("generation", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("kind IN ('personal', 'group')", name=op.f("ck_invites_kind")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_invites_created_by_users")
        ),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_invites_room_id_rooms")),
        sa.ForeignKeyConstraint(
            ["scheduled_session_id"],
            ["scheduled_sessions.id"],
            name=op.f("fk_invites_scheduled_session_id_scheduled_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invites")),
    )
    op.create_index(op.f("ix_invites_room_id"), "invites", ["room_id"], unique=False)
    op.create_table(
        "patient_passes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("invite_id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invite_id"], ["invites.id"], name=op.f("fk_patient_passes_invite_id_invites")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_patient_passes_room_id_rooms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_passes")),
    )
    op.create_index(
        op.f("ix_patient_passes_invite_id"), "patient_passes", ["invite_id"], unique=False
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pass_id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("agreement_version", sa.Integer(), nullable=False),
        sa.Column("recording_consent", sa.Boolean(), nullable=True),
        sa.Column("accepted_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agreement_version"],
            ["agreement_versions.version"],
            name=op.f("fk_consents_agreement_version_agreement_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["pass_id"], ["patient_passes.id"], name=op.f("fk_consents_pass_id_patient_passes")
        ),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_consents_room_id_rooms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    op.create_index(op.f("ix_consents_pass_id"), "consents", ["pass_id"], unique=False)
    op.add_column("participants", sa.Column("user_id", sa.String(length=64), nullable=True))
    op.add_column("participants", sa.Column("pass_id", sa.String(length=64), nullable=True))
    op.add_column("participants", sa.Column("left_at", _utc(), nullable=True))
    # Seats that had ended before this revision ended with their last interval.
    op.execute(
        "UPDATE participants SET left_at = (SELECT MAX(a.left_at) FROM attendance a "
        "WHERE a.participant_id = participants.id) "
        "WHERE NOT EXISTS (SELECT 1 FROM attendance a "
        "WHERE a.participant_id = participants.id AND a.left_at IS NULL)"
    )
    op.add_column("rooms", sa.Column("recording_consent_required", sa.Boolean(), nullable=True))
    op.add_column("rooms", sa.Column("notes_retention_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rooms") as rooms:
        rooms.drop_column("notes_retention_days")
        rooms.drop_column("recording_consent_required")
    with op.batch_alter_table("participants") as participants:
        participants.drop_column("left_at")
        participants.drop_column("pass_id")
        participants.drop_column("user_id")
    for table in NEW_TABLES:
        # Dropping a table drops its indexes with it.
        op.drop_table(table)
