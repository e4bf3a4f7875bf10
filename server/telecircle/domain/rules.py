"""The rules: ``decide(state, command, now) -> (state, events)``.

``decide`` is total over valid commands: it either returns the new state and the events
that describe the change, or raises a :class:`DomainError` and changes nothing.
"""

from __future__ import annotations

from dataclasses import replace

from telecircle.domain.commands import (
    Command,
    Disconnect,
    ExpireAway,
    Join,
    Leave,
    LeaveReason,
    Resume,
    SetOwnMedia,
)
from telecircle.domain.errors import AlreadyInRoom, InvalidCommand, NotInRoom, RoomFull
from telecircle.domain.events import (
    Event,
    MediaChanged,
    ParticipantAway,
    ParticipantBack,
    ParticipantJoined,
    ParticipantLeft,
)
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import Participant, Place, RoomState

MAX_DISPLAY_NAME_LENGTH = 64


def decide(state: RoomState, command: Command, now: float) -> tuple[RoomState, list[Event]]:
    """Apply ``command`` to ``state`` at time ``now`` (seconds, any epoch)."""
    if isinstance(command, Join):
        return _join(state, command, now)
    if isinstance(command, Leave):
        return _leave(state, command, now)
    if isinstance(command, SetOwnMedia):
        return _set_own_media(state, command, now)
    if isinstance(command, Disconnect):
        return _disconnect(state, command, now)
    if isinstance(command, Resume):
        return _resume(state, command, now)
    return _expire_away(state, command, now)


def normalise_display_name(raw: str) -> str:
    """Collapse whitespace and check length; raise InvalidCommand when unusable."""
    name = " ".join(raw.split())
    if not name:
        raise InvalidCommand("Please enter a display name.")
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise InvalidCommand(f"Display names are at most {MAX_DISPLAY_NAME_LENGTH} characters.")
    if any(not ch.isprintable() for ch in name):
        raise InvalidCommand("Display names may not contain control characters.")
    return name


def _join(state: RoomState, command: Join, now: float) -> tuple[RoomState, list[Event]]:
    if state.find(command.participant_id) is not None:
        raise AlreadyInRoom("You are already in this room.")
    if state.seats_taken() >= state.participant_limit:
        raise RoomFull(
            f"This room is full ({state.participant_limit} people). "
            "Please ask your therapist for help."
        )
    name = normalise_display_name(command.display_name)
    # No lobby yet (the access issue adds it): everyone who joins goes to the plenary.
    participant = Participant(
        id=command.participant_id, display_name=name, place=Place.PLENARY, joined_at=now
    )
    new_state = replace(state, participants=(*state.participants, participant))
    return new_state, [ParticipantJoined(participant.id, name, now)]


def _leave(state: RoomState, command: Leave, now: float) -> tuple[RoomState, list[Event]]:
    if state.find(command.participant_id) is None:
        raise NotInRoom("You are not in this room.")
    remaining = tuple(p for p in state.participants if p.id != command.participant_id)
    return replace(state, participants=remaining), [
        ParticipantLeft(command.participant_id, command.reason, now)
    ]


def _set_own_media(
    state: RoomState, command: SetOwnMedia, now: float
) -> tuple[RoomState, list[Event]]:
    current = state.find(command.participant_id)
    if current is None:
        raise NotInRoom("You are not in this room.")
    updated = replace(
        current,
        audio_on=current.audio_on if command.audio_on is None else command.audio_on,
        video_on=current.video_on if command.video_on is None else command.video_on,
    )
    if updated == current:
        return state, []
    return _update(state, updated), [
        MediaChanged(updated.id, updated.audio_on, updated.video_on, now)
    ]


def _update(state: RoomState, participant: Participant) -> RoomState:
    participants = tuple(participant if p.id == participant.id else p for p in state.participants)
    return replace(state, participants=participants)


def _seated(state: RoomState, participant_id: ParticipantId) -> Participant:
    participant = state.find(participant_id)
    if participant is None:
        raise NotInRoom("You are not in this room.")
    return participant


def _disconnect(state: RoomState, command: Disconnect, now: float) -> tuple[RoomState, list[Event]]:
    """The seat is held (still counted against the limit); nothing else changes."""
    participant = _seated(state, command.participant_id)
    if participant.away:
        return state, []
    away = replace(participant, away_since=now)
    return _update(state, away), [ParticipantAway(participant.id, now)]


def _resume(state: RoomState, command: Resume, now: float) -> tuple[RoomState, list[Event]]:
    """Back into the same seat and place; a no-op if the seat was never marked away."""
    participant = _seated(state, command.participant_id)
    if not participant.away:
        return state, []
    back = replace(participant, away_since=None)
    return _update(state, back), [ParticipantBack(participant.id, now)]


def _expire_away(
    state: RoomState, command: ExpireAway, now: float
) -> tuple[RoomState, list[Event]]:
    """Free the seat of someone away for at least ``grace`` seconds; otherwise nothing."""
    participant = state.find(command.participant_id)
    if participant is None or participant.away_since is None:
        return state, []
    if now - participant.away_since < command.grace:
        return state, []
    return _leave(state, Leave(participant.id, LeaveReason.CONNECTION_LOST), now)
