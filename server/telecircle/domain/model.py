"""Room state as an immutable value."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from telecircle.domain.ids import ParticipantId, RoomId, SessionId


class Place(enum.Enum):
    """Where a participant is. Later issues add pairs, segments and hold."""

    LOBBY = "lobby"
    PLENARY = "plenary"


class TrackKind(enum.Enum):
    AUDIO = "audio"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class TrackRef:
    """One published track: whose it is and what kind."""

    owner: ParticipantId
    kind: TrackKind


@dataclass(frozen=True, slots=True)
class Participant:
    id: ParticipantId
    display_name: str
    place: Place
    joined_at: float
    audio_on: bool = True
    video_on: bool = True
    # Set while the participant's connection is gone and their seat is held for them.
    away_since: float | None = None

    @property
    def away(self) -> bool:
        return self.away_since is not None


@dataclass(frozen=True, slots=True)
class RoomState:
    """Everything the rules need to know about one live session of a room."""

    room_id: RoomId
    session_id: SessionId
    participant_limit: int
    participants: tuple[Participant, ...] = field(default=())

    def find(self, participant_id: ParticipantId) -> Participant | None:
        for participant in self.participants:
            if participant.id == participant_id:
                return participant
        return None

    def seats_taken(self) -> int:
        """Participants counted against the room limit (everyone present)."""
        return len(self.participants)
