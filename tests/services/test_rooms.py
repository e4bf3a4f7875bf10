"""RoomService against real SQLite and the real SFU: ordering of effects and failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from sqlalchemy import text

from telecircle.domain.commands import LeaveReason
from telecircle.domain.errors import InvalidCommand
from telecircle.domain.ids import RoomCode
from telecircle.storage import stores
from tests.services.conftest import Harness, SteerableClock

pytestmark = pytest.mark.timeout(60)


async def test_every_change_is_stored_before_it_is_announced(harness: Harness) -> None:
    code = await harness.room()
    first = await harness.enter(code, "A")
    await harness.enter(code, "B")
    await harness.rooms.set_own_media(code, first.participant.id, audio_on=False, video_on=None)
    await harness.rooms.leave(code, first.participant.id, LeaveReason.LEFT)
    # At each announcement the database already held that change (1, 2, 3, 4 events).
    assert harness.observer.stored_when_announced == [1, 2, 3, 4]


async def test_a_change_that_cannot_be_stored_is_not_announced_and_logs_no_name(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    code = await harness.room()
    await harness.enter(code, "A")
    async with harness.db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE participants RENAME COLUMN display_name TO renamed"))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as failure:
        await harness.enter(code, "Ottoline Wimbourne")
    assert "Ottoline" not in str(failure.value), "SQL parameters are hidden"
    assert len(harness.observer.announced) == 1  # only the first join
    live = harness.rooms.live_room(code)
    assert live is not None and len(live.state.participants) == 1
    assert "user:Ottoline Wimbourne" not in live.seat_of, "no seat is kept for them"
    assert "Ottoline" not in caplog.text


async def test_a_refused_first_join_leaves_no_open_session(harness: Harness) -> None:
    code = await harness.room()
    with pytest.raises(InvalidCommand):
        await harness.enter(code, "   ")
    assert harness.rooms.live_room_count() == 0
    room = await stores.get_room_by_code(harness.db, code)
    assert room is not None
    assert await stores.get_open_session(harness.db, room.id) is None
    assert harness.sfu.counts().rooms == 0


async def test_leaving_twice_and_leaving_unknown_rooms_are_harmless(harness: Harness) -> None:
    code = await harness.room()
    outcome = await harness.enter(code, "A")
    await harness.rooms.leave(code, outcome.participant.id, LeaveReason.LEFT)
    await harness.rooms.leave(code, outcome.participant.id, LeaveReason.LEFT)
    await harness.rooms.leave(RoomCode("nowhere"), outcome.participant.id, LeaveReason.LEFT)
    assert harness.rooms.live_room_count() == 0


async def test_away_and_back_are_on_the_timeline(harness: Harness) -> None:
    code = await harness.room()
    outcome = await harness.enter(code, "A")
    pid = outcome.participant.id
    await harness.rooms.disconnect(code, pid)
    # Entering again as the same person (same key) takes the held seat back.
    back = await harness.enter(code, "A")
    assert back.returned and back.participant.id == pid and not back.participant.away
    live = harness.rooms.live_room(code)
    assert live is not None
    timeline = await stores.load_timeline(harness.db, live.state.session_id)
    assert [e.kind for e in timeline] == [
        "participant_joined",
        "participant_away",
        "participant_back",
    ]
    assert [type(e.to_event()).__name__ for e in timeline][1:] == [
        "ParticipantAway",
        "ParticipantBack",
    ]


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_a_wall_clock_step_back_does_not_strand_a_held_seat(
    harness: Harness, clock: SteerableClock
) -> None:
    code = await harness.room()
    await harness.enter(code, "A")
    away = await harness.enter(code, "B")
    await harness.rooms.disconnect(code, away.participant.id)
    clock.offset = -5.0  # the wall clock steps back: the window looks far from over
    await asyncio.sleep(0.6)  # the first expiry check has come and found nothing to do
    live = harness.rooms.live_room(code)
    assert live is not None and live.state.find(away.participant.id) is not None
    clock.offset = 0.0
    await wait_for(lambda: live.state.find(away.participant.id) is None)


async def test_a_reconnect_window_ends_even_if_it_cannot_be_recorded(harness: Harness) -> None:
    code = await harness.room()
    await harness.enter(code, "A")
    away = await harness.enter(code, "B")
    await harness.rooms.disconnect(code, away.participant.id)
    async with harness.db.engine.begin() as conn:
        await conn.execute(text("DROP TABLE events"))
    live = harness.rooms.live_room(code)
    assert live is not None
    await wait_for(lambda: live.state.find(away.participant.id) is None)


async def test_coming_back_cancels_the_window_timer(harness: Harness) -> None:
    code = await harness.room()
    await harness.enter(code, "A")
    back = await harness.enter(code, "B")
    pid = back.participant.id
    await harness.rooms.disconnect(code, pid)
    assert (await harness.enter(code, "B")).returned
    live = harness.rooms.live_room(code)
    assert live is not None and pid not in live.away_timers
    await asyncio.sleep(0.6)  # well past the 0.3 s window
    participant = live.state.find(pid)
    assert participant is not None and not participant.away
