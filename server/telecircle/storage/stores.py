"""The stores: rooms, sessions, and each session's timeline and attendance.

Repository functions only: they keep the database consistent (one open session per
room, one open attendance interval per participant, a gap-free ``seq`` per session) but
decide nothing the domain decides. Each function is one transaction: it either does all
of its work or raises and does none. When a writing function returns, its transaction
is committed durably (SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit``).

Times in and out are UNIX epoch seconds (floats, microsecond precision). Records are
frozen dataclasses of plain values: no ORM object leaves this module.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from telecircle.domain.commands import LeaveReason
from telecircle.domain.events import (
    Event,
    MovedToLobby,
    ParticipantAdmitted,
    ParticipantJoined,
    ParticipantKnocked,
    ParticipantLeft,
)
from telecircle.domain.ids import ParticipantId, RoomCode, RoomId, SessionId
from telecircle.storage.codec import (
    decode_event,
    decode_payload,
    encode_payload,
    from_utc,
    to_utc,
)
from telecircle.storage.database import Database
from telecircle.storage.errors import (
    DuplicateRoomCode,
    InconsistentEvents,
    RoomNotFound,
    SessionNotFound,
    SessionNotOpen,
)
from telecircle.storage.tables import (
    SESSION_ENDED,
    SESSION_OPEN,
    AttendanceRow,
    EventRow,
    ParticipantRow,
    RoomRow,
    SessionRow,
    SessionSnapshotRow,
)

SessionStatus = Literal["open", "ended"]


@dataclass(frozen=True, slots=True)
class RoomRecord:
    id: RoomId
    code: RoomCode
    name: str
    participant_limit: int
    created_at: float
    # Overrides of the organisation's consent settings; None inherits.
    recording_consent_required: bool | None = None
    notes_retention_days: int | None = None
    patients_may_unmute: bool = True
    # May the room's other clinicians read a clinician's notes?
    notes_shared: bool = False


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: SessionId
    room_id: RoomId
    status: SessionStatus
    started_at: float
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One timeline entry. ``seq`` is 1, 2, 3… within its session, in recording order."""

    session_id: SessionId
    seq: int
    kind: str
    at: float
    payload: Mapping[str, Any]

    def to_event(self) -> Event:
        """The domain event this entry records."""
        return decode_event(self.kind, self.at, self.payload)


@dataclass(frozen=True, slots=True)
class AttendanceRecord:
    """One join-to-leave interval; ``left_at`` is None while the participant is present."""

    participant_id: ParticipantId
    display_name: str
    joined_at: float
    left_at: float | None
    leave_reason: LeaveReason | None


# ---------------------------------------------------------------------------- rooms


async def create_room(
    db: Database,
    name: str,
    participant_limit: int,
    code: RoomCode,
    *,
    now: float | None = None,
) -> RoomRecord:
    """Store a new room with a fresh id. ``now`` defaults to the current time.

    Raises :class:`DuplicateRoomCode` if ``code`` is taken and ValueError if
    ``participant_limit`` is not positive.
    """
    if participant_limit < 1:
        raise ValueError("participant_limit must be at least 1")
    created = time.time() if now is None else now
    room_id = RoomId("r_" + secrets.token_hex(8))
    try:
        async with db.write() as conn:
            await conn.execute(
                insert(RoomRow).values(
                    id=room_id,
                    code=code,
                    name=name,
                    participant_limit=participant_limit,
                    created_at=to_utc(created),
                )
            )
    except IntegrityError as exc:
        if await get_room_by_code(db, code) is not None:
            raise DuplicateRoomCode("room code already in use") from exc
        raise
    return RoomRecord(room_id, code, name, participant_limit, from_utc(to_utc(created)))


async def get_room(db: Database, room_id: RoomId) -> RoomRecord | None:
    async with db.read() as conn:
        row = (await conn.execute(select(RoomRow).where(RoomRow.id == room_id))).one_or_none()
    return None if row is None else room_from_row(row)


async def get_room_by_code(db: Database, code: RoomCode) -> RoomRecord | None:
    async with db.read() as conn:
        row = (await conn.execute(select(RoomRow).where(RoomRow.code == code))).one_or_none()
    return None if row is None else room_from_row(row)


async def list_rooms(db: Database) -> list[RoomRecord]:
    """Every room, oldest first."""
    async with db.read() as conn:
        rows = await conn.execute(select(RoomRow).order_by(RoomRow.created_at, RoomRow.id))
        return [room_from_row(row) for row in rows]


