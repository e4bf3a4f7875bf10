"""Read-only queries for session records: one session's facts, and a room's sessions.

Same rules as :mod:`telecircle.storage.stores`: plain frozen records out, times as UNIX
epoch seconds, no ORM object leaves this module. Nothing here writes.

A person may hold several seats (participant ids) in one session: after leaving and
coming back, after the reconnect window ran out, or from another device. Each seat
carries a *person key* (:func:`_person_key`) that is the same for all of one person's
seats, so the record counts people, not seats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, literal, null, select

from telecircle.domain.ids import ParticipantId, RoomId, SessionId
from telecircle.storage.codec import from_utc
from telecircle.storage.database import Database
from telecircle.storage.stores import (
    AttendanceRecord,
    SessionStatus,
    StoredEvent,
    read_attendance,
    read_timeline,
)
from telecircle.storage.tables import (
    AttendanceRow,
    ConsentRow,
    InviteRow,
    ParticipantRow,
    PatientPassRow,
    RoomRow,
    SessionRow,
    UserRow,
)


@dataclass(frozen=True, slots=True)
class SeatRecord:
    """One seat in the session. ``user_id`` is set for a clinician's seat and ``pass_id``
    for a patient's, where the room service recorded them; ``person_key`` is the same
    for all the seats of one person (see :func:`_person_key`)."""

    participant_id: ParticipantId
    display_name: str
    first_joined_at: float
    left_at: float | None
    user_id: str | None
    pass_id: str | None
    person_key: str


@dataclass(frozen=True, slots=True)
class PassConsent:
    """A consent ledger entry of a pass that a seat of the session was taken with."""

    pass_id: str
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
    consents: tuple[PassConsent, ...]


@dataclass(frozen=True, slots=True)
class SessionListing:
    """One session of a room, for the list: when, and how many people attended (people,
    not seats: see :func:`_person_key`)."""

    session_id: SessionId
    status: SessionStatus
    started_at: float
    ended_at: float | None
    attended: int


def _person_key() -> ColumnElement[str]:
    """Who a participants row belongs to, the same for all of one person's seats; over
    ``participants`` outer-joined to their ``patient_passes`` and ``invites`` rows.

    ``user:<user id>`` for a clinician (their account); ``invite:<invite id>`` for a
    patient who entered with a pass of a personal invite (one person, whichever device
    opened the link); ``pass:<pass id>`` for a pass of a group invite (each pass is one
    person); the seat's own id where no owner was recorded (older sessions). These are
    the room service's seat keys (services.entry), which hold one seat per person.
    """
    personal_invite = case((InviteRow.kind == "personal", PatientPassRow.invite_id), else_=null())
    return func.coalesce(
        literal("user:") + ParticipantRow.user_id,
        literal("invite:") + personal_invite,
        literal("pass:") + ParticipantRow.pass_id,
        ParticipantRow.id,
    )


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
    even while the session runs. Each seat comes with its person key. Consents are
    those of the passes the seats were taken with, in the session's room, oldest first.
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
        timeline = tuple(await read_timeline(conn, SessionId(session_id)))
        seats = await conn.execute(
            select(
                ParticipantRow.id,
                ParticipantRow.display_name,
                ParticipantRow.first_joined_at,
                ParticipantRow.left_at,
                ParticipantRow.user_id,
                ParticipantRow.pass_id,
                _person_key().label("person_key"),
            )
            .outerjoin(PatientPassRow, PatientPassRow.id == ParticipantRow.pass_id)
            .outerjoin(InviteRow, InviteRow.id == PatientPassRow.invite_id)
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
                person_key=r.person_key,
            )
            for r in seats
        )
        intervals = tuple(await read_attendance(conn, SessionId(session_id)))
        seat_passes = select(ParticipantRow.pass_id).where(
            ParticipantRow.session_id == session_id, ParticipantRow.pass_id.is_not(None)
        )
        consents = await conn.execute(
            select(
                ConsentRow.pass_id,
                ConsentRow.agreement_version,
                ConsentRow.recording_consent,
                ConsentRow.accepted_at,
            )
            .where(ConsentRow.pass_id.in_(seat_passes), ConsentRow.room_id == head.room_id)
            .order_by(ConsentRow.accepted_at, ConsentRow.id)
        )
        pass_consents = tuple(
            PassConsent(
                pass_id=r.pass_id,
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
        consents=pass_consents,
    )


async def room_sessions(db: Database, room_id: str) -> list[SessionListing]:
    """The room's sessions, newest first, each with how many people attended (had at
    least one attendance interval on any of their seats: clinicians and admitted
    patients)."""
    attended = (
        select(
            AttendanceRow.session_id,
            func.count(func.distinct(_person_key())).label("attended"),
        )
        .join(ParticipantRow, ParticipantRow.id == AttendanceRow.participant_id)
        .outerjoin(PatientPassRow, PatientPassRow.id == ParticipantRow.pass_id)
        .outerjoin(InviteRow, InviteRow.id == PatientPassRow.invite_id)
        .where(
            AttendanceRow.session_id.in_(select(SessionRow.id).where(SessionRow.room_id == room_id))
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
