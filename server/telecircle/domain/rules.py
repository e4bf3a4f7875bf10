"""The rules: ``decide(state, command, now) -> (state, events)``.

``decide`` is total over valid commands: it either returns the new state and the events
that describe the change, or raises a :class:`DomainError` and changes nothing.
"""

from __future__ import annotations

from dataclasses import replace

from telecircle.domain import seats
from telecircle.domain.activities import stop_moved_screens, tidy
from telecircle.domain.commands import (
    Admit,
    AdmitAll,
    Command,
    Deny,
    Disconnect,
    ExpireAway,
    Join,
    Knock,
    Leave,
    LeaveReason,
    Resume,
    SetOwnMedia,
)
from telecircle.domain.controls import decide_control
from telecircle.domain.errors import (
    AlreadyInRoom,
    InvalidCommand,
    LobbyFull,
    NotAllowed,
    NotInRoom,
    RoomFull,
    SessionLocked,
)
from telecircle.domain.events import (
    Event,
    MediaChanged,
    MediaForced,
    ParticipantAdmitted,
    ParticipantAway,
    ParticipantBack,
    ParticipantDenied,
    ParticipantJoined,
    ParticipantKnocked,
    ParticipantLeft,
)
from telecircle.domain.model import Participant, Place, RoomState, SeatRole

MAX_DISPLAY_NAME_LENGTH = 64
Decision = tuple[RoomState, list[Event]]


def decide(state: RoomState, command: Command, now: float) -> tuple[RoomState, list[Event]]:
    """Apply ``command`` to ``state`` at time ``now`` (seconds, any epoch)."""
    decided, events = _decide(state, command, now)
    if decided is state:
        return state, events
    tidied, more = tidy(decided, now)
    settled, stopped = stop_moved_screens(state, tidied, now)
    return settled, events + more + stopped


def _decide(state: RoomState, command: Command, now: float) -> Decision:
    if isinstance(command, Join):
        return _join(state, command, now)
    if isinstance(command, Knock):
        return _knock(state, command, now)
    if isinstance(command, Admit):
        return _admit(state, command, now)
    if isinstance(command, AdmitAll):
        return _admit_all(state, command, now)
    if isinstance(command, Deny):
        return _deny(state, command, now)
    if isinstance(command, Leave):
        return _leave(state, command, now)
    if isinstance(command, SetOwnMedia):
        return _set_own_media(state, command, now)
    if isinstance(command, Disconnect):
        return _disconnect(state, command, now)
    if isinstance(command, Resume):
        return _resume(state, command, now)
    if isinstance(command, ExpireAway):
        return _expire_away(state, command, now)
    return decide_control(state, command, now)


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
    """A clinician enters the session directly, if a seat is free."""
    if state.find(command.participant_id) is not None:
        raise AlreadyInRoom("You are already in this room.")
    capacity = (
        state.participant_limit if command.limit is None else seats.capacity(state, command.limit)
    )
    if state.seats_taken() >= capacity:
        raise RoomFull(
            f"This room is full ({capacity} people). Please ask your therapist for help."
        )
    name = normalise_display_name(command.display_name)
    participant = Participant(
        id=command.participant_id,
        display_name=name,
        place=Place.PLENARY,
        joined_at=now,
        role=SeatRole.CLINICIAN,
    )
    new_state = replace(state, participants=(*state.participants, participant))
    return new_state, [ParticipantJoined(participant.id, name, now)]


def _knock(state: RoomState, command: Knock, now: float) -> tuple[RoomState, list[Event]]:
    """A patient waits in the lobby; nobody outside the lobby sees or hears them."""
    if state.find(command.participant_id) is not None:
        raise AlreadyInRoom("You are already in this room.")
    if len(state.waiting()) >= state.lobby_limit:
        raise LobbyFull("The waiting room is full. Please try again in a few minutes.")
    name = normalise_display_name(command.display_name)
    participant = Participant(
        id=command.participant_id,
        display_name=name,
        place=Place.LOBBY,
        joined_at=now,
        role=SeatRole.PATIENT,
    )
    new_state = replace(state, participants=(*state.participants, participant))
    return new_state, [ParticipantKnocked(participant.id, name, now)]


