"""Pair work and segments on the stored timeline: every kind round-trips exactly, and
the text of a message to the pairs is never written to the database."""

from __future__ import annotations

from pathlib import Path

from telecircle.domain.events import (
    Event,
    PairsEnded,
    PairsMessaged,
    PairsStarted,
    PairVisited,
    SegmentEnded,
    SegmentQueued,
    SegmentStarted,
    TimerExtended,
    TimerWarned,
)
from telecircle.domain.ids import ParticipantId, RoomId, new_room_code
from telecircle.domain.model import OthersDuringSegment
from telecircle.storage import stores
from telecircle.storage.database import Database

T0 = 1_700_000_000.25
DOC, ANN, BO, CY = (ParticipantId(f"p_{n}") for n in ("doc", "ann", "bo", "cy"))
SECRET_TEXT = "Remember-what-Ann-said-about-her-sister"


async def test_activity_events_round_trip(database: Database) -> None:
    room = await stores.create_room(database, "Group", 8, new_room_code(), now=T0)
    session = await stores.open_session(database, RoomId(room.id), T0)
    events: list[Event] = [
        PairsStarted(DOC, ((ANN, BO, CY),), T0 + 600.5, T0 + 1),
        PairVisited(DOC, 0, T0 + 2),
        PairVisited(DOC, None, T0 + 3),
        PairsMessaged(DOC, SECRET_TEXT, T0 + 4),
        TimerExtended("pairs", DOC, T0 + 900.5, T0 + 5),
        TimerWarned("pairs", T0 + 900.5, T0 + 840),
        PairsEnded(None, T0 + 901),
        PairsEnded(DOC, T0 + 902),
        SegmentStarted(DOC, ANN, T0 + 1800.0, OthersDuringSegment.PLENARY, T0 + 903),
        SegmentQueued(DOC, BO, T0 + 904),
        SegmentEnded(ANN, None, T0 + 1800),
        SegmentEnded(BO, DOC, T0 + 1801),
    ]
    await stores.record_events(database, session.id, events)
    decoded = [e.to_event() for e in await stores.load_timeline(database, session.id)]
    assert len(decoded) == len(events)
    for stored, original in zip(decoded, events, strict=True):
        expected = PairsMessaged(DOC, "", original.at) if original is events[3] else original
        assert type(stored) is type(expected)
        assert abs(stored.at - expected.at) < 1e-3
        assert {k: v for k, v in vars_of(stored).items() if k not in ("at", "ends_at")} == {
            k: v for k, v in vars_of(expected).items() if k not in ("at", "ends_at")
        }


def vars_of(event: Event) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


async def test_a_message_to_the_pairs_is_not_stored(database: Database, tmp_path: Path) -> None:
    room = await stores.create_room(database, "Group", 8, new_room_code(), now=T0)
    session = await stores.open_session(database, RoomId(room.id), T0)
    await stores.record_events(database, session.id, [PairsMessaged(DOC, SECRET_TEXT, T0)])
    timeline = await stores.load_timeline(database, session.id)
    assert SECRET_TEXT not in repr(timeline)
    if database.dialect == "sqlite":
        # The database file and its -wal/-shm files, as they are on disk.
        files = [f for f in tmp_path.rglob("*") if f.is_file()]
        assert files
        for file in files:
            assert SECRET_TEXT.encode() not in file.read_bytes()
