"""Small operations on room state shared by the rules and the controls."""

from __future__ import annotations

from dataclasses import replace

from telecircle.domain.errors import NotAllowed, NotInRoom, NotWaiting
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import Participant, Place, RoomState, SeatRole


def update(state: RoomState, participant: Participant) -> RoomState:
    """``state`` with ``participant`` replacing the one with the same id."""
    participants = tuple(participant if p.id == participant.id else p for p in state.participants)
    return replace(state, participants=participants)


def without(state: RoomState, participant_id: ParticipantId) -> RoomState:
    return replace(
        state, participants=tuple(p for p in state.participants if p.id != participant_id)
    )


def seated(state: RoomState, participant_id: ParticipantId) -> Participant:
    participant = state.find(participant_id)
    if participant is None:
        raise NotInRoom("You are not in this room.")
    return participant


def clinician(state: RoomState, participant_id: ParticipantId) -> Participant:
    """The seated clinician who gives a command; NotAllowed for anyone else."""
    by = state.find(participant_id)
    if by is None or by.role is not SeatRole.CLINICIAN or by.place is Place.LOBBY:
        raise NotAllowed("Only the group's clinicians can do that.")
    return by


def waiting_one(state: RoomState, participant_id: ParticipantId) -> Participant:
    participant = state.find(participant_id)
    if participant is None or participant.place is not Place.LOBBY:
        raise NotWaiting("That person is no longer waiting.")
    return participant


def capacity(state: RoomState, limit: int) -> int:
    """Seats outside the lobby now: the room's current limit within the session's."""
    return min(limit, state.participant_limit)
