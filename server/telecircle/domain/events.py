"""Events: what happened, as recorded on the session timeline."""

from __future__ import annotations

from dataclasses import dataclass

from telecircle.domain.commands import LeaveReason
from telecircle.domain.ids import ParticipantId


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    participant_id: ParticipantId
    display_name: str
    at: float

    kind = "participant_joined"


@dataclass(frozen=True, slots=True)
class ParticipantKnocked:
    """A patient arrived in the lobby."""

    participant_id: ParticipantId
    display_name: str
    at: float

    kind = "participant_knocked"


@dataclass(frozen=True, slots=True)
class ParticipantAdmitted:
    participant_id: ParticipantId
    by: ParticipantId
    at: float

    kind = "participant_admitted"


@dataclass(frozen=True, slots=True)
class ParticipantDenied:
    participant_id: ParticipantId
    by: ParticipantId
    at: float

    kind = "participant_denied"


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    participant_id: ParticipantId
    reason: LeaveReason
    at: float

    kind = "participant_left"


@dataclass(frozen=True, slots=True)
class MediaChanged:
    participant_id: ParticipantId
    audio_on: bool
    video_on: bool
    at: float

    kind = "media_changed"


@dataclass(frozen=True, slots=True)
class ParticipantAway:
    """The participant's connection dropped; their seat is held for the reconnect window."""

    participant_id: ParticipantId
    at: float

    kind = "participant_away"


@dataclass(frozen=True, slots=True)
class ParticipantBack:
    participant_id: ParticipantId
    at: float

    kind = "participant_back"


Event = (
    ParticipantJoined
    | ParticipantKnocked
    | ParticipantAdmitted
    | ParticipantDenied
    | ParticipantLeft
    | MediaChanged
    | ParticipantAway
    | ParticipantBack
)
