"""The room service's test harness: real SQLite, the real SFU, a steerable clock."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from telecircle.domain.events import Event
from telecircle.domain.ids import RoomCode, RoomId, new_room_code
from telecircle.domain.model import RoomState, SeatRole, TimerLimits
from telecircle.media.sfu import MediaSettings, Sfu
from telecircle.services.ports import MediaRouting
from telecircle.services.rooms import Entrant, JoinOutcome, RoomService
from telecircle.storage import stores
from telecircle.storage.database import Database, open_database
from tests import database_template

# Short bounds for pair work and segments, so timers run out within a test.
SHORT_TIMERS = TimerLimits(
    breakout_min=0.5, segment_min=0.5, segment_default=1.0, warning_before=0.2
)


@dataclass
class RecordingObserver:
    """Checks, at the moment of each announcement, that its events are already stored."""

    db: Database
    announced: list[tuple[str, int]] = field(default_factory=list)
    stored_when_announced: list[int] = field(default_factory=list)

    async def room_changed(self, room_code: str, state: RoomState, events: Sequence[Event]) -> None:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(text("SELECT count(*) FROM events"))
            self.stored_when_announced.append(rows.scalar_one())
        self.announced.extend((room_code, 1) for _ in events)

    async def media_lost(self, room_code: str, pid: object) -> None:
        pass


@dataclass
class Harness:
    db: Database
    sfu: Sfu
    observer: RecordingObserver
    rooms: RoomService

    async def room(self, limit: int = 10) -> RoomCode:
        record = await stores.create_room(self.db, "G", limit, new_room_code())
        return RoomCode(record.code)

    async def enter(self, code: RoomCode, name: str, key: str | None = None) -> JoinOutcome:
        """A clinician (straight into the session); ``key`` defaults to the name."""
        entrant = Entrant(key or f"user:{name}", name, SeatRole.CLINICIAN)
        return await self.rooms.enter(code, entrant)


@dataclass
class SteerableClock:
    """A wall clock the test can step (backwards too), as NTP may."""

    offset: float = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> SteerableClock:
    return SteerableClock()


@pytest.fixture
async def harness(tmp_path: Path, clock: SteerableClock) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await database_template.upgrade(url)
    db = await open_database(url)
    sfu = Sfu(MediaSettings())
    sfu.install()
    observer = RecordingObserver(db)

    def media_for(code: RoomCode) -> MediaRouting:
        return sfu.room(code, on_slots=lambda *a: None, on_path_lost=lambda *a: None)

    async def limit_of(room_id: RoomId) -> int:
        room = await stores.get_room(db, room_id)
        assert room is not None
        return room.participant_limit

    rooms = RoomService(
        db, clock, media_for, observer, limit_of, reconnect_grace=0.3, timer_limits=SHORT_TIMERS
    )
    yield Harness(db, sfu, observer, rooms)
    await rooms.close()
    await sfu.close()
    await db.close()
