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
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
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
