"""Room state as an immutable value."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from telecircle.domain.ids import ParticipantId, RoomId, SessionId


class Place(enum.Enum):
    """Where a participant is. Later issues add pairs, segments and hold."""

    LOBBY = "lobby"
    PLENARY = "plenary"


class SeatRole(enum.Enum):
    """Why someone is in the room: clinicians run it and enter straight into the session;
    patients enter through the lobby."""

    CLINICIAN = "clinician"
    PATIENT = "patient"


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
    role: SeatRole = SeatRole.CLINICIAN
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
    # Seats outside the lobby for this session (its receive slots are sized by it); an
    # admit also respects the room's current limit, which may have been lowered since.
    participant_limit: int
    participants: tuple[Participant, ...] = field(default=())
    lobby_limit: int = 20

    def find(self, participant_id: ParticipantId) -> Participant | None:
        for participant in self.participants:
            if participant.id == participant_id:
                return participant
        return None

    def seats_taken(self) -> int:
        """Participants counted against the room limit: everyone past the lobby."""
        return sum(1 for p in self.participants if p.place is not Place.LOBBY)

    def waiting(self) -> tuple[Participant, ...]:
        """The lobby, in order of arrival."""
        return tuple(p for p in self.participants if p.place is Place.LOBBY)
