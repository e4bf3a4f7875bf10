"""Live rooms: one lock per room applies commands one at a time.

Order of effects for every command: decide (pure) -> persist events (durable) -> update
media routing -> tell the observer (fan-out to clients). A failure to persist leaves the
in-memory state unchanged, so nothing is announced that was not recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from telecircle.domain.audience import all_audiences
from telecircle.domain.commands import Command, Join, Leave, LeaveReason, SetOwnMedia
from telecircle.domain.errors import DomainError, NotInRoom
from telecircle.domain.events import Event
from telecircle.domain.ids import ParticipantId, RoomCode, RoomId, SessionId, new_participant_id
from telecircle.domain.model import Participant, RoomState
from telecircle.domain.rules import decide
from telecircle.services.clock import Clock
from telecircle.services.ports import MediaRouting, ReceiveSlot, RoomObserver
from telecircle.services.tasks import TaskOwner
from telecircle.storage import stores
from telecircle.storage.database import Database

log = logging.getLogger(__name__)


class NoSuchRoom(DomainError):
    code = "no_such_room"


class ServiceClosed(DomainError):
    code = "server_shutting_down"


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    room: stores.RoomRecord
    participant: Participant
    state: RoomState


MediaFactory = Callable[[RoomCode], MediaRouting]


class LiveRoom:
    """One room in use: its session, its state and its media routing."""

    def __init__(
        self, room: stores.RoomRecord, session_id: SessionId, limit: int, media: MediaRouting
    ) -> None:
        self.room = room
        self.state = RoomState(
            room_id=RoomId(room.id), session_id=session_id, participant_limit=limit
        )
        self.media = media
        self.lock = asyncio.Lock()
        self.closed = False


class RoomService:
    """Owns every live room of this process."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        media_factory: MediaFactory,
        observer: RoomObserver,
        limit_ceiling: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._media_factory = media_factory
        self._observer = observer
        self._limit_ceiling = limit_ceiling
        self._rooms: dict[RoomCode, LiveRoom] = {}
        self._registry_lock = asyncio.Lock()
        self._tasks = TaskOwner("rooms")
        self._closing = False

    def live_room(self, code: RoomCode) -> LiveRoom | None:
        return self._rooms.get(code)

    def live_room_count(self) -> int:
        return len(self._rooms)

    async def join(self, code: RoomCode, display_name: str) -> JoinOutcome:
        """Seat a new participant. Raises NoSuchRoom, RoomFull or InvalidCommand."""
        pid = new_participant_id()
        while True:
            live = await self._live_room_for(code)
            async with live.lock:
                if live.closed:
                    continue  # emptied and closed while we waited: open a fresh session
                await self._apply(live, Join(pid, display_name))
                participant = live.state.find(pid)
                if participant is None:  # pragma: no cover - Join always seats or raises
                    raise NotInRoom("Joining failed.")
                return JoinOutcome(live.room, participant, live.state)

    async def leave(self, code: RoomCode, pid: ParticipantId, reason: LeaveReason) -> None:
        """Remove a participant; releases their media. Idempotent for unknown participants."""
        live = self._rooms.get(code)
        if live is None:
            return
        async with live.lock:
            if live.closed or live.state.find(pid) is None:
                return
            await self._apply(live, Leave(pid, reason))
            await live.media.remove(pid)
            if not live.state.participants:
                await self._close_room(live)

    async def set_own_media(
        self, code: RoomCode, pid: ParticipantId, audio_on: bool | None, video_on: bool | None
    ) -> None:
        live = self._rooms.get(code)
        if live is None:
            raise NotInRoom("You are not in this room.")
        async with live.lock:
            await self._apply(live, SetOwnMedia(pid, audio_on, video_on))

    async def publish(self, code: RoomCode, pid: ParticipantId, offer_sdp: str) -> str:
        """Open (or replace) the participant's publish connection; returns the answer SDP."""
        return await self._seated(code, pid).media.publish(pid, offer_sdp)

    async def subscribe(self, code: RoomCode, pid: ParticipantId) -> tuple[str, list[ReceiveSlot]]:
        """Offer the participant's subscribe connection, one slot per other possible seat."""
        live = self._seated(code, pid)
        return await live.media.subscribe(pid, live.state.participant_limit - 1)

    async def accept_subscribe_answer(self, code: RoomCode, pid: ParticipantId, sdp: str) -> None:
        await self._seated(code, pid).media.accept_subscribe_answer(pid, sdp)

    def _seated(self, code: RoomCode, pid: ParticipantId) -> LiveRoom:
        live = self._rooms.get(code)
        if live is None or live.closed or live.state.find(pid) is None:
            raise NotInRoom("You are not in this room.")
        return live

    async def recover_after_crash(self) -> None:
        """Close sessions and attendance left open by a previous process that died."""
        await stores.end_open_sessions(self._db, self._clock.now())

    def media_path_lost(self, code: RoomCode, pid: ParticipantId) -> None:
        """Called by the SFU when a participant's media path died: their seat ends."""
        log.info("media path lost", extra={"room": code, "participant": pid})
        self._tasks.spawn(self.leave(code, pid, LeaveReason.CONNECTION_LOST), "path-lost")

    async def close(self) -> None:
        """Graceful shutdown: everyone leaves (persisted), media closes. Idempotent."""
        self._closing = True
        await self._tasks.close()
        for code in list(self._rooms):
            live = self._rooms[code]
            async with live.lock:
                if live.closed:
                    continue
                for participant in live.state.participants:
                    await self._apply(live, Leave(participant.id, LeaveReason.SERVER_SHUTDOWN))
                await self._close_room(live)

    async def _live_room_for(self, code: RoomCode) -> LiveRoom:
        async with self._registry_lock:
            if self._closing:
                raise ServiceClosed("The server is shutting down. Please try again shortly.")
            live = self._rooms.get(code)
            if live is not None and not live.closed:
                return live
            room = await stores.get_room_by_code(self._db, code)
            if room is None:
                raise NoSuchRoom("There is no room with this link. Please check the link.")
            session = await stores.open_session(self._db, room.id, self._clock.now())
            limit = min(room.participant_limit, self._limit_ceiling)
            live = LiveRoom(room, SessionId(session.id), limit, self._media_factory(code))
            self._rooms[code] = live
            log.info("room opened", extra={"room": code, "session": session.id})
            return live

    async def _apply(self, live: LiveRoom, command: Command) -> Sequence[Event]:
        """Decide, persist, route, announce. Caller holds ``live.lock``."""

        new_state, events = decide(live.state, command, self._clock.now())
        if not events:
            return events
        await stores.record_events(self._db, live.state.session_id, events)
        live.state = new_state
        live.media.set_audiences(all_audiences(new_state))
        await self._observer.room_changed(live.room.code, new_state, events)
        return events

    async def _close_room(self, live: LiveRoom) -> None:
        live.closed = True
        await live.media.close()
        await stores.end_session(self._db, live.state.session_id, self._clock.now())
        if self._rooms.get(RoomCode(live.room.code)) is live:
            del self._rooms[RoomCode(live.room.code)]
        log.info("room closed", extra={"room": live.room.code})