async def update_room(
    db: Database,
    room_id: RoomId,
    *,
    name: str,
    participant_limit: int,
    recording_consent_required: bool | None,
    notes_retention_days: int | None,
    patients_may_unmute: bool = True,
    notes_shared: bool = False,
) -> RoomRecord:
    """Change a room's name, limit, overrides and policy. Raises RoomNotFound.

    A lower limit applies to the next admit: nobody already seated is affected here.
    """
    if participant_limit < 1:
        raise ValueError("participant_limit must be at least 1")
    async with db.write() as conn:
        result = await conn.execute(
            update(RoomRow)
            .where(RoomRow.id == room_id)
            .values(
                name=name,
                participant_limit=participant_limit,
                recording_consent_required=recording_consent_required,
                notes_retention_days=notes_retention_days,
                patients_may_unmute=patients_may_unmute,
                notes_shared=notes_shared,
            )
        )
        if result.rowcount != 1:
            raise RoomNotFound(room_id)
        row = (await conn.execute(select(RoomRow).where(RoomRow.id == room_id))).one()
    return room_from_row(row)


# ------------------------------------------------------------------------- sessions


async def open_session(db: Database, room_id: RoomId, now: float) -> SessionRecord:
    """The room's open session, created (started at ``now``) if there is none.

    Atomic: concurrent callers for one room all get the same session. Raises
    :class:`RoomNotFound` for an unknown room.
    """
    async with db.write() as conn:
        # Serialises callers per room on PostgreSQL; SQLite's BEGIN IMMEDIATE already
        # serialises every writer. The partial unique index is the final guard.
        locked = await conn.execute(
            select(RoomRow.id).where(RoomRow.id == room_id).with_for_update()
        )
        if locked.one_or_none() is None:
            raise RoomNotFound(f"no room {room_id}")
        existing = await _open_session_of(conn, room_id)
        if existing is not None:
            return existing
        record = SessionRecord(
            id=SessionId("s_" + secrets.token_hex(8)),
            room_id=room_id,
            status="open",
            started_at=from_utc(to_utc(now)),
            ended_at=None,
        )
        await conn.execute(
            insert(SessionRow).values(
                id=record.id, room_id=room_id, status=SESSION_OPEN, started_at=to_utc(now)
            )
        )
        return record


async def get_session(db: Database, session_id: SessionId) -> SessionRecord | None:
    async with db.read() as conn:
        row = (
            await conn.execute(select(SessionRow).where(SessionRow.id == session_id))
        ).one_or_none()
    return None if row is None else _session(row)


async def get_open_session(db: Database, room_id: RoomId) -> SessionRecord | None:
    """The room's open session, if it has one (never creates one)."""
    async with db.read() as conn:
        return await _open_session_of(conn, room_id)


async def end_session(
    db: Database,
    session_id: SessionId,
    now: float,
    *,
    reason: LeaveReason = LeaveReason.LEFT,
) -> SessionRecord:
    """End the session at ``now``. Idempotent: an ended session is returned unchanged.

    Participants still present (an open attendance interval) are recorded as leaving at
    ``now`` with ``reason`` first, so the timeline and attendance stay complete; a
    service that recorded every leave itself finds nobody left. Raises
    :class:`SessionNotFound`.
    """
    async with db.write() as conn:
        row = await _lock_session(conn, session_id)
        if row is None:
            raise SessionNotFound(f"no session {session_id}")
        if row.status == SESSION_ENDED:
            return _session(row)
        await _close_session(conn, session_id, now, reason)
        return SessionRecord(
            id=session_id,
            room_id=RoomId(row.room_id),
            status="ended",
            started_at=from_utc(row.started_at),
            ended_at=from_utc(to_utc(now)),
        )


async def end_open_sessions(
    db: Database, now: float, keep: Collection[SessionId] = ()
) -> list[SessionId]:
    """End every open session except ``keep`` (those resumed), as after a crash: call
    once at startup, before serving.

    Each participant still present is recorded as leaving at ``now`` with reason
    ``server_shutdown``. Returns the ids of the sessions it ended.
    """
    async with db.write() as conn:
        ids = (
            await conn.execute(
                select(SessionRow.id)
                .where(SessionRow.status == SESSION_OPEN)
                .order_by(SessionRow.started_at, SessionRow.id)
                .with_for_update()
            )
        ).scalars()
        ended = [SessionId(session_id) for session_id in ids if session_id not in keep]
        for session_id in ended:
            await _close_session(conn, session_id, now, LeaveReason.SERVER_SHUTDOWN)
        return ended


