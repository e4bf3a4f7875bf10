"""Live rooms: what the signalling and web layers ask of them (enter, admit, controls,
leave, media), one command at a time under each room's lock.

How a change is applied (decide -> persist -> route -> announce), the timers and
restarts are in services/room_engine.py. Media calls for one participant (publish,
subscribe, answer, remove) are serialised by a per-participant lock, outside the room
lock, so a slow negotiation never holds up the rest of the room; a negotiation that
finishes after its participant left is undone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from telecircle.domain.commands import (
    Admit,
    AdmitAll,
    Command,
    ControlCommand,
    Deny,
    Disconnect,
    EndSession,
    Join,
    Knock,
    Leave,
    LeaveReason,
    Remove,
    Resume,
    SetOwnMedia,
    StartPairs,
)
from telecircle.domain.errors import NotAllowed, NotInRoom
from telecircle.domain.events import Event, MovedToLobby, ParticipantLeft
from telecircle.domain.ids import ParticipantId, RoomCode, new_participant_id
from telecircle.domain.model import Place, SeatRole
from telecircle.services.live_room import (
    DeniedEntry,
    Entrant,
    JoinOutcome,
    LiveRoom,
    NoSuchRoom,
    ServiceClosed,
    StillWaiting,
    random_pairs,
)
from telecircle.services.ports import ReceiveSlot
from telecircle.services.room_engine import RoomEngine
from telecircle.storage import stores

log = logging.getLogger(__name__)

__all__ = [
    "DeniedEntry",
    "Entrant",
    "JoinOutcome",
    "LiveRoom",
    "NoSuchRoom",
    "RoomService",
    "ServiceClosed",
    "StillWaiting",
]


class RoomService(RoomEngine):
    """The room operations the signalling and web layers call (see RoomEngine for how
    each change is applied)."""

    async def _record_seat_owner(self, pid: ParticipantId, entrant: Entrant) -> None:
        """Whose the new seat is, for the session record (a clinician's account, or the
        pass a patient entered with: their consent is found by it)."""
        kind, _, ident = entrant.key.partition(":")
        try:
            await stores.set_seat_owner(
                self._db,
                pid,
                user_id=ident if kind == "user" else None,
                pass_id=(entrant.credential or None) if entrant.role is SeatRole.PATIENT else None,
            )
        except Exception:
            # The seat exists and is announced: it must not fail now. The record shows
            # a seat without an owner ("no consent found") rather than losing the entry.
            log.exception("seat owner not recorded", extra={"participant": pid})

    async def enter(self, code: RoomCode, entrant: Entrant) -> JoinOutcome:
        """Seat ``entrant`` in the room's open session (opening one if needed).

        Someone whose seat is still held (away within the reconnect window, or connected
        from another device) returns to that seat and place: no lobby, no leave/join
        seen by others. Otherwise a clinician enters the session and a patient waits
        in the lobby. Raises NoSuchRoom, RoomFull, LobbyFull, InvalidCommand or
        ServiceClosed; a session opened for this entry alone is closed again.
        """
        while True:
            live = await self._live_room_for(code)
            limit = await self._limit_of(live.room.id)
            moved_out: ParticipantId | None = None
            async with live.lock:
                if live.closed:
                    continue  # emptied and closed while we waited: open a fresh session
                if entrant.key in live.denied:
                    raise DeniedEntry("Your therapist did not let you into this session.")
                held = live.seat_of.get(entrant.key)
                returning = (
                    held is not None
                    and live.seated(held)
                    and not self._other_device(live, held, entrant)
                )
                if entrant.returning_only and not returning:
                    # Let in without the page before the session only to take back a
                    # held seat, which has ended meanwhile.
                    raise NotAllowed("Please complete the page before the session first.")
                if held is not None and live.seated(held):
                    if not self._other_device(live, held, entrant):
                        await self._apply(live, Resume(held))
                        live.cancel_away_timer(held)
                        live.epochs[held] = live.epochs.get(held, 0) + 1
                        return self._outcome(live, held, returned=True)
                    # The link was opened on another device: that seat ends, and the
                    # new device waits in the lobby like anyone else.
                    await self._apply_even_unrecorded(live, Leave(held, LeaveReason.SEAT_MOVED))
                    live.forget_seat(held)
                    live.cancel_away_timer(held)
                    moved_out = held
                pid = new_participant_id()
                command: Command = (
                    Join(pid, entrant.display_name, limit)
                    if entrant.role is SeatRole.CLINICIAN
                    else Knock(pid, entrant.display_name)
                )
                # Known before the change is announced (the lobby view shows check-ins).
                live.seat_of[entrant.key] = pid
                live.key_of[pid] = entrant.key
                live.credential_of[pid] = entrant.credential
                live.epochs[pid] = 1
                try:
                    try:
                        await self._apply(live, command)
                    except BaseException:
                        live.forget_seat(pid)
                        if not live.state.participants:
                            await self._close_room(live)
                        raise
                    outcome = self._outcome(live, pid, returned=False)
                    await self._record_seat_owner(pid, entrant)
                finally:
                    if moved_out is not None:
                        # The moved seat's media goes whether or not the new one came to be.
                        self._tasks.spawn(self._release_media(live, moved_out), "moved-seat")
            return outcome

    @staticmethod
    def _other_device(live: LiveRoom, held: ParticipantId, entrant: Entrant) -> bool:
        known = live.credential_of.get(held, "")
        return (
            entrant.role is SeatRole.PATIENT
            and bool(entrant.credential)
            and bool(known)
            and known != entrant.credential
        )

    async def admit(self, code: RoomCode, by: ParticipantId, pid: ParticipantId) -> None:
        """A clinician lets a waiting patient in (if the room's current limit allows)."""
        live = self._seated(code, by)
        limit = await self._limit_of(live.room.id)
        async with live.lock:
            await self._apply(live, Admit(pid, by, limit))

    async def admit_all(self, code: RoomCode, by: ParticipantId) -> int:
        """Let everyone waiting in while seats last; returns how many got in."""
        live = self._seated(code, by)
        limit = await self._limit_of(live.room.id)
        async with live.lock:
            return len(await self._apply(live, AdmitAll(by, limit)))

    async def deny(self, code: RoomCode, by: ParticipantId, pid: ParticipantId) -> None:
        """A clinician turns a waiting patient away; their seat ends."""
        live = self._seated(code, by)
        async with live.lock:
            await self._apply_turning_away(live, pid, Deny(pid, by))
        await self._after_leave(live, pid)

    async def _apply_turning_away(
        self, live: LiveRoom, pid: ParticipantId, command: Command
    ) -> Sequence[Event]:
        """Apply a command that turns ``pid`` away for the rest of the session (a denial,
        a removal): their seat key is refused from then on. Added before the change is
        recorded, so the saved snapshot has it too (a restart keeps them out)."""
        key = live.key_of.get(pid)
        fresh = key is not None and key not in live.denied
        if key is not None:
            live.denied.add(key)
        try:
            return await self._apply(live, command)
        except BaseException:
            if fresh and key is not None:
                live.denied.discard(key)
            raise

    async def control(
        self, code: RoomCode, sender: ParticipantId, command: ControlCommand
    ) -> Sequence[Event]:
        """Apply a facilitator control (or a participant's hand / moment signal) sent by
        the seated ``sender``; the rules check the sender's role. Seats that end (remove,
        end of session) are released; a patient sent back to the lobby loses their media
        connections (a waiting patient sends and receives nothing) but keeps the seat."""
        live = self._seated(code, sender)
        async with live.lock:
            if isinstance(command, StartPairs) and not command.groups:
                command = replace(command, groups=random_pairs(live.state))
            if isinstance(command, Remove):
                # Out of this session: not back into its lobby with the same link.
                target = command.participant_id
                events = await self._apply_turning_away(live, target, command)
            else:
                events = await self._apply(live, command)
            if isinstance(command, EndSession) and not live.closed:
                # Closed while still locked, so nobody enters the session that ended.
                await self._close_room(live)
        for event in events:
            if isinstance(event, ParticipantLeft):
                await self._after_leave(live, event.participant_id)
            elif isinstance(event, MovedToLobby):
                await self._release_media(live, event.participant_id)
        return events

    async def remove_person(self, key: str, reason: LeaveReason) -> None:
        """End every seat ``key`` holds in any live room (an invite withdrawn, an
        account disabled)."""
        for live in list(self._rooms.values()):
            pid = live.seat_of.get(key)
            if pid is not None:
                await self.leave(live.code, pid, reason)

    def holds_seat(self, code: RoomCode, key: str, credential: str = "") -> bool:
        """Whether a seat in the room's live session is held for the person ``key``,
        taken with ``credential`` (the same device, for a patient)."""
        live = self._rooms.get(code)
        if live is None:
            return False
        pid = live.seat_of.get(key)
        participant = None if pid is None or not live.seated(pid) else live.state.find(pid)
        return (
            participant is not None
            and participant.place is not Place.LOBBY
            and live.credential_of.get(participant.id, "") == credential
        )

    def seat_key(self, code: RoomCode, pid: ParticipantId) -> str | None:
        live = self._rooms.get(code)
        return None if live is None else live.key_of.get(pid)

    async def disconnect(
        self, code: RoomCode, pid: ParticipantId, epoch: int | None = None
    ) -> None:
        """The participant's connection dropped without Leave: hold the seat for the
        reconnect window, then free it unless they came back. With ``epoch`` (from the
        JoinOutcome of that connection), a drop of a connection the seat has already
        moved on from is ignored."""
        applied = await self._apply_if_seated(code, pid, Disconnect(pid), epoch)
        if applied is None or not applied[1]:
            return
        live = applied[0]
        live.cancel_away_timer(pid)
        timer = self._tasks.spawn(self._expire_later(code, pid), "reconnect-window")
        if timer is not None:
            live.away_timers[pid] = timer

    @staticmethod
    def _outcome(live: LiveRoom, pid: ParticipantId, *, returned: bool) -> JoinOutcome:
        participant = live.state.find(pid)
        if participant is None:  # pragma: no cover - callers hold the lock on a seat
            raise NotInRoom("You are not in this room.")
        return JoinOutcome(live.room, participant, live.state, returned, live.epochs.get(pid, 1))

    async def leave(self, code: RoomCode, pid: ParticipantId, reason: LeaveReason) -> None:
        """End a participant's seat and release their media. Idempotent."""
        applied = await self._apply_if_seated(code, pid, Leave(pid, reason))
        if applied is not None:
            await self._after_leave(applied[0], pid)

    async def set_own_media(
        self, code: RoomCode, pid: ParticipantId, audio_on: bool | None, video_on: bool | None
    ) -> None:
        """Turn the participant's own microphone/camera on or off (None: unchanged)."""
        live = self._seated(code, pid)
        async with live.lock:
            await self._apply(live, SetOwnMedia(pid, audio_on, video_on))

    async def publish(self, code: RoomCode, pid: ParticipantId, offer_sdp: str) -> str:
        """Open (or replace) the participant's publish connection; returns the answer SDP."""
        live = self._admitted(code, pid)
        async with live.media_lock(pid):
            self._admitted(code, pid)
            answer = await live.media.publish(pid, offer_sdp)
            await self._undo_if_gone(live, pid)
            return answer

    async def subscribe(
        self, code: RoomCode, pid: ParticipantId
    ) -> tuple[str, list[ReceiveSlot], str]:
        """Offer the participant's subscribe connection, one slot per other possible seat
        and the screen's m-line (returns the offer, the slots, the screen's mid)."""
        live = self._admitted(code, pid)
        async with live.media_lock(pid):
            self._admitted(code, pid)
            offer = await live.media.subscribe(pid, live.state.participant_limit - 1)
            await self._undo_if_gone(live, pid)
            return offer

    async def accept_subscribe_answer(self, code: RoomCode, pid: ParticipantId, sdp: str) -> None:
        """Apply the participant's answer to the subscribe offer."""
        live = self._admitted(code, pid)
        async with live.media_lock(pid):
            self._admitted(code, pid)
            await live.media.accept_subscribe_answer(pid, sdp)
            await self._undo_if_gone(live, pid)

    def media_path_lost(self, code: RoomCode, pid: ParticipantId) -> None:
        """Called by the SFU when one of a participant's peer connections died (the SFU
        has already closed it). The seat stays: a participant whose socket is still up is
        told to build new connections; one who is away comes back through resume."""
        live = self._rooms.get(code)
        if live is None or not live.seated(pid):
            return  # a connection of someone who already left
        participant = live.state.find(pid)
        log.info("media path lost", extra={"room": code, "participant": pid})
        if participant is not None and not participant.away:
            self._tasks.spawn(self._observer.media_lost(code, pid), "media-lost")

    def _seated(self, code: RoomCode, pid: ParticipantId) -> LiveRoom:
        live = self._rooms.get(code)
        if live is None or not live.seated(pid):
            raise NotInRoom("You are not in this room.")
        return live

    def _admitted(self, code: RoomCode, pid: ParticipantId) -> LiveRoom:
        """The live room of a participant past the lobby: a waiting patient sends and
        receives no media, so their media requests are refused."""
        live = self._seated(code, pid)
        participant = live.state.find(pid)
        if participant is not None and participant.place is Place.LOBBY:
            raise StillWaiting("You are in the waiting room until a clinician lets you in.")
        return live

    async def _undo_if_gone(self, live: LiveRoom, pid: ParticipantId) -> None:
        """After a negotiation: if the participant left meanwhile, drop what was built."""
        if not live.seated(pid):
            if not live.closed:
                await live.media.remove(pid)
            raise NotInRoom("You are not in this room.")
