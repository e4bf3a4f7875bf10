"""What services need from adapters, as protocols (media routing, fan-out to clients)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from telecircle.domain.events import Event
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import RoomState, TrackRef


@dataclass(frozen=True, slots=True)
class ReceiveSlot:
    """One receive slot of a subscribe connection: the SDP mids of its audio and video."""

    index: int
    audio_mid: str
    video_mid: str


class MediaRouting(Protocol):
    """The SFU's per-room routing, seen from services.

    Contract: calls for one participant (publish, subscribe, accept_subscribe_answer,
    remove) never overlap — the room service serialises them per participant; calls for
    different participants may. ``set_audiences`` is synchronous and replaces the whole
    routing. ``remove`` and ``close`` are idempotent. Refusals raise MediaError (a
    TelecircleError) and leave no half-open peer connection behind.
    """

    def set_audiences(self, audiences: Mapping[TrackRef, frozenset[ParticipantId]]) -> None: ...

    async def publish(self, pid: ParticipantId, offer_sdp: str) -> str: ...

    async def subscribe(
        self, pid: ParticipantId, slot_count: int
    ) -> tuple[str, list[ReceiveSlot], str]:
        """The offer SDP, its receive slots, and the mid of its shared-screen m-line."""
        ...

    async def accept_subscribe_answer(self, pid: ParticipantId, answer_sdp: str) -> None: ...

    async def remove(self, pid: ParticipantId) -> None: ...

    async def close(self) -> None: ...


class RoomObserver(Protocol):
    """Receives every change after it has been persisted (signalling fans it out)."""

    async def room_changed(
        self, room_code: str, state: RoomState, events: Sequence[Event]
    ) -> None: ...

    async def media_lost(self, room_code: str, pid: ParticipantId) -> None:
        """A participant's peer connection died while their seat is live: tell them."""
        ...


AuditValue = str | int | float | bool | None


class AuditSink(Protocol):
    """Where services report security-relevant actions (the audit log).

    ``action`` is a snake_case event name (e.g. ``"login_failed"``); ``actor`` and
    ``target`` are ids, never names; ``details`` hold ids, counts and reasons only —
    never names or health information. Returns once the entry is durably recorded
    (what it returns is the sink's own business; services ignore it).
    """

    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        address: str | None = None,
        details: Mapping[str, AuditValue] | None = None,
    ) -> object: ...
