"""The facilitator's controls: forced mute and camera off, mute all, raised hands,
"I need a moment", back to the lobby, remove, lock, end the session.

Every control is a rule here, so the SFU enforces it through the audience (a track
forced off has no audience at all), not by asking the patient's browser.
"""

from __future__ import annotations

from dataclasses import replace

from telecircle.domain import seats
from telecircle.domain.activities import decide_activity
from telecircle.domain.commands import (
    ControlCommand,
    EndSession,
    ForceMedia,
    LeaveReason,
    Lock,
    MoveToLobby,
    MuteAll,
    NeedMoment,
    RaiseHand,
    Remove,
    ShareScreen,
)
from telecircle.domain.errors import ActivityConflict, InvalidCommand, NotAllowed
from telecircle.domain.events import (
    Event,
    HandChanged,
    MediaForced,
    MomentChanged,
    MovedToLobby,
    ParticipantLeft,
    ParticipantRemoved,
    ScreenShared,
    SessionEnded,
    SessionLocked,
)
from telecircle.domain.model import Participant, Place, RoomState, SeatRole

Decision = tuple[RoomState, list[Event]]


def decide_control(state: RoomState, command: ControlCommand, now: float) -> Decision:
    if isinstance(command, ForceMedia):
        return _force_media(state, command, now)
    if isinstance(command, MuteAll):
        return _mute_all(state, command, now)
    if isinstance(command, RaiseHand):
        return _raise_hand(state, command, now)
    if isinstance(command, NeedMoment):
        return _need_moment(state, command, now)
    if isinstance(command, MoveToLobby):
        return _move_to_lobby(state, command, now)
    if isinstance(command, Remove):
        return _remove(state, command, now)
    if isinstance(command, Lock):
        return _lock(state, command, now)
    if isinstance(command, EndSession):
        return _end_session(state, command, now)
    if isinstance(command, ShareScreen):
        return _share_screen(state, command, now)
    return decide_activity(state, command, now)


def _forced(target: Participant, by: Participant, now: float) -> MediaForced:
    return MediaForced(target.id, by.id, target.audio_forced_off, target.video_forced_off, now)


def _force_media(state: RoomState, command: ForceMedia, now: float) -> Decision:
    by = seats.clinician(state, command.by)
    target = seats.seated(state, command.participant_id)
    if (
        target.role is SeatRole.CLINICIAN
        and target.id != by.id
        and (command.audio_off or command.video_off)
    ):
        raise NotAllowed("Clinicians are not muted by each other.")
    # Turning something off also turns the participant's own switch off, so that
    # letting them back on does not make them live before they choose to be.
    updated = replace(
        target,
        audio_forced_off=(
            target.audio_forced_off if command.audio_off is None else command.audio_off
        ),
        video_forced_off=(
            target.video_forced_off if command.video_off is None else command.video_off
        ),
        audio_on=target.audio_on and command.audio_off is not True,
        video_on=target.video_on and command.video_off is not True,
    )
    if updated == target:
        return state, []
    # Allowed to speak again: a raised hand has been answered.
    if command.audio_off is False and updated.hand_raised_at is not None:
        updated = replace(updated, hand_raised_at=None)
        return seats.update(state, updated), [
            _forced(updated, by, now),
            HandChanged(updated.id, False, now),
        ]
    return seats.update(state, updated), [_forced(updated, by, now)]


def _mute_all(state: RoomState, command: MuteAll, now: float) -> Decision:
    """Every patient outside the lobby, muted; clinicians are not."""
    by = seats.clinician(state, command.by)
    events: list[Event] = []
    for participant in state.participants:
        if (
            participant.role is SeatRole.PATIENT
            and participant.place is not Place.LOBBY
            and not participant.audio_forced_off
        ):
            muted = replace(participant, audio_forced_off=True, audio_on=False)
            state = seats.update(state, muted)
            events.append(_forced(muted, by, now))
    return state, events


