"""The room service's side of pair work, segments and restarts, against real SQLite and
the real SFU: the server's timer, early routing of a clinician's drop, what is saved for
a restart, and who may come back without checking in again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from telecircle.domain.commands import LeaveReason, Remove, StartPairs
from telecircle.domain.errors import NotAllowed
from telecircle.domain.ids import ParticipantId, RoomCode, RoomId
from telecircle.domain.model import SeatRole, TimerLimits, TrackKind, TrackRef
from telecircle.media.room import MediaRoom
from telecircle.media.sfu import MediaSettings, Sfu
from telecircle.services.ports import MediaRouting
from telecircle.services.rooms import Entrant, RoomService
from telecircle.storage import stores
from telecircle.storage.database import open_database
from telecircle.storage.snapshot_codec import decode_snapshot
from tests import database_template
from tests.services.conftest import SHORT_TIMERS, Harness, RecordingObserver, SteerableClock

pytestmark = pytest.mark.timeout(60)


async def group(harness: Harness) -> tuple[RoomCode, ParticipantId, list[ParticipantId]]:
    """A therapist and three patients in the session (admitted)."""
    code = await harness.room()
    therapist = (await harness.enter(code, "C")).participant.id
    patients = []
    for name in ("a", "b", "d"):
        entrant = Entrant(f"invite:{name}", name, SeatRole.PATIENT, f"pass-{name}")
        patients.append((await harness.rooms.enter(code, entrant)).participant.id)
    await harness.rooms.admit_all(code, therapist)
    return code, therapist, patients


def routing(harness: Harness, code: RoomCode) -> MediaRoom:
    live = harness.rooms.live_room(code)
    assert live is not None and isinstance(live.media, MediaRoom)
    return live.media


async def saved_denied(harness: Harness) -> frozenset[str]:
    (found,) = await stores.resumable_sessions(harness.db)
    return decode_snapshot(found.snapshot.body, TimerLimits()).denied


async def test_a_denial_and_a_removal_are_in_the_saved_state_at_once(harness: Harness) -> None:
    code, therapist, patients = await group(harness)
    await harness.rooms.control(code, therapist, Remove(patients[0], therapist))
    # Saved with the change itself: a crash now still keeps them out after a restart.
    assert "invite:a" in await saved_denied(harness)
    waiting = Entrant("invite:e", "e", SeatRole.PATIENT, "pass-e")
    newcomer = (await harness.rooms.enter(code, waiting)).participant.id
    await harness.rooms.deny(code, therapist, newcomer)
    assert "invite:e" in await saved_denied(harness)


async def test_the_timer_applies_what_was_due_even_if_the_clock_steps_back(
    harness: Harness, clock: SteerableClock
) -> None:
    code, therapist, patients = await group(harness)
    live = harness.rooms.live_room(code)
    assert live is not None
    pairs = StartPairs(therapist, 1.0, ((patients[0], patients[1]),))
    await harness.rooms.control(code, therapist, pairs)
    assert live.state.breakout is not None
    ends_at = live.state.breakout.ends_at
    # Step the clock back just as the deadline passes (NTP): the end is still applied.
    while clock.now() < ends_at:
        await asyncio.sleep(0.02)
    clock.offset = -5.0
    for _ in range(200):
        if live.state.breakout is None:
            break
        await asyncio.sleep(0.02)
    assert live.state.breakout is None, "pair work ended at its deadline"


async def test_the_last_clinician_dropping_holds_the_patients_before_the_write(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, therapist, patients = await group(harness)
    media = routing(harness, code)
    ann_audio = TrackRef(patients[0], TrackKind.AUDIO)
    assert patients[1] in media.audience(ann_audio)
    written = asyncio.Event()
    record = stores.record_events

    async def slow_write(*args: Any, **kwargs: Any) -> Any:
        await written.wait()
        return await record(*args, **kwargs)

    monkeypatch.setattr(stores, "record_events", slow_write)
    drop = asyncio.create_task(harness.rooms.disconnect(code, therapist))
    for _ in range(100):
        if patients[1] not in media.audience(ann_audio):
            break
        await asyncio.sleep(0.01)
    held_before_write = patients[1] not in media.audience(ann_audio)
    written.set()
    await drop
    assert held_before_write, "patients stopped hearing each other before the write"


async def test_a_resumed_session_saves_its_moved_on_timers(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.sqlite'}"
    await database_template.upgrade(url)
    db = await open_database(url)
    sfu = Sfu(MediaSettings())
    sfu.install()

    def media_for(code: RoomCode) -> MediaRouting:
        return sfu.room(code, on_slots=lambda *a: None, on_path_lost=lambda *a: None)

    async def limit_of(room_id: RoomId) -> int:
        return 10

    def service() -> RoomService:
        return RoomService(
            db,
            SteerableClock(),
            media_for,
            RecordingObserver(db),
            limit_of,
            reconnect_grace=30,
            timer_limits=SHORT_TIMERS,
        )

    first = service()
    await first.recover_after_crash()
    code, therapist, patients = await group(Harness(db, sfu, RecordingObserver(db), first))
    await first.control(
        code, therapist, StartPairs(therapist, 600.0, ((patients[0], patients[1]),))
    )
    await first.close()  # a graceful stop: everyone away, the state saved
    await asyncio.sleep(1.0)  # the server is down
    second = service()
    try:
        await second.recover_after_crash()
        live = second.live_room(code)
        assert live is not None and live.state.breakout is not None
        (found,) = await stores.resumable_sessions(db)
        saved = decode_snapshot(found.snapshot.body, TimerLimits()).state.breakout
        assert saved is not None
        # Saved as resumed (the downtime added), so a crash of this process loses nothing.
        assert saved.ends_at == pytest.approx(live.state.breakout.ends_at, abs=0.01)
    finally:
        await second.close()
        await sfu.close()
        await db.close()


async def test_only_a_seat_past_the_lobby_lets_a_patient_back_without_checking_in(
    harness: Harness,
) -> None:
    code = await harness.room()
    therapist = (await harness.enter(code, "C")).participant.id
    admitted = Entrant("invite:a", "a", SeatRole.PATIENT, "pass-a")
    waiting = Entrant("invite:b", "b", SeatRole.PATIENT, "pass-b")
    ann = (await harness.rooms.enter(code, admitted)).participant.id
    await harness.rooms.enter(code, waiting)
    await harness.rooms.admit(code, therapist, ann)
    assert harness.rooms.holds_seat(code, "invite:a", "pass-a")
    assert not harness.rooms.holds_seat(code, "invite:a", "pass-other")  # another device
    assert not harness.rooms.holds_seat(code, "invite:b", "pass-b")  # still in the lobby
    # Let in only to take back a held seat: refused once that seat has ended.
    await harness.rooms.leave(code, ann, LeaveReason.LEFT)
    returning = Entrant("invite:a", "a", SeatRole.PATIENT, "pass-a", returning_only=True)
    with pytest.raises(NotAllowed):
        await harness.rooms.enter(code, returning)
