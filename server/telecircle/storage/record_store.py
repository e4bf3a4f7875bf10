"""Read-only queries for session records: one session's facts, and a room's sessions.

Same rules as :mod:`telecircle.storage.stores`: plain frozen records out, times as UNIX
epoch seconds, no ORM object leaves this module. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, select

from telecircle.domain.commands import LeaveReason
from telecircle.domain.ids import ParticipantId, RoomId, SessionId
from telecircle.storage.codec import decode_payload, from_utc
from telecircle.storage.database import Database
from telecircle.storage.stores import AttendanceRecord, SessionStatus, StoredEvent
from telecircle.storage.tables import (
    AttendanceRow,
    ConsentRow,
    EventRow,
    ParticipantRow,
    RoomRow,
    SessionRow,
    UserRow,
)


@dataclass(frozen=True, slots=True)
class SeatRecord:
    """One person's seat in the session. ``user_id`` is set for a clinician's seat and
    ``pass_id`` for a patient's, where the room service recorded them."""

    participant_id: ParticipantId
    display_name: str
    first_joined_at: float
    left_at: float | None
    user_id: str | None
    pass_id: str | None


@dataclass(frozen=True, slots=True)
class SeatConsent:
    """A consent ledger entry of the pass a patient's seat was taken with."""

    participant_id: ParticipantId
    agreement_version: int
    recording_consent: bool | None
    accepted_at: float


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """Everything stored about one session, for its record."""

    session_id: SessionId
    room_id: RoomId
    room_name: str
    status: SessionStatus
    started_at: float
    ended_at: float | None
    seats: tuple[SeatRecord, ...]
    attendance: tuple[AttendanceRecord, ...]
    events: tuple[StoredEvent, ...]
    consents: tuple[SeatConsent, ...]


@dataclass(frozen=True, slots=True)
class SessionListing:
    """One session of a room, for the list: when, and how many people attended."""

    session_id: SessionId
    status: SessionStatus
    started_at: float
    ended_at: float | None
    attended: int


async def session_room(db: Database, session_id: str) -> RoomId | None:
    """The room of the session, or None if there is no such session."""
    async with db.read() as conn:
        room_id = (
            await conn.execute(select(SessionRow.room_id).where(SessionRow.id == session_id))
        ).scalar_one_or_none()
    return None if room_id is None else RoomId(room_id)


async def session_facts(db: Database, session_id: str) -> SessionFacts | None:
    """The session's room, seats, attendance, timeline and its patients' consents, read
    in one transaction (None if there is no such session).

    The timeline is read before the seats, so every seat an event names is among them
    even while the session runs. Consents are those of the pass each seat was taken
    with, in the session's room, oldest first.
    """
    async with db.read() as conn:
        head = (
            await conn.execute(
                select(SessionRow, RoomRow.name.label("room_name"))
                .join(RoomRow, RoomRow.id == SessionRow.room_id)
                .where(SessionRow.id == session_id)
            )
        ).one_or_none()
        if head is None:
            return None
        events = await conn.execute(
            select(EventRow.seq, EventRow.kind, EventRow.at, EventRow.payload)
            .where(EventRow.session_id == session_id)
            .order_by(EventRow.seq)
        )
        timeline = tuple(
            StoredEvent(
                SessionId(session_id), r.seq, r.kind, from_utc(r.at), decode_payload(r.payload)
            )
            for r in events
        )
        seats = await conn.execute(
            select(ParticipantRow)
            .where(ParticipantRow.session_id == session_id)
            .order_by(ParticipantRow.first_joined_at, ParticipantRow.id)
        )
        seat_records = tuple(
            SeatRecord(
                participant_id=ParticipantId(r.id),
                display_name=r.display_name,
                first_joined_at=from_utc(r.first_joined_at),
                left_at=None if r.left_at is None else from_utc(r.left_at),
                user_id=r.user_id,
                pass_id=r.pass_id,
            )
            for r in seats
        )
        attendance = await conn.execute(
            select(
                AttendanceRow.participant_id,
                ParticipantRow.display_name,
                AttendanceRow.joined_at,
                AttendanceRow.left_at,
                AttendanceRow.leave_reason,
            )
            .join(ParticipantRow, ParticipantRow.id == AttendanceRow.participant_id)
            .where(AttendanceRow.session_id == session_id)
            .order_by(AttendanceRow.joined_at, AttendanceRow.id)
        )
        intervals = tuple(
            AttendanceRecord(
                participant_id=ParticipantId(r.participant_id),
                display_name=r.display_name,
                joined_at=from_utc(r.joined_at),
                left_at=None if r.left_at is None else from_utc(r.left_at),
                leave_reason=None if r.leave_reason is None else LeaveReason(r.leave_reason),
            )
            for r in attendance
        )
        consents = await conn.execute(
            select(
                ParticipantRow.id.label("participant_id"),
                ConsentRow.agreement_version,
                ConsentRow.recording_consent,
                ConsentRow.accepted_at,
            )
            .join(
                ConsentRow,
                and_(
                    ConsentRow.pass_id == ParticipantRow.pass_id,
                    ConsentRow.room_id == head.room_id,
                ),
            )
            .where(ParticipantRow.session_id == session_id)
            .order_by(ConsentRow.accepted_at, ConsentRow.id)
        )
        seat_consents = tuple(
            SeatConsent(
                participant_id=ParticipantId(r.participant_id),
                agreement_version=int(r.agreement_version),
                recording_consent=r.recording_consent,
                accepted_at=from_utc(r.accepted_at),
            )
            for r in consents
        )
    return SessionFacts(
        session_id=SessionId(head.id),
        room_id=RoomId(head.room_id),
        room_name=head.room_name,
        status=head.status,
        started_at=from_utc(head.started_at),
        ended_at=None if head.ended_at is None else from_utc(head.ended_at),
        seats=seat_records,
        attendance=intervals,
        events=timeline,
        consents=seat_consents,
    )


async def room_sessions(db: Database, room_id: str) -> list[SessionListing]:
    """The room's sessions, newest first, each with how many people attended (had at
    least one attendance interval: clinicians and admitted patients)."""
    attended = (
        select(
            AttendanceRow.session_id,
            func.count(func.distinct(AttendanceRow.participant_id)).label("attended"),
        )
        .group_by(AttendanceRow.session_id)
        .subquery()
    )
    query = (
        select(SessionRow, func.coalesce(attended.c.attended, 0).label("attended"))
        .outerjoin(attended, attended.c.session_id == SessionRow.id)
        .where(SessionRow.room_id == room_id)
        .order_by(SessionRow.started_at.desc(), SessionRow.id.desc())
    )
    async with db.read() as conn:
        rows = await conn.execute(query)
        return [
            SessionListing(
                session_id=SessionId(r.id),
                status=r.status,
                started_at=from_utc(r.started_at),
                ended_at=None if r.ended_at is None else from_utc(r.ended_at),
                attended=int(r.attended),
            )
            for r in rows
        ]


async def user_names(db: Database, user_ids: Sequence[str]) -> dict[str, str]:
    """Display names of the given accounts (ids without an account are left out)."""
    if not user_ids:
        return {}
    async with db.read() as conn:
        rows = await conn.execute(
            select(UserRow.id, UserRow.display_name).where(UserRow.id.in_(sorted(set(user_ids))))
        )
        return {r.id: r.display_name for r in rows}
