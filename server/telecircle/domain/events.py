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


Event = ParticipantJoined | ParticipantLeft | MediaChanged
