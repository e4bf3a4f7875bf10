"""A live room's bookkeeping, and what entering one gives and refuses.

Shared by the room service (which owns the rooms and their locks) and its callers.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telecircle.domain.activities import pair_up
from telecircle.domain.errors import DomainError
from telecircle.domain.ids import ParticipantId, RoomCode, RoomId
from telecircle.domain.model import Participant, RoomState, SeatRole
from telecircle.services.ports import MediaRouting
from telecircle.storage import stores


class NoSuchRoom(DomainError):
    code = "no_such_room"
    http_status = 404


class ServiceClosed(DomainError):
    code = "server_shutting_down"
    http_status = 503


class StillWaiting(DomainError):
    code = "still_waiting"
    http_status = 409


class DeniedEntry(DomainError):
    code = "denied"
    http_status = 403


@dataclass(frozen=True, slots=True)
class Entrant:
    """Who is entering: ``key`` names the person across connections and devices (an
    account, or a patient's invite), so entering again returns to the same seat."""

    key: str
    display_name: str
    role: SeatRole
    # What proves it this time (a patient's pass id): a patient returning with another
    # credential is another device, which goes through the lobby again.
    credential: str = ""
    # Only back into a seat still held for them (let in without checking in again):
    # refused if that seat has ended meanwhile.
    returning_only: bool = False


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    room: stores.RoomRecord
    participant: Participant
    state: RoomState
    # True when this was a return to a seat already held (a reconnect or another device).
    returned: bool
    # Counts the connections that took this seat; a disconnect from an older one is
    # ignored (see RoomService.disconnect).
    epoch: int = 1


MediaFactory = Callable[[RoomCode], MediaRouting]
# The room's participant limit now (within the organisation's maximum and the ceiling).
LimitOf = Callable[[RoomId], Awaitable[int]]

# Shortest wait before checking an unexpired reconnect window again.
MIN_EXPIRY_RETRY = 1.0


def random_pairs(state: RoomState) -> tuple[tuple[ParticipantId, ...], ...]:
    """Every patient in the session (not in the lobby), in pairs made at random."""
    # Not those whose connection is gone: their partner would sit alone.
    people = [p.id for p in state.admitted_patients() if not p.away]
    secrets.SystemRandom().shuffle(people)
    return pair_up(people)


@dataclass(eq=False)
class LiveRoom:
    """One room in use: its session, its state and its media routing."""

    room: stores.RoomRecord
    state: RoomState
    media: MediaRouting
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    media_locks: dict[ParticipantId, asyncio.Lock] = field(default_factory=dict)
    # Whose each seat is (Entrant.key), both ways.
    seat_of: dict[str, ParticipantId] = field(default_factory=dict)
    key_of: dict[ParticipantId, str] = field(default_factory=dict)
    credential_of: dict[ParticipantId, str] = field(default_factory=dict)
    epochs: dict[ParticipantId, int] = field(default_factory=dict)
    # Seat keys a clinician turned away: not let back into the lobby this session.
    denied: set[str] = field(default_factory=set)
    # One reconnect-window timer per away participant (cancelled when they come back).
    away_timers: dict[ParticipantId, asyncio.Task[None]] = field(default_factory=dict)
    # The timer of the running pair work or segment, and the deadline it sleeps until.
    activity_timer: asyncio.Task[None] | None = None
    activity_deadline: float | None = None
    closed: bool = False

    def cancel_activity_timer(self) -> None:
        timer, self.activity_timer = self.activity_timer, None
        self.activity_deadline = None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def cancel_away_timer(self, pid: ParticipantId) -> None:
        timer = self.away_timers.pop(pid, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    @property
    def code(self) -> RoomCode:
        return RoomCode(self.room.code)

    def media_lock(self, pid: ParticipantId) -> asyncio.Lock:
        return self.media_locks.setdefault(pid, asyncio.Lock())

    def seated(self, pid: ParticipantId) -> bool:
        return not self.closed and self.state.find(pid) is not None

    def forget_seat(self, pid: ParticipantId) -> None:
        self.credential_of.pop(pid, None)
        self.epochs.pop(pid, None)
        key = self.key_of.pop(pid, None)
        if key is not None and self.seat_of.get(key) == pid:
            del self.seat_of[key]