# ------------------------------------------------------------------------- timeline


async def record_events(
    db: Database,
    session_id: SessionId,
    events: Sequence[Event],
    snapshot: Snapshot | None = None,
) -> list[StoredEvent]:
    """Append ``events`` to the session's timeline and update attendance, atomically.

    In one transaction: each event gets the next ``seq``; ParticipantJoined stores the
    participant (first time only) and opens an attendance interval; ParticipantLeft
    closes the open interval; MediaChanged, ParticipantAway and ParticipantBack are
    recorded only (an away period is part of the seat's interval; the timeline has it).
    Durable when it returns, so the caller may then send the events out. Returns what was stored.

    With ``snapshot``, the session's live state after these events is saved in the same
    transaction (see :func:`save_snapshot`), even when there are no events.

    Raises :class:`SessionNotFound`, :class:`SessionNotOpen`, or
    :class:`InconsistentEvents` (a join while already present, a leave while absent,
    a participant id that belongs to another session); nothing is stored then.
    """
    if not events and snapshot is None:
        return []
    async with db.write() as conn:
        row = await _lock_session(conn, session_id)
        if row is None:
            raise SessionNotFound(f"no session {session_id}")
        if row.status != SESSION_OPEN:
            raise SessionNotOpen(f"session {session_id} has ended")
        stored = await _append(conn, session_id, events) if events else []
        if snapshot is not None:
            await _put_snapshot(conn, session_id, snapshot)
        return stored


# ------------------------------------------------------------------------- snapshots


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An open session's live state as JSON (``body``), as of ``saved_at``."""

    body: str
    saved_at: float


@dataclass(frozen=True, slots=True)
class ResumableSession:
    session_id: SessionId
    room_id: RoomId
    snapshot: Snapshot


async def save_snapshot(db: Database, session_id: SessionId, snapshot: Snapshot) -> bool:
    """Save (replace) the open session's snapshot; False if the session is not open."""
    async with db.write() as conn:
        row = await _lock_session(conn, session_id)
        if row is None or row.status != SESSION_OPEN:
            return False
        await _put_snapshot(conn, session_id, snapshot)
        return True


async def touch_snapshots(db: Database, session_ids: Sequence[SessionId], saved_at: float) -> None:
    """Mark these sessions' snapshots as still current at ``saved_at`` (a heartbeat:
    after a crash, the time since the last one is not counted against their timers)."""
    if not session_ids:
        return
    async with db.write() as conn:
        await conn.execute(
            update(SessionSnapshotRow)
            .where(SessionSnapshotRow.session_id.in_(list(session_ids)))
            .values(saved_at=to_utc(saved_at))
        )


async def resumable_sessions(db: Database) -> list[ResumableSession]:
    """Open sessions that have a snapshot, oldest first."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(
                SessionRow.id,
                SessionRow.room_id,
                SessionSnapshotRow.body,
                SessionSnapshotRow.saved_at,
            )
            .join(SessionSnapshotRow, SessionSnapshotRow.session_id == SessionRow.id)
            .where(SessionRow.status == SESSION_OPEN)
            .order_by(SessionRow.started_at, SessionRow.id)
        )
        return [
            ResumableSession(
                SessionId(r.id), RoomId(r.room_id), Snapshot(r.body, from_utc(r.saved_at))
            )
            for r in rows
        ]


async def _put_snapshot(conn: AsyncConnection, session_id: SessionId, snapshot: Snapshot) -> None:
    # The caller holds the session's row lock, so update-then-insert cannot race.
    values = {"body": snapshot.body, "saved_at": to_utc(snapshot.saved_at)}
    result = await conn.execute(
        update(SessionSnapshotRow)
        .where(SessionSnapshotRow.session_id == session_id)
        .values(**values)
    )
    if result.rowcount == 0:
        await conn.execute(insert(SessionSnapshotRow).values(session_id=session_id, **values))


async def load_timeline(db: Database, session_id: SessionId) -> list[StoredEvent]:
    """The session's events in ``seq`` order. Raises :class:`SessionNotFound`."""
    async with db.read() as conn:
        await _require_session(conn, session_id)
        return await read_timeline(conn, session_id)