def _admit(state: RoomState, command: Admit, now: float) -> tuple[RoomState, list[Event]]:
    by = seats.clinician(state, command.by)
    waiting = seats.waiting_one(state, command.participant_id)
    _refuse_if_locked(state)
    capacity = seats.capacity(state, command.limit)
    if state.seats_taken() >= capacity:
        raise RoomFull(f"The session is full ({capacity} people).")
    admitted = replace(waiting, place=Place.PLENARY)
    return seats.update(state, admitted), [ParticipantAdmitted(admitted.id, by.id, now)]


def _admit_all(state: RoomState, command: AdmitAll, now: float) -> tuple[RoomState, list[Event]]:
    """Everyone waiting, in order of arrival, while seats last; the rest keep waiting."""
    by = seats.clinician(state, command.by)
    _refuse_if_locked(state)
    free = seats.capacity(state, command.limit) - state.seats_taken()
    events: list[Event] = []
    for waiting in state.waiting()[: max(free, 0)]:
        state = seats.update(state, replace(waiting, place=Place.PLENARY))
        events.append(ParticipantAdmitted(waiting.id, by.id, now))
    return state, events


def _refuse_if_locked(state: RoomState) -> None:
    if state.locked:
        raise SessionLocked("The session is locked: unlock it to let someone in.")


def _deny(state: RoomState, command: Deny, now: float) -> tuple[RoomState, list[Event]]:
    by = seats.clinician(state, command.by)
    waiting = seats.waiting_one(state, command.participant_id)
    remaining = tuple(p for p in state.participants if p.id != waiting.id)
    return replace(state, participants=remaining), [
        ParticipantDenied(waiting.id, by.id, now),
        ParticipantLeft(waiting.id, LeaveReason.DENIED, now),
    ]


def _leave(state: RoomState, command: Leave, now: float) -> tuple[RoomState, list[Event]]:
    if state.find(command.participant_id) is None:
        raise NotInRoom("You are not in this room.")
    remaining = tuple(p for p in state.participants if p.id != command.participant_id)
    return replace(state, participants=remaining), [
        ParticipantLeft(command.participant_id, command.reason, now)
    ]


def _set_own_media(state: RoomState, command: SetOwnMedia, now: float) -> Decision:
    """A participant's own switches. Turning off is always allowed; turning on what a
    clinician turned off releases it if the participant may (clinicians always;
    patients where the room's policy lets them), otherwise it is refused."""
    current = seats.seated(state, command.participant_id)
    may_release = current.role is SeatRole.CLINICIAN or state.patients_may_unmute
    released_audio = command.audio_on is True and current.audio_forced_off
    released_video = command.video_on is True and current.video_forced_off
    if (released_audio or released_video) and not may_release:
        raise NotAllowed(
            "The facilitator turned this off. Raise your hand to ask to be let back on."
        )
    updated = replace(
        current,
        audio_on=current.audio_on if command.audio_on is None else command.audio_on,
        video_on=current.video_on if command.video_on is None else command.video_on,
        audio_forced_off=current.audio_forced_off and not released_audio,
        video_forced_off=current.video_forced_off and not released_video,
    )
    if updated == current:
        return state, []
    events: list[Event] = [MediaChanged(updated.id, updated.audio_on, updated.video_on, now)]
    if released_audio or released_video:
        events.append(
            MediaForced(
                updated.id, updated.id, updated.audio_forced_off, updated.video_forced_off, now
            )
        )
    return seats.update(state, updated), events


def _disconnect(state: RoomState, command: Disconnect, now: float) -> tuple[RoomState, list[Event]]:
    """The seat is held (still counted against the limit); nothing else changes."""
    participant = seats.seated(state, command.participant_id)
    if participant.away:
        return state, []
    away = replace(participant, away_since=now)
    return seats.update(state, away), [ParticipantAway(participant.id, now)]


def _resume(state: RoomState, command: Resume, now: float) -> tuple[RoomState, list[Event]]:
    """Back into the same seat and place; a no-op if the seat was never marked away."""
    participant = seats.seated(state, command.participant_id)
    if not participant.away:
        return state, []
    back = replace(participant, away_since=None)
    return seats.update(state, back), [ParticipantBack(participant.id, now)]


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
