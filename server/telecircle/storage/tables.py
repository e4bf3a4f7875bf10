"""The schema as SQLAlchemy declarative models. Alembic migrations own the real schema.

Rows never leave the storage package: the stores turn them into plain records. Every
timestamp column holds a timezone-aware UTC datetime (:class:`UtcDateTime`); on SQLite,
which has no time zones, it is stored as UTC text and read back as UTC.

A test compares these models with the schema the migrations build, so a change here
needs a new migration in ``storage/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_LENGTH = 64
NAME_LENGTH = 200
CODE_LENGTH = 64
KIND_LENGTH = 64

SESSION_OPEN = "open"
SESSION_ENDED = "ended"
HASH_LENGTH = 64  # hex SHA-256

ROLES = ("administrator", "therapist", "co_facilitator")
LINK_PURPOSES = ("setup", "set_password")
INVITE_KINDS = ("personal", "group")
ROOM_ROLES = ("owner", "co_facilitator")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored and returned in UTC. Naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UtcDateTime()}  # noqa: RUF012


class RoomRow(Base):
    """A group: the standing place its sessions happen in."""

    __tablename__ = "rooms"
    __table_args__ = (CheckConstraint("participant_limit > 0", name="participant_limit"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE_LENGTH), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    participant_limit: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    # Per-room overrides of the organisation's consent settings; NULL inherits.
    recording_consent_required: Mapped[bool | None] = mapped_column(Boolean)
    notes_retention_days: Mapped[int | None] = mapped_column(Integer)
    # Room policy: may a patient muted by a clinician unmute themselves?
    patients_may_unmute: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Room policy: may the room's other clinicians read a clinician's notes?
    notes_shared: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class SessionRow(Base):
    """One dated occurrence of a room. At most one session per room is open."""

    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint(f"status IN ('{SESSION_OPEN}', '{SESSION_ENDED}')", name="status"),
        Index(
            "uq_sessions_open_room_id",
            "room_id",
            unique=True,
            sqlite_where=text(f"status = '{SESSION_OPEN}'"),
            postgresql_where=text(f"status = '{SESSION_OPEN}'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class ParticipantRow(Base):
    """One person's seat in one session (the domain's ParticipantId)."""

    __tablename__ = "participants"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    first_joined_at: Mapped[datetime]
    # Who the seat belongs to: a clinician's account or a patient's redeemed invite.
    user_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    pass_id: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    # When the seat ended (a seat ends once; from the lobby, too, without attendance).
    left_at: Mapped[datetime | None]


class AttendanceRow(Base):
    """One join-to-leave interval. A participant has at most one open interval."""

    __tablename__ = "attendance"
    __table_args__ = (
        Index(
            "uq_attendance_open_participant_id",
            "participant_id",
            unique=True,
            sqlite_where=text("left_at IS NULL"),
            postgresql_where=text("left_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    joined_at: Mapped[datetime]
    left_at: Mapped[datetime | None]
    leave_reason: Mapped[str | None] = mapped_column(String(32))


class SessionSnapshotRow(Base):
    """The live state of an open session (seats, places, timers), kept so that a
    restarted server resumes the session where it was; removed when the session ends.
    ``saved_at`` is refreshed while the session lives (the time a crash is counted from).
    """

    __tablename__ = "session_snapshots"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    saved_at: Mapped[datetime]
    body: Mapped[str] = mapped_column(Text)


class EventRow(Base):
    """One entry of a session's timeline; ``seq`` counts 1, 2, 3… within the session."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    at: Mapped[datetime]
    payload: Mapped[str] = mapped_column(Text)


class UserRow(Base):
    """A clinician or administrator account. Patients have no accounts (see invites)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    username: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    role: Mapped[str] = mapped_column(String(32))
    # NULL until the person sets a password through their one-time link.
    password_hash: Mapped[str | None] = mapped_column(Text)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime]


class LoginSessionRow(Base):
    """A signed-in browser. ``id`` is the SHA-256 of the cookie's secret."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(HASH_LENGTH))
    # True between the password and the TOTP code: the session may do nothing else.
    second_factor_pending: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class AccountLinkRow(Base):
    """A one-time link: first-run setup or setting a password. ``id`` is the token's hash."""

    __tablename__ = "account_links"
    __table_args__ = (CheckConstraint(_one_of("purpose", LINK_PURPOSES), name="purpose"),)

    id: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_by: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class OrgSettingsRow(Base):
    """The organisation's settings: a single row with ``id = 1``."""

    __tablename__ = "org_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    max_participants: Mapped[int] = mapped_column(Integer)
    require_totp: Mapped[bool] = mapped_column(Boolean)
    recording_consent_required: Mapped[bool] = mapped_column(Boolean)
    notes_retention_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class AgreementVersionRow(Base):
    """One version of the confidentiality agreement; editing adds a version."""

    __tablename__ = "agreement_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class RoomClinicianRow(Base):
    """A clinician's place in a room: its owner (therapist) or a co-facilitator."""

    __tablename__ = "room_clinicians"
    __table_args__ = (CheckConstraint(_one_of("room_role", ROOM_ROLES), name="room_role"),)

    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    room_role: Mapped[str] = mapped_column(String(32))


class ScheduledSessionRow(Base):
    """A planned session of a room: date, start time and length."""

    __tablename__ = "scheduled_sessions"
    __table_args__ = (
        CheckConstraint("planned_minutes BETWEEN 60 AND 180", name="planned_minutes"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), index=True)
    starts_at: Mapped[datetime]
    planned_minutes: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]