async def read_timeline(conn: AsyncConnection, session_id: SessionId) -> list[StoredEvent]:
    """The session's timeline, read on ``conn`` (inside the caller's transaction)."""
    rows = await conn.execute(
        select(EventRow.seq, EventRow.kind, EventRow.at, EventRow.payload)
        .where(EventRow.session_id == session_id)
        .order_by(EventRow.seq)
    )
    return [
        StoredEvent(session_id, r.seq, r.kind, from_utc(r.at), decode_payload(r.payload))
        for r in rows
    ]


async def load_attendance(db: Database, session_id: SessionId) -> list[AttendanceRecord]:
    """The session's attendance intervals, in joining order. Raises SessionNotFound."""
    async with db.read() as conn:
        await _require_session(conn, session_id)
        return await read_attendance(conn, session_id)


async def read_attendance(conn: AsyncConnection, session_id: SessionId) -> list[AttendanceRecord]:
    """The session's attendance intervals, in joining order, read on ``conn``."""
    rows = await conn.execute(
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
    return [
        AttendanceRecord(
            participant_id=ParticipantId(r.participant_id),
            display_name=r.display_name,
            joined_at=from_utc(r.joined_at),
            left_at=None if r.left_at is None else from_utc(r.left_at),
            leave_reason=None if r.leave_reason is None else LeaveReason(r.leave_reason),
        )
        for r in rows
    ]


# -------------------------------------------------------------------------- helpers


async def _append(
    conn: AsyncConnection, session_id: SessionId, events: Sequence[Event]
) -> list[StoredEvent]:
    """Insert and project ``events``; the caller holds the session's row lock."""
    last = (
        await conn.execute(
            select(func.coalesce(func.max(EventRow.seq), 0)).where(
                EventRow.session_id == session_id
            )
        )
    ).scalar_one()
    stored: list[StoredEvent] = []
    for offset, event in enumerate(events, start=1):
        payload = encode_payload(event)
        await conn.execute(
            insert(EventRow).values(
                session_id=session_id,
                seq=int(last) + offset,
                kind=event.kind,
                at=to_utc(event.at),
                payload=payload,
            )
        )
        if isinstance(event, ParticipantJoined):
            await _store_participant(conn, session_id, event)
            await _open_attendance(conn, session_id, event.participant_id, event.at)
        elif isinstance(event, ParticipantKnocked):
            await _store_participant(conn, session_id, event)
        elif isinstance(event, ParticipantAdmitted):
            await _open_attendance(conn, session_id, event.participant_id, event.at)
        elif isinstance(event, MovedToLobby):
            await _close_attendance(
                conn, session_id, event.participant_id, event.at, LeaveReason.MOVED_TO_LOBBY
            )
        elif isinstance(event, ParticipantLeft):
            await _project_leave(conn, session_id, event)
        stored.append(
            StoredEvent(
                session_id,
                int(last) + offset,
                event.kind,
                from_utc(to_utc(event.at)),
                decode_payload(payload),
            )
        )
    return stored


async def set_seat_owner(
    db: Database, participant_id: ParticipantId, *, user_id: str | None, pass_id: str | None
) -> None:
    """Record whose seat it is: a clinician's account, or the pass a patient entered with."""
    async with db.write() as conn:
        await conn.execute(
            update(ParticipantRow)
            .where(ParticipantRow.id == participant_id)
            .values(user_id=user_id, pass_id=pass_id)
        )


async def _store_participant(
    conn: AsyncConnection, session_id: SessionId, event: ParticipantJoined | ParticipantKnocked
) -> None:
    """The participant's row, the first time they appear in the session (a seat that
    ended and is taken again is open again)."""
    owner = (
        await conn.execute(
            select(ParticipantRow.session_id).where(ParticipantRow.id == event.participant_id)
        )
    ).scalar_one_or_none()
    if owner == session_id:
        await conn.execute(
            update(ParticipantRow)
            .where(ParticipantRow.id == event.participant_id)
            .values(left_at=None)
        )
    elif owner is None:
        await conn.execute(
            insert(ParticipantRow).values(
                id=event.participant_id,
                session_id=session_id,
                display_name=event.display_name,
                first_joined_at=to_utc(event.at),
            )
        )
    elif owner != session_id:
        raise InconsistentEvents(f"participant {event.participant_id} belongs to another session")


async def _open_attendance(
    conn: AsyncConnection, session_id: SessionId, participant_id: ParticipantId, at: float
) -> None:
    """Start an attendance interval (entering the session, not the lobby)."""
    seat = (
        await conn.execute(
            select(ParticipantRow.session_id, ParticipantRow.left_at).where(
                ParticipantRow.id == participant_id
            )
        )
    ).one_or_none()
    if seat is None or seat.session_id != session_id or seat.left_at is not None:
        raise InconsistentEvents(f"participant {participant_id} is not in this session")
    present = (
        await conn.execute(
            select(AttendanceRow.id).where(
                AttendanceRow.participant_id == participant_id,
                AttendanceRow.left_at.is_(None),
            )
        )
    ).first()
    if present is not None:
        raise InconsistentEvents(f"participant {participant_id} joined twice")
    await conn.execute(
        insert(AttendanceRow).values(
            session_id=session_id, participant_id=participant_id, joined_at=to_utc(at)
        )
    )


async def _project_leave(
    conn: AsyncConnection, session_id: SessionId, event: ParticipantLeft
) -> None:
    """End the seat (once) and its open attendance interval, if it has one: someone
    who only waited in the lobby leaves without attendance."""
    ended = await conn.execute(
        update(ParticipantRow)
        .where(
            ParticipantRow.id == event.participant_id,
            ParticipantRow.session_id == session_id,
            ParticipantRow.left_at.is_(None),
        )
        .values(left_at=to_utc(event.at))
    )
    if ended.rowcount != 1:
        raise InconsistentEvents(f"participant {event.participant_id} left while absent")
    await _close_attendance(conn, session_id, event.participant_id, event.at, event.reason)


async def _close_attendance(
    conn: AsyncConnection,
    session_id: SessionId,
    participant_id: ParticipantId,
    at: float,
    reason: LeaveReason,
) -> None:
    """End the participant's open attendance interval, if any."""
    await conn.execute(
        update(AttendanceRow)
        .where(
            AttendanceRow.session_id == session_id,
            AttendanceRow.participant_id == participant_id,
            AttendanceRow.left_at.is_(None),
        )
        .values(left_at=to_utc(at), leave_reason=reason.value)
    )


async def _close_session(
    conn: AsyncConnection, session_id: SessionId, now: float, reason: LeaveReason
) -> None:
    # Everyone whose seat had not ended: in the session or still in the lobby.
    present = (
        await conn.execute(
            select(ParticipantRow.id)
            .where(ParticipantRow.session_id == session_id, ParticipantRow.left_at.is_(None))
            .order_by(ParticipantRow.first_joined_at, ParticipantRow.id)
        )
    ).scalars()
    leaves = [ParticipantLeft(ParticipantId(pid), reason, now) for pid in present]
    if leaves:
        await _append(conn, session_id, leaves)
    await conn.execute(
        delete(SessionSnapshotRow).where(SessionSnapshotRow.session_id == session_id)
    )
    await conn.execute(
        update(SessionRow)
        .where(SessionRow.id == session_id)
        .values(status=SESSION_ENDED, ended_at=to_utc(now))
    )


async def _lock_session(conn: AsyncConnection, session_id: SessionId) -> Any:
    """The session's row, locked until the transaction ends (None if absent)."""
    return (
        await conn.execute(select(SessionRow).where(SessionRow.id == session_id).with_for_update())
    ).one_or_none()


async def _require_session(conn: AsyncConnection, session_id: SessionId) -> None:
    found = await conn.execute(select(SessionRow.id).where(SessionRow.id == session_id))
    if found.one_or_none() is None:
        raise SessionNotFound(f"no session {session_id}")


async def _open_session_of(conn: AsyncConnection, room_id: RoomId) -> SessionRecord | None:
    row = (
        await conn.execute(
            select(SessionRow).where(
                SessionRow.room_id == room_id, SessionRow.status == SESSION_OPEN
            )
        )
    ).one_or_none()
    return None if row is None else _session(row)


def room_from_row(row: Any) -> RoomRecord:
    return RoomRecord(
        id=RoomId(row.id),
        code=RoomCode(row.code),
        name=row.name,
        participant_limit=row.participant_limit,
        created_at=from_utc(row.created_at),
        recording_consent_required=row.recording_consent_required,
        notes_retention_days=row.notes_retention_days,
        patients_may_unmute=bool(row.patients_may_unmute),
        notes_shared=bool(row.notes_shared),
    )


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        id=SessionId(row.id),
        room_id=RoomId(row.room_id),
        status=cast(SessionStatus, row.status),
        started_at=from_utc(row.started_at),
        ended_at=None if row.ended_at is None else from_utc(row.ended_at),
    )
