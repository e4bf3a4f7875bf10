"""Patients' feedback: the session-rating form's questions, each patient's response to
a session, and its answers (scores, and comments sealed with the session's data key).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Frozen: states the schema as of revision 0006 and imports nothing from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback_questions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("low_label", sa.String(length=60), nullable=False),
        sa.Column("high_label", sa.String(length=60), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint("kind IN ('scale', 'comment')", name="ck_feedback_questions_kind"),
        sa.PrimaryKeyConstraint("id", name="pk_feedback_questions"),
    )
    op.create_table(
        "feedback_responses",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name="fk_feedback_responses_participant_id_participants",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_feedback_responses_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_feedback_responses"),
        sa.UniqueConstraint(
            "session_id",
            "participant_id",
            name="uq_feedback_responses_session_id_participant_id",
        ),
    )
    op.create_table(
        "feedback_answers",
        sa.Column("response_id", sa.String(length=64), nullable=False),
        sa.Column("question_id", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment_kek_version", sa.Integer(), nullable=True),
        sa.Column("comment_nonce", sa.LargeBinary(), nullable=True),
        sa.Column("comment_ciphertext", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint("score BETWEEN 0 AND 10", name="ck_feedback_answers_score"),
        sa.CheckConstraint(
            "(score IS NOT NULL AND comment_kek_version IS NULL AND comment_nonce IS NULL "
            "AND comment_ciphertext IS NULL) OR (score IS NULL AND comment_kek_version "
            "IS NOT NULL AND comment_nonce IS NOT NULL AND comment_ciphertext IS NOT NULL)",
            name="ck_feedback_answers_score_or_comment",
        ),
        sa.ForeignKeyConstraint(
            ["question_id"],
            ["feedback_questions.id"],
            name="fk_feedback_answers_question_id_feedback_questions",
        ),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["feedback_responses.id"],
            name="fk_feedback_answers_response_id_feedback_responses",
        ),
        sa.PrimaryKeyConstraint("response_id", "question_id", name="pk_feedback_answers"),
    )


def downgrade() -> None:
    op.drop_table("feedback_answers")
    op.drop_table("feedback_responses")
    op.drop_table("feedback_questions")
