"""The facilitator's controls on the stored timeline: every kind round-trips, and a
patient sent back to the lobby has their attendance interval closed (and a new one when
admitted again)."""

from __future__ import annotations

import pytest

from telecircle.domain.commands import LeaveReason
from telecircle.domain.events import (
    Event,
    HandChanged,
    MediaForced,
    MomentChanged,
    MovedToLobby,
    ParticipantAdmitted,
    ParticipantJoined,
    ParticipantKnocked,
    ParticipantLeft,
    ParticipantRemoved,
    SessionEnded,
    SessionLocked,
)
from telecircle.domain.ids import ParticipantId, RoomId, new_room_code
from telecircle.storage import stores
from telecircle.storage.database import Database

T0 = 1_700_000_000.5
DOC, ANN = ParticipantId("p_doc"), ParticipantId("p_ann")


async def test_controls_round_trip_and_project_attendance(database: Database) -> None:
    room = await stores.create_room(database, "Group", 8, new_room_code(), now=T0)
    session = await stores.open_session(database, RoomId(room.id), T0)
    events: list[Event] = [
        ParticipantJoined(DOC, "Doc", T0 + 1),
        ParticipantKnocked(ANN, "Ann", T0 + 2),
        ParticipantAdmitted(ANN, DOC, T0 + 3),
        MediaForced(ANN, DOC, True, False, T0 + 4),
        HandChanged(ANN, True, T0 + 5),
        MomentChanged(ANN, True, T0 + 6),
        SessionLocked(True, DOC, T0 + 7),
        MovedToLobby(ANN, DOC, T0 + 8),
        SessionLocked(False, DOC, T0 + 9),
        ParticipantAdmitted(ANN, DOC, T0 + 10),
        ParticipantRemoved(ANN, DOC, T0 + 11),
        ParticipantLeft(ANN, LeaveReason.REMOVED, T0 + 11),
        SessionEnded(DOC, T0 + 12),
        ParticipantLeft(DOC, LeaveReason.SESSION_ENDED, T0 + 12),
    ]
    await stores.record_events(database, session.id, events)
    decoded = [e.to_event() for e in await stores.load_timeline(database, session.id)]
    assert [type(d) for d in decoded] == [type(e) for e in events]
    assert decoded[3] == MediaForced(ANN, DOC, True, False, decoded[3].at)
    assert decoded[6] == SessionLocked(True, DOC, decoded[6].at)
    attendance = await stores.load_attendance(database, session.id)
    ann = [(a.joined_at, a.left_at, a.leave_reason) for a in attendance if a.participant_id == ANN]
    assert ann == [
        (pytest.approx(T0 + 3), pytest.approx(T0 + 8), LeaveReason.MOVED_TO_LOBBY),
        (pytest.approx(T0 + 10), pytest.approx(T0 + 11), LeaveReason.REMOVED),
    ]