class InviteRow(Base):
    """An invite link: personal (one seat, one named patient) or for a group session.

    A personal invite's ``generation`` counts its redemptions; only the pass of the
    newest generation is valid, so opening the link on a second device moves the seat.
    """

    __tablename__ = "invites"
    __table_args__ = (CheckConstraint(_one_of("kind", INVITE_KINDS), name="kind"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), index=True)
    scheduled_session_id: Mapped[str | None] = mapped_column(ForeignKey("scheduled_sessions.id"))
    kind: Mapped[str] = mapped_column(String(16))
    patient_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    generation: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class PatientPassRow(Base):
    """A redeemed invite: what the patient's HttpOnly cookie stands for (``id`` is the
    SHA-256 of the cookie's secret)."""

    __tablename__ = "patient_passes"

    id: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    invite_id: Mapped[str] = mapped_column(ForeignKey("invites.id"), index=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"))
    generation: Mapped[int] = mapped_column(Integer)
    display_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ConsentRow(Base):
    """The consent ledger: what a patient accepted, when, under which agreement version."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pass_id: Mapped[str] = mapped_column(ForeignKey("patient_passes.id"), index=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"))
    agreement_version: Mapped[int] = mapped_column(ForeignKey("agreement_versions.version"))
    # NULL when the room did not ask for recording consent.
    recording_consent: Mapped[bool | None] = mapped_column(Boolean)
    accepted_at: Mapped[datetime]


class AuditEntryRow(Base):
    """One audit log entry, hash-chained to the one before (``seq`` 1, 2, 3…)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(KIND_LENGTH), index=True)
    target: Mapped[str | None] = mapped_column(String(128))
    address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))


class AuditHeadRow(Base):
    """The chain head (``id = 1``), authenticated by an HMAC whose key is not in the
    database: removing entries from the end, or rewriting the chain, shows."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    mac: Mapped[str] = mapped_column(String(HASH_LENGTH))


class SessionKeyRow(Base):
    """A session's notes data key, wrapped by key-encryption key ``kek_version`` (kept
    outside the database). Retention destroys it: ``wrapped`` and ``nonce`` become NULL
    and the session's notes can never be read again (crypto-shredding)."""

    __tablename__ = "session_keys"
    __table_args__ = (
        CheckConstraint(
            "(destroyed_at IS NULL) = (wrapped IS NOT NULL AND nonce IS NOT NULL)",
            name="live_or_destroyed",
        ),
    )

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    kek_version: Mapped[int] = mapped_column(Integer, index=True)
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    destroyed_at: Mapped[datetime | None]


class NoteRow(Base):
    """A clinician's note in a session. Its text lives, sealed, in its versions."""

    __tablename__ = "notes"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    author_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    latest_version: Mapped[int] = mapped_column(Integer)


class NoteVersionRow(Base):
    """One saved version of a note: sealed with the session's data key, bound to the
    note, session, author, version and the key version it was sealed under."""

    __tablename__ = "note_versions"
    __table_args__ = (
        UniqueConstraint("note_id", "version"),
        UniqueConstraint("note_id", "save_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    note_id: Mapped[str] = mapped_column(ForeignKey("notes.id"))
    version: Mapped[int] = mapped_column(Integer)
    save_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    saved_at: Mapped[datetime]
    kek_version: Mapped[int] = mapped_column(Integer)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


FEEDBACK_KINDS = ("scale", "comment")
FEEDBACK_TEXT_LENGTH = 200  # a question's wording
FEEDBACK_LABEL_LENGTH = 60  # the words at either end of a scale


class FeedbackQuestionRow(Base):
    """A question of the patients' session-rating form: a 0-10 scale (with words for
    its ends) or a free comment. Questions are never reworded: a new wording is a new
    question, so stored answers keep the wording they answered."""

    __tablename__ = "feedback_questions"
    __table_args__ = (CheckConstraint(_one_of("kind", FEEDBACK_KINDS), name="kind"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(FEEDBACK_TEXT_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))
    low_label: Mapped[str] = mapped_column(String(FEEDBACK_LABEL_LENGTH))
    high_label: Mapped[str] = mapped_column(String(FEEDBACK_LABEL_LENGTH))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class FeedbackResponseRow(Base):
    """One patient's answers to the form for one session (one per seat)."""

    __tablename__ = "feedback_responses"
    __table_args__ = (UniqueConstraint("session_id", "participant_id"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"))
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    submitted_at: Mapped[datetime]


class FeedbackAnswerRow(Base):
    """One answered question: a score from 0 to 10, or a comment sealed with the
    session's data key (so retention destroys it with the notes). Skipped questions
    have no row."""

    __tablename__ = "feedback_answers"
    __table_args__ = (
        CheckConstraint("score BETWEEN 0 AND 10", name="score"),
        CheckConstraint(
            "(score IS NOT NULL AND comment_kek_version IS NULL AND comment_nonce IS NULL "
            "AND comment_ciphertext IS NULL) OR (score IS NULL AND comment_kek_version "
            "IS NOT NULL AND comment_nonce IS NOT NULL AND comment_ciphertext IS NOT NULL)",
            name="score_or_comment",
        ),
    )

    response_id: Mapped[str] = mapped_column(ForeignKey("feedback_responses.id"), primary_key=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("feedback_questions.id"), primary_key=True)
    score: Mapped[int | None] = mapped_column(Integer)
    comment_kek_version: Mapped[int | None] = mapped_column(Integer)
    comment_nonce: Mapped[bytes | None] = mapped_column(LargeBinary)
    comment_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
