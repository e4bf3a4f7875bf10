"""Room state as an immutable value."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from telecircle.domain.ids import ParticipantId, RoomId, SessionId


class Place(enum.Enum):
    """Whether a participant is past the lobby. Where in the session they are (the
    plenary, a pair, a segment, on hold) follows from the room's activities: see
    ``telecircle.domain.placement``."""

    LOBBY = "lobby"
    PLENARY = "plenary"


class OthersDuringSegment(enum.Enum):
    """What the rest of the group does while a clinician works with one person."""

    HOLD = "hold"  # a hold screen: no media at all
    PLENARY = "plenary"  # together in the plenary, led by a co-facilitator if one is there


class SeatRole(enum.Enum):
    """Why someone is in the room: clinicians run it and enter straight into the session;
    patients enter through the lobby."""

    CLINICIAN = "clinician"
    PATIENT = "patient"


class TrackKind(enum.Enum):
    AUDIO = "audio"
    VIDEO = "video"
    # A clinician's shared screen (a second video track of their publish connection).
    SCREEN = "screen"


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
    # Sharing their screen (clinicians only; one at a time in a room).
    screen_on: bool = False

    @property
    def away(self) -> bool:
        return self.away_since is not None

    @property
    def admitted_patient(self) -> bool:
        """A patient past the lobby (who pairs and segments can be with)."""
        return self.role is SeatRole.PATIENT and self.place is Place.PLENARY


@dataclass(frozen=True, slots=True)
class TimerLimits:
    """The bounds of the facilitator's timed activities, in seconds (configured by the
    server's settings; the defaults are the clinical ones)."""

    breakout_min: float = 60.0
    breakout_max: float = 3600.0
    segment_min: float = 600.0
    segment_max: float = 1200.0
    segment_default: float = 900.0
    # Everyone in the activity is warned this long before its end.
    warning_before: float = 60.0
    # One extension adds at most this much.
    extension_max: float = 1800.0
    # A message to all pairs.
    message_max_chars: int = 280
    # People waiting for an individual segment, after the current one.
    queue_max: int = 20


@dataclass(frozen=True, slots=True)
class Breakout:
    """Pair work: ``groups`` are pairs (and at most a trio); media flows only inside a
    group and to the clinicians visiting it. A group whose members left is emptied
    (not removed) so group numbers stay stable for the whole breakout."""

    groups: tuple[tuple[ParticipantId, ...], ...]
    started_at: float
    ends_at: float
    warned: bool = False
    # Which group each visiting clinician is in (ordered by clinician id).
    visits: tuple[tuple[ParticipantId, int], ...] = ()

    def group_of(self, participant_id: ParticipantId) -> int | None:
        for index, members in enumerate(self.groups):
            if participant_id in members:
                return index
        return None

    def visiting(self, participant_id: ParticipantId) -> int | None:
        for clinician, index in self.visits:
            if clinician == participant_id:
                return index
        return None


@dataclass(frozen=True, slots=True)
class Segment:
    """A clinician working one-to-one with a patient; ``queue`` is who comes next (in
    order), ``done`` who has had their segment in this run."""

    clinician: ParticipantId
    patient: ParticipantId
    started_at: float
    ends_at: float
    # Each person's time in this run (the next person in the queue gets as much).
    duration: float
    others: OthersDuringSegment
    queue: tuple[ParticipantId, ...] = ()
    done: tuple[ParticipantId, ...] = ()
    warned: bool = False


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
    limits: TimerLimits = field(default_factory=TimerLimits)
    # At most one timed activity runs at a time.
    breakout: Breakout | None = None
    segment: Segment | None = None

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

    def admitted_patients(self) -> tuple[Participant, ...]:
        """Patients past the lobby, in order of arrival."""
        return tuple(p for p in self.participants if p.admitted_patient)

    def waiting(self) -> tuple[Participant, ...]:
        """The lobby, in order of arrival."""
        return tuple(p for p in self.participants if p.place is Place.LOBBY)
