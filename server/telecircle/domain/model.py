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
    # Turned off by a clinician: not forwarded whatever the participant's own switch
    # says, until released (by the clinician, or by the participant where the room's
    # policy lets patients unmute themselves).
    audio_forced_off: bool = False
    video_forced_off: bool = False
    hand_raised_at: float | None = None
    # "I need a moment": seen by the clinicians only.
    needs_moment_since: float | None = None

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
    # Locked: nobody more is admitted from the lobby (knocking is still possible).
    locked: bool = False
    # Room policy: may a patient muted by a clinician unmute themselves?
    patients_may_unmute: bool = True

    def find(self, participant_id: ParticipantId) -> Participant | None:
        for participant in self.participants:
            if participant.id == participant_id:
                return participant
        return None

    def seats_taken(self) -> int:
        """Participants counted against the room limit: everyone past the lobby."""
        return sum(1 for p in self.participants if p.place is not Place.LOBBY)

    def hands(self) -> tuple[Participant, ...]:
        """Raised hands, in order of raising."""
        raised = [p for p in self.participants if p.hand_raised_at is not None]
        return tuple(sorted(raised, key=lambda p: (p.hand_raised_at or 0.0, p.id)))

    def waiting(self) -> tuple[Participant, ...]:
        """The lobby, in order of arrival."""
        return tuple(p for p in self.participants if p.place is Place.LOBBY)
