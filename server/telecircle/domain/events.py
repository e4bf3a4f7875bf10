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


@dataclass(frozen=True, slots=True)
class MediaForced:
    """A clinician changed what of a participant is forced off (the values after)."""

    participant_id: ParticipantId
    by: ParticipantId
    audio_off: bool
    video_off: bool
    at: float

    kind = "media_forced"


@dataclass(frozen=True, slots=True)
class HandChanged:
    participant_id: ParticipantId
    raised: bool
    at: float

    kind = "hand_changed"


@dataclass(frozen=True, slots=True)
class MomentChanged:
    """ "I need a moment" set or cleared: told to the clinicians only."""

    participant_id: ParticipantId
    needed: bool
    at: float

    kind = "moment_changed"


@dataclass(frozen=True, slots=True)
class MovedToLobby:
    participant_id: ParticipantId
    by: ParticipantId
    at: float

    kind = "moved_to_lobby"


@dataclass(frozen=True, slots=True)
class ParticipantRemoved:
    """Who removed whom (the ParticipantLeft that follows ends the seat)."""

    participant_id: ParticipantId
    by: ParticipantId
    at: float

    kind = "participant_removed"


@dataclass(frozen=True, slots=True)
class SessionLocked:
    locked: bool
    by: ParticipantId
    at: float

    kind = "session_locked"


@dataclass(frozen=True, slots=True)
class SessionEnded:
    by: ParticipantId
    at: float

    kind = "session_ended"


Event = (
    ParticipantJoined
    | ParticipantKnocked
    | ParticipantAdmitted
    | ParticipantDenied
    | ParticipantLeft
    | MediaChanged
    | ParticipantAway
    | ParticipantBack
    | MediaForced
    | HandChanged
    | MomentChanged
    | MovedToLobby
    | ParticipantRemoved
    | SessionLocked
    | SessionEnded
)
