"""The stores on SQLite and PostgreSQL: rooms, sessions, timeline and attendance."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from telecircle.domain.commands import LeaveReason
from telecircle.domain.events import (
    Event,
    MediaChanged,
    ParticipantAdmitted,
    ParticipantDenied,
    ParticipantJoined,
    ParticipantKnocked,
    ParticipantLeft,
)
from telecircle.domain.ids import ParticipantId, RoomCode, RoomId, SessionId, new_room_code
from telecircle.storage import stores
from telecircle.storage.database import Database, open_database
from telecircle.storage.errors import (
    DuplicateRoomCode,
    InconsistentEvents,
    RoomNotFound,
    SessionNotFound,
    SessionNotOpen,
)
from telecircle.storage.migrations import upgrade
from telecircle.storage.tables import SessionRow

T0 = 1_700_000_000.25
ANA = ParticipantId("p_ana")
BEN = ParticipantId("p_ben")
CAL = ParticipantId("p_cal")


async def _session(db: Database, now: float = T0) -> stores.SessionRecord:
    room = await stores.create_room(db, "Tuesday group", 8, new_room_code(), now=now)
    return await stores.open_session(db, room.id, now)


async def test_rooms_round_trip(database: Database) -> None:
    code = new_room_code()
    room = await stores.create_room(database, "Tuesday group", 8, code, now=T0)
    assert room.code == code
    assert room.created_at == pytest.approx(T0)
    assert await stores.get_room_by_code(database, code) == room
    assert await stores.get_room(database, room.id) == room
    assert await stores.get_room_by_code(database, RoomCode("nope")) is None
    other = await stores.create_room(database, "Thursday group", 10, new_room_code(), now=T0 + 1)
    assert await stores.list_rooms(database) == [room, other]


async def test_room_codes_are_unique(database: Database) -> None:
    code = new_room_code()
    await stores.create_room(database, "A", 8, code)
    with pytest.raises(DuplicateRoomCode):
        await stores.create_room(database, "B", 8, code)
    assert len(await stores.list_rooms(database)) == 1


async def test_open_session_reuses_the_open_one_until_it_ends(database: Database) -> None:
    session = await _session(database)
    assert session.status == "open"
    assert session.started_at == pytest.approx(T0)
    assert await stores.open_session(database, session.room_id, T0 + 5) == session
    ended = await stores.end_session(database, session.id, T0 + 60)
    assert ended.status == "ended"
    assert ended.ended_at == pytest.approx(T0 + 60)
    assert await stores.get_session(database, session.id) == ended
    assert await stores.get_open_session(database, session.room_id) is None
    fresh = await stores.open_session(database, session.room_id, T0 + 100)
    assert fresh.id != session.id


async def test_open_session_for_unknown_room(database: Database) -> None:
    with pytest.raises(RoomNotFound):
        await stores.open_session(database, RoomId("r_missing"), T0)


async def test_twenty_concurrent_open_session_calls_yield_one_session(
    database: Database,
) -> None:
    room = await stores.create_room(database, "Group", 8, new_room_code())
    results = await asyncio.gather(
        *(stores.open_session(database, room.id, T0 + i) for i in range(20))
    )
    assert len({session.id for session in results}) == 1
    async with database.read() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(SessionRow).where(SessionRow.room_id == room.id)
        )
    assert count == 1


async def test_record_events_appends_and_projects(database: Database) -> None:
    session = await _session(database)
    events: list[Event] = [
        ParticipantJoined(ANA, "Ana", T0 + 1),
        ParticipantJoined(BEN, "Ben", T0 + 2),
        MediaChanged(ANA, audio_on=False, video_on=True, at=T0 + 3),
        ParticipantLeft(BEN, LeaveReason.CONNECTION_LOST, T0 + 4),
    ]
    stored = await stores.record_events(database, session.id, events)
    assert [e.seq for e in stored] == [1, 2, 3, 4]
    timeline = await stores.load_timeline(database, session.id)
    assert timeline == stored
    assert [e.kind for e in timeline] == [
        "participant_joined",
        "participant_joined",
        "media_changed",
        "participant_left",
    ]
    assert timeline[2].payload == {"participant_id": ANA, "audio_on": False, "video_on": True}
    assert timeline[3].payload == {"participant_id": BEN, "reason": "connection_lost"}
    for original, entry in zip(events, timeline, strict=True):
        decoded = entry.to_event()
        assert type(decoded) is type(original)
        assert decoded.at == pytest.approx(original.at)

    # Ben comes back: a second interval, same participant row.
    await stores.record_events(database, session.id, [ParticipantJoined(BEN, "Ben", T0 + 10)])
    attendance = await stores.load_attendance(database, session.id)
    assert [(a.participant_id, a.display_name, a.leave_reason) for a in attendance] == [
        (ANA, "Ana", None),
        (BEN, "Ben", LeaveReason.CONNECTION_LOST),
        (BEN, "Ben", None),
    ]
    assert attendance[1].joined_at == pytest.approx(T0 + 2)
    assert attendance[1].left_at == pytest.approx(T0 + 4)
    assert attendance[0].left_at is None


async def test_the_lobby_is_on_the_timeline_and_attendance_starts_at_admit(
    database: Database,
) -> None:
    session = await _session(database)
    events: list[Event] = [
        ParticipantJoined(ANA, "Ana", T0 + 1),
        ParticipantKnocked(BEN, "Ben", T0 + 2),
        ParticipantKnocked(CAL, "Cal", T0 + 3),
        ParticipantAdmitted(BEN, ANA, T0 + 10),
        ParticipantDenied(CAL, ANA, T0 + 11),
        ParticipantLeft(CAL, LeaveReason.DENIED, T0 + 11),
        ParticipantLeft(BEN, LeaveReason.REVOKED, T0 + 20),
    ]
    await stores.record_events(database, session.id, events)
    timeline = await stores.load_timeline(database, session.id)
    decoded = [e.to_event() for e in timeline]
    assert [type(d) for d in decoded] == [type(e) for e in events]
    assert all(d.at == pytest.approx(e.at) for d, e in zip(decoded, events, strict=True))
    assert decoded[1] == ParticipantKnocked(BEN, "Ben", decoded[1].at)
    assert decoded[4] == ParticipantDenied(CAL, ANA, decoded[4].at)
    assert timeline[3].payload == {"participant_id": BEN, "by": ANA}
    assert timeline[4].payload == {"participant_id": CAL, "by": ANA}
    attendance = await stores.load_attendance(database, session.id)
    assert [(a.participant_id, a.display_name, a.leave_reason) for a in attendance] == [
        (ANA, "Ana", None),
        (BEN, "Ben", LeaveReason.REVOKED),
    ], "waiting is not attending; the denied patient never attended"
    assert attendance[1].joined_at == pytest.approx(T0 + 10)
    assert attendance[1].left_at == pytest.approx(T0 + 20)


async def test_lobby_events_must_fit_the_session(database: Database) -> None:
    session = await _session(database)
    await stores.record_events(database, session.id, [ParticipantKnocked(BEN, "Ben", T0)])
    for impossible in (
        [ParticipantAdmitted(CAL, ANA, T0 + 1)],  # never knocked
        [ParticipantAdmitted(BEN, ANA, T0 + 1), ParticipantAdmitted(BEN, ANA, T0 + 2)],
    ):
        with pytest.raises(InconsistentEvents):
            await stores.record_events(database, session.id, impossible)
    assert len(await stores.load_timeline(database, session.id)) == 1
    assert await stores.load_attendance(database, session.id) == []
    other = await _session(database)
    with pytest.raises(InconsistentEvents):  # a participant id belongs to one session
        await stores.record_events(database, other.id, [ParticipantKnocked(BEN, "Ben", T0)])


async def test_a_leave_while_absent_is_inconsistent(database: Database) -> None:
    """record_events' contract: "a leave while absent" raises InconsistentEvents. Someone
    who has already left is absent, whether or not they ever waited in the lobby."""
    session = await _session(database)
    await stores.record_events(
        database,
        session.id,
        [ParticipantJoined(ANA, "Ana", T0), ParticipantLeft(ANA, LeaveReason.LEFT, T0 + 1)],
    )
    with pytest.raises(InconsistentEvents):
        await stores.record_events(
            database, session.id, [ParticipantLeft(ANA, LeaveReason.LEFT, T0 + 2)]
        )


async def test_seq_continues_per_session(database: Database) -> None:
    first = await _session(database)
    second = await _session(database)
    for i in range(3):
        await stores.record_events(
            database, first.id, [MediaChanged(ANA, bool(i % 2), True, T0 + i)]
        )
    await stores.record_events(database, second.id, [ParticipantJoined(BEN, "Ben", T0)])
    assert [e.seq for e in await stores.load_timeline(database, first.id)] == [1, 2, 3]
    assert [e.seq for e in await stores.load_timeline(database, second.id)] == [1]


async def test_concurrent_recording_keeps_seq_gap_free(database: Database) -> None:
    session = await _session(database)
    await asyncio.gather(
        *(
            stores.record_events(
                database,
                session.id,
                [MediaChanged(ANA, True, False, T0 + i), MediaChanged(ANA, True, True, T0 + i)],
            )
            for i in range(10)
        )
    )
    timeline = await stores.load_timeline(database, session.id)
    assert [e.seq for e in timeline] == list(range(1, 21))


async def test_record_events_is_all_or_nothing(database: Database) -> None:
    session = await _session(database)
    await stores.record_events(database, session.id, [ParticipantJoined(ANA, "Ana", T0)])
    with pytest.raises(InconsistentEvents):
        await stores.record_events(
            database,
            session.id,
            [
                ParticipantJoined(BEN, "Ben", T0 + 1),
                ParticipantLeft(ParticipantId("p_ghost"), LeaveReason.LEFT, T0 + 2),
            ],
        )
    assert len(await stores.load_timeline(database, session.id)) == 1
    assert [a.participant_id for a in await stores.load_attendance(database, session.id)] == [ANA]
    with pytest.raises(InconsistentEvents):
        await stores.record_events(database, session.id, [ParticipantJoined(ANA, "Ana", T0)])


async def test_a_participant_id_belongs_to_one_session(database: Database) -> None:
    first = await _session(database)
    second = await _session(database)
    await stores.record_events(database, first.id, [ParticipantJoined(ANA, "Ana", T0)])
    with pytest.raises(InconsistentEvents):
        await stores.record_events(database, second.id, [ParticipantJoined(ANA, "Ana", T0)])


async def test_recording_needs_an_open_session(database: Database) -> None:
    session = await _session(database)
    await stores.end_session(database, session.id, T0 + 1)
    with pytest.raises(SessionNotOpen):
        await stores.record_events(database, session.id, [ParticipantJoined(ANA, "A", T0)])
    with pytest.raises(SessionNotFound):
        await stores.record_events(
            database, SessionId("s_missing"), [MediaChanged(ANA, True, True, T0)]
        )
    with pytest.raises(SessionNotFound):
        await stores.load_timeline(database, SessionId("s_missing"))


async def test_end_session_closes_intervals_and_is_idempotent(database: Database) -> None:
    session = await _session(database)
    await stores.record_events(
        database,
        session.id,
        [ParticipantJoined(ANA, "Ana", T0 + 1), ParticipantJoined(BEN, "Ben", T0 + 2)],
    )
    ended = await stores.end_session(database, session.id, T0 + 90)
    assert await stores.end_session(database, session.id, T0 + 500) == ended
    attendance = await stores.load_attendance(database, session.id)
    assert all(a.left_at == pytest.approx(T0 + 90) for a in attendance)
    assert {a.leave_reason for a in attendance} == {LeaveReason.LEFT}
    kinds = [e.kind for e in await stores.load_timeline(database, session.id)]
    assert kinds[-2:] == ["participant_left", "participant_left"]


async def test_end_open_sessions_after_a_crash(database: Database) -> None:
    crashed = await _session(database)
    quiet = await _session(database)
    finished = await _session(database)
    await stores.end_session(database, finished.id, T0 + 30)
    await stores.record_events(
        database,
        crashed.id,
        [
            ParticipantJoined(ANA, "Ana", T0 + 1),
            ParticipantJoined(BEN, "Ben", T0 + 2),
            ParticipantLeft(BEN, LeaveReason.LEFT, T0 + 3),
        ],
    )
    restart = T0 + 3600
    assert sorted(await stores.end_open_sessions(database, restart)) == sorted(
        [crashed.id, quiet.id]
    )
    assert await stores.end_open_sessions(database, restart + 1) == []

    for session in (crashed, quiet):
        record = await stores.get_session(database, session.id)
        assert record is not None
        assert record.status == "ended"
        assert record.ended_at == pytest.approx(restart)
    finished_now = await stores.get_session(database, finished.id)
    assert finished_now is not None
    assert finished_now.ended_at == pytest.approx(T0 + 30)

    attendance = await stores.load_attendance(database, crashed.id)
    assert [(a.participant_id, a.leave_reason) for a in attendance] == [
        (ANA, LeaveReason.SERVER_SHUTDOWN),
        (BEN, LeaveReason.LEFT),
    ]
    assert attendance[0].left_at == pytest.approx(restart)
    last = (await stores.load_timeline(database, crashed.id))[-1]
    assert last.seq == 4
    assert last.to_event() == ParticipantLeft(ANA, LeaveReason.SERVER_SHUTDOWN, last.at)


async def test_recorded_events_are_visible_to_a_new_engine(db_url: str) -> None:
    """What record_events returned is committed: another engine sees it at once."""
    await upgrade(db_url)
    writer = await open_database(db_url)
    reader = await open_database(db_url)
    try:
        session = await _session(writer)
        await stores.record_events(writer, session.id, [ParticipantJoined(ANA, "Ana", T0)])
        assert len(await stores.load_timeline(reader, session.id)) == 1
    finally:
        await writer.close()
        await reader.close()
