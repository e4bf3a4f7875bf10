"""The live rooms of this process and how a change reaches them.

Order of effects for every command: decide (pure) -> persist events and the room's
snapshot (durable) -> update media routing -> tell the observer (fan-out to clients).
A failure to persist leaves the in-memory state unchanged, so nothing is announced that
was not recorded — except a leave: a person who is gone is gone, so a leave that cannot
be recorded is still applied (and the failure logged with ids only). A change that only
takes listeners away is routed before it is written (see RoomEngine._apply).

Also here: the per-room timer of pair work and segments, and what keeps sessions across
a restart (see services/resume.py). The public operations are in services/rooms.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from telecircle.domain.activities import next_deadline
from telecircle.domain.audience import all_audiences, only_restricts
from telecircle.domain.commands import (
    Command,
    Disconnect,
    ExpireAway,
    Leave,
    LeaveReason,
    TimersDue,
)
from telecircle.domain.events import (
    Event,
    ParticipantLeft,
)
from telecircle.domain.ids import ParticipantId, RoomCode, RoomId, SessionId
from telecircle.domain.model import RoomState, TimerLimits
from telecircle.domain.rules import decide
from telecircle.services.clock import Clock
from telecircle.services.live_room import (
    MIN_EXPIRY_RETRY,
    LimitOf,
    LiveRoom,
    MediaFactory,
    NoSuchRoom,
    ServiceClosed,
)
from telecircle.services.ports import RoomObserver
from telecircle.services.resume import ResumePolicy, restored_state, take_snapshot
from telecircle.services.tasks import TaskOwner
from telecircle.storage import stores
from telecircle.storage.database import Database
from telecircle.storage.snapshot_codec import SnapshotError

log = logging.getLogger(__name__)


class RoomEngine:
    """Owns every live room of this process: the registry, applying a change to a room
    (its lock held by the caller), timers, and stopping and resuming."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        media_factory: MediaFactory,
        observer: RoomObserver,
        limit_of: LimitOf,
        reconnect_grace: float,
        lobby_limit: int = 20,
        timer_limits: TimerLimits | None = None,
        resume: ResumePolicy | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._media_factory = media_factory
        self._observer = observer
        self._limit_of = limit_of
        self._reconnect_grace = reconnect_grace
        self._lobby_limit = lobby_limit
        self._timer_limits = timer_limits or TimerLimits()
        self._resume = resume or ResumePolicy()
        self._rooms: dict[RoomCode, LiveRoom] = {}
        self._registry_lock = asyncio.Lock()
        self._tasks = TaskOwner("rooms")
        self._closing = False

    def live_room(self, code: RoomCode) -> LiveRoom | None:
        """The room's live state, or None when nobody is in it."""
        return self._rooms.get(code)

    def live_room_count(self) -> int:
        return len(self._rooms)

    async def _expire_later(self, code: RoomCode, pid: ParticipantId) -> None:
        """Free the seat once the reconnect window has passed, unless they came back.

        The window is measured by the service clock (as the rules see it); if that clock
        lags the event loop's (a wall-clock step back), wait for the rest and try again.
        """
        grace = self._reconnect_grace
        delay = grace
        while True:
            await asyncio.sleep(delay)
            applied = await self._apply_if_seated(code, pid, ExpireAway(pid, grace))
            if applied is None:
                return
            live, events = applied
            if any(isinstance(e, ParticipantLeft) for e in events):
                await self._after_leave(live, pid)
                return
            participant = live.state.find(pid)
            if participant is None or participant.away_since is None:
                return
            delay = max(MIN_EXPIRY_RETRY, grace - (self._clock.now() - participant.away_since))

    async def _apply_if_seated(
        self, code: RoomCode, pid: ParticipantId, command: Command, epoch: int | None = None
    ) -> tuple[LiveRoom, Sequence[Event]] | None:
        """Apply ``command`` if ``pid`` is seated in the live room (and, with ``epoch``,
        still held by that connection); None otherwise."""
        live = self._rooms.get(code)
        if live is None:
            return None
        async with live.lock:
            if not live.seated(pid):
                return None
            if epoch is not None and live.epochs.get(pid) != epoch:
                return None
            if isinstance(command, Leave | Disconnect | ExpireAway):
                return live, await self._apply_even_unrecorded(live, command)
            return live, await self._apply(live, command)

    async def _after_leave(self, live: LiveRoom, pid: ParticipantId) -> None:
        live.forget_seat(pid)
        live.cancel_away_timer(pid)
        await self._release_media(live, pid)
        async with live.lock:
            if not live.closed and not live.state.participants:
                await self._close_room(live)

    async def _release_media(self, live: LiveRoom, pid: ParticipantId) -> None:
        # Waits for an in-flight negotiation of this participant to finish first.
        async with live.media_lock(pid):
            if not live.closed:
                await live.media.remove(pid)
        live.media_locks.pop(pid, None)

    async def recover_after_crash(self) -> None:
        """At start-up: resume the open sessions a previous process left with a recent
        snapshot (see ``services.resume``); end every other open session and its
        attendance. Then keep the live sessions' snapshots current."""
        resumed: list[SessionId] = []
        if self._resume.enabled:
            for found in await stores.resumable_sessions(self._db):
                if await self._resume_session(found):
                    resumed.append(found.session_id)
        await stores.end_open_sessions(self._db, self._clock.now(), keep=resumed)
        if self._resume.enabled:
            self._tasks.spawn(self._heartbeat(), "snapshot-heartbeat")

    async def _resume_session(self, found: stores.ResumableSession) -> bool:
        now = self._clock.now()
        if now - found.snapshot.saved_at > self._resume.window:
            return False
        room = await stores.get_room(self._db, found.room_id)
        if room is None:
            return False
        try:
            restored, away = restored_state(found.snapshot, self._timer_limits, now)
        except SnapshotError:
            log.exception("session not resumed", extra={"session": found.session_id})
            return False
        if not restored.state.participants:
            return False  # stopped as its last seat ended: nothing to resume
        code = RoomCode(room.code)
        live = LiveRoom(room=room, state=restored.state, media=self._media_factory(code))
        for pid, owner in restored.owners.items():
            live.seat_of[owner.key] = pid
            live.key_of[pid] = owner.key
            live.credential_of[pid] = owner.credential
            live.epochs[pid] = 0
        live.denied.update(restored.denied)
        try:
            # Saved as it resumes (timers moved on by the downtime), even with no event
            # to record: a crash of this process counts from here.
            await stores.record_events(
                self._db, found.session_id, away, self._snapshot(live, live.state)
            )
        except Exception:
            log.exception("resumed session not recorded", extra={"session": found.session_id})
        self._rooms[code] = live
        live.media.set_audiences(all_audiences(live.state))
        self._schedule_activity_timer(live)
        for participant in live.state.participants:
            timer = self._tasks.spawn(self._expire_later(code, participant.id), "reconnect-window")
            if timer is not None:
                live.away_timers[participant.id] = timer
        log.info("session resumed", extra={"room": code, "session": found.session_id})
        return True

    async def _heartbeat(self) -> None:
        """Keep the live sessions' snapshots current (see services.resume)."""
        while True:
            await asyncio.sleep(self._resume.heartbeat)
            sessions = [live.state.session_id for live in self._rooms.values() if not live.closed]
            try:
                await stores.touch_snapshots(self._db, sessions, self._clock.now())
            except Exception:
                log.exception("snapshot heartbeat failed")

    async def close(self) -> None:
        """Graceful shutdown. Idempotent. A room that fails to close is logged and
        skipped; the caller bounds the time.

        With resuming enabled, sessions stay open: everyone is marked away (recorded)
        and the snapshot saved, so the next process gives them their seats back. Without
        it, every seat ends (recorded as a server shutdown) and the sessions end.
        """
        async with self._registry_lock:
            self._closing = True
            rooms = list(self._rooms.values())
        await self._tasks.close()
        for live in rooms:
            try:
                async with live.lock:
                    if live.closed:
                        continue
                    if self._resume.enabled:
                        await self._suspend_room(live)
                        continue
                    for participant in live.state.participants:
                        await self._apply_even_unrecorded(
                            live, Leave(participant.id, LeaveReason.SERVER_SHUTDOWN)
                        )
                    await self._close_room(live)
            except Exception:
                log.exception("room failed to close", extra={"room": live.code})

    async def _suspend_room(self, live: LiveRoom) -> None:
        """Stop a room for a restart: seats held as away, snapshot saved as of now,
        media closed; the session stays open. Caller holds ``live.lock``."""
        for participant in live.state.participants:
            await self._apply_even_unrecorded(live, Disconnect(participant.id))
        snapshot = self._snapshot(live, live.state)
        live.closed = True
        live.cancel_activity_timer()
        for pid in list(live.away_timers):
            live.cancel_away_timer(pid)
        if self._rooms.get(live.code) is live:
            del self._rooms[live.code]
        try:
            await live.media.close()
        finally:
            if snapshot is not None:
                await stores.save_snapshot(self._db, live.state.session_id, snapshot)
            log.info("room suspended", extra={"room": live.code})

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
            # The media room first: a server at its limit of live sessions refuses it,
            # and then no session row may be opened.
            media = self._media_factory(code)
            try:
                session = await stores.open_session(self._db, room.id, self._clock.now())
                state = RoomState(
                    room_id=RoomId(room.id),
                    session_id=SessionId(session.id),
                    participant_limit=await self._limit_of(room.id),
                    lobby_limit=self._lobby_limit,
                    patients_may_unmute=room.patients_may_unmute,
                    limits=self._timer_limits,
                )
            except BaseException:
                await media.close()
                raise
            live = LiveRoom(room=room, state=state, media=media)
            self._rooms[code] = live
            log.info("room opened", extra={"room": code, "session": session.id})
            return live

    async def _apply(
        self, live: LiveRoom, command: Command, now: float | None = None
    ) -> Sequence[Event]:
        """Decide, persist, route, announce. Caller holds ``live.lock``.

        One exception to that order, for privacy: a change that only takes listeners
        away (a mute, camera off, back to the lobby) is routed before it is persisted,
        so the SFU stops forwarding at once rather than after the database's fsync; if
        persisting fails, the routing is put back and nothing is announced.
        ``now`` overrides the clock (a timer applies what was due at its deadline).
        """
        new_state, events = decide(live.state, command, self._clock.now() if now is None else now)
        if not events:
            return events
        audiences = all_audiences(new_state)
        early = not live.closed and only_restricts(all_audiences(live.state), audiences)
        if early:
            live.media.set_audiences(audiences)
        try:
            await stores.record_events(
                self._db, live.state.session_id, events, self._snapshot(live, new_state)
            )
        except BaseException:
            if early and not live.closed:
                live.media.set_audiences(all_audiences(live.state))
            raise
        self._commit(live, new_state)
        await self._announce(live, new_state, events)
        return events

    async def _apply_even_unrecorded(
        self, live: LiveRoom, command: Leave | Disconnect | ExpireAway
    ) -> Sequence[Event]:
        """Like _apply, for facts rather than requests (someone left, a connection
        dropped, a window ran out): they happen even if they cannot be recorded. As in
        _apply, a change that only takes listeners away (the last clinician dropping out
        puts the patients on hold) is routed before it is written."""
        new_state, events = decide(live.state, command, self._clock.now())
        if not events:
            return events
        audiences = all_audiences(new_state)
        if not live.closed and only_restricts(all_audiences(live.state), audiences):
            live.media.set_audiences(audiences)
        try:
            await stores.record_events(
                self._db, live.state.session_id, events, self._snapshot(live, new_state)
            )
        except Exception:
            log.exception(
                "change not recorded",
                extra={"room": live.code, "participant": command.participant_id},
            )
        self._commit(live, new_state)
        await self._announce(live, new_state, events)
        return events

    def _snapshot(self, live: LiveRoom, state: RoomState) -> stores.Snapshot | None:
        if not self._resume.enabled:
            return None
        return take_snapshot(state, live.key_of, live.credential_of, live.denied, self._clock.now())

    def _commit(self, live: LiveRoom, new_state: RoomState) -> None:
        live.state = new_state
        if not live.closed:
            live.media.set_audiences(all_audiences(new_state))
            self._schedule_activity_timer(live)

    def _schedule_activity_timer(self, live: LiveRoom) -> None:
        """Keep one timer per room, sleeping until the state's next deadline."""
        deadline = next_deadline(live.state)
        if deadline == live.activity_deadline and live.activity_timer is not None:
            return
        live.cancel_activity_timer()
        if deadline is None:
            return
        live.activity_deadline = deadline
        live.activity_timer = self._tasks.spawn(self._activity_due(live, deadline), "timer")

    async def _activity_due(self, live: LiveRoom, deadline: float) -> None:
        """Sleep until ``deadline`` by the service clock, then apply what is due (a
        warning, an end, the next person in the queue); the commit schedules the next."""
        while True:
            await asyncio.sleep(max(0.0, deadline - self._clock.now()))
            async with live.lock:
                if live.closed or live.activity_deadline != deadline:
                    return
                if self._clock.now() < deadline:
                    continue  # the clock lagged the event loop's: sleep the rest
                # Whatever the outcome, this task is done with: the commit schedules anew.
                live.activity_timer = None
                live.activity_deadline = None
                try:
                    # Applied as of the deadline at least, so what was due is applied
                    # even if the clock stepped back since it was read.
                    await self._apply(live, TimersDue(), now=max(deadline, self._clock.now()))
                    if live.activity_timer is None:
                        self._schedule_activity_timer(live)
                except Exception:
                    log.exception("timer not applied", extra={"room": live.code})
                    # Try again shortly rather than leave the activity running forever.
                    live.activity_deadline = None
                    self._retry_timer(live)
                return

    def _retry_timer(self, live: LiveRoom) -> None:
        deadline = self._clock.now() + MIN_EXPIRY_RETRY
        live.activity_deadline = deadline
        live.activity_timer = self._tasks.spawn(self._activity_due(live, deadline), "timer")

    async def _announce(self, live: LiveRoom, state: RoomState, events: Sequence[Event]) -> None:
        # A change is recorded and routed by now: failing to tell clients must not undo it.
        try:
            await self._observer.room_changed(live.code, state, events)
        except Exception:
            log.exception("announcing a change failed", extra={"room": live.code})

    async def _close_room(self, live: LiveRoom) -> None:
        """Close a room whose seats have all ended. Caller holds ``live.lock``."""
        live.closed = True
        live.cancel_activity_timer()
        if self._rooms.get(live.code) is live:
            del self._rooms[live.code]
        try:
            await live.media.close()
        finally:
            await stores.end_session(self._db, live.state.session_id, self._clock.now())
            log.info("room closed", extra={"room": live.code})