def _raise_hand(state: RoomState, command: RaiseHand, now: float) -> Decision:
    if command.by is not None and command.by != command.participant_id:
        seats.clinician(state, command.by)  # only clinicians lower others' hands
        if command.raised:
            raise InvalidCommand("Only the participant can raise their own hand.")
    target = seats.seated(state, command.participant_id)
    if target.place is Place.LOBBY:
        raise NotAllowed("You are in the waiting room.")
    raised = target.hand_raised_at is not None
    if raised == command.raised:
        return state, []
    updated = replace(target, hand_raised_at=now if command.raised else None)
    return seats.update(state, updated), [HandChanged(target.id, command.raised, now)]


def _need_moment(state: RoomState, command: NeedMoment, now: float) -> Decision:
    if command.by is not None and command.by != command.participant_id:
        seats.clinician(state, command.by)
        if command.needed:
            raise InvalidCommand("Only the participant can ask for a moment.")
    target = seats.seated(state, command.participant_id)
    if target.place is Place.LOBBY:
        raise NotAllowed("You are in the waiting room.")
    if (target.needs_moment_since is not None) == command.needed:
        return state, []
    updated = replace(target, needs_moment_since=now if command.needed else None)
    return seats.update(state, updated), [MomentChanged(target.id, command.needed, now)]


def _patient_in_session(state: RoomState, command: MoveToLobby | Remove) -> Participant:
    seats.clinician(state, command.by)
    target = seats.seated(state, command.participant_id)
    if target.role is not SeatRole.PATIENT:
        raise NotAllowed("Clinicians cannot be sent out by each other.")
    return target


def _move_to_lobby(state: RoomState, command: MoveToLobby, now: float) -> Decision:
    """Back to the lobby. The lobby limit does not apply: a facilitator can always send
    someone out of the session (only knocking into a full lobby is refused)."""
    target = _patient_in_session(state, command)
    if target.place is Place.LOBBY:
        return state, []
    back = replace(target, place=Place.LOBBY, hand_raised_at=None, needs_moment_since=None)
    return seats.update(state, back), [MovedToLobby(target.id, command.by, now)]


def _remove(state: RoomState, command: Remove, now: float) -> Decision:
    target = _patient_in_session(state, command)
    return seats.without(state, target.id), [
        ParticipantRemoved(target.id, command.by, now),
        ParticipantLeft(target.id, LeaveReason.REMOVED, now),
    ]


def _share_screen(state: RoomState, command: ShareScreen, now: float) -> Decision:
    """Clinicians share their screen with whoever is in their place; one at a time, so
    that everyone knows whose screen is shown large."""
    sharer = seats.clinician(state, command.participant_id)
    if sharer.screen_on == command.on:
        return state, []
    events: list[Event] = []
    if command.on:
        other = next((p for p in state.participants if p.screen_on), None)
        if other is not None and not other.away:
            raise ActivityConflict(f"{other.display_name} is sharing their screen already.")
        if other is not None:
            # A sharer whose connection dropped does not hold the screen from the others.
            state = seats.update(state, replace(other, screen_on=False))
            events.append(ScreenShared(other.id, False, now))
    updated = replace(sharer, screen_on=command.on)
    events.append(ScreenShared(sharer.id, command.on, now))
    return seats.update(state, updated), events


def _lock(state: RoomState, command: Lock, now: float) -> Decision:
    seats.clinician(state, command.by)
    if state.locked == command.locked:
        return state, []
    return replace(state, locked=command.locked), [SessionLocked(command.locked, command.by, now)]


def _end_session(state: RoomState, command: EndSession, now: float) -> Decision:
    """Everyone's seat ends, the lobby's too; the room closes once it is empty."""
    seats.clinician(state, command.by)
    events: list[Event] = [SessionEnded(command.by, now)]
    events += [ParticipantLeft(p.id, LeaveReason.SESSION_ENDED, now) for p in state.participants]
    return replace(state, participants=()), events
