"""Events: what happened, as recorded on the session timeline."""

from __future__ import annotations

from dataclasses import dataclass

from telecircle.domain.commands import LeaveReason
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import OthersDuringSegment


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


@dataclass(frozen=True, slots=True)
class ScreenShared:
    participant_id: ParticipantId
    on: bool
    at: float

    kind = "screen_shared"


@dataclass(frozen=True, slots=True)
class PairsStarted:
    by: ParticipantId
    groups: tuple[tuple[ParticipantId, ...], ...]
    ends_at: float
    at: float

    kind = "pairs_started"


@dataclass(frozen=True, slots=True)
class PairVisited:
    """A clinician went into pair ``group``, or back to the plenary (None)."""

    by: ParticipantId
    group: int | None
    at: float

    kind = "pair_visited"


@dataclass(frozen=True, slots=True)
class PairsMessaged:
    """A message to every pair. Its text goes to the pairs and is not stored (only that
    a message was sent is on the timeline)."""

    by: ParticipantId
    text: str
    at: float

    kind = "pairs_messaged"
    # Fields told to the clients but never written to the database.
    unstored = ("text",)


@dataclass(frozen=True, slots=True)
class PairsEnded:
    """Pair work ended: early by a clinician, or when its time ran out (``by`` None)."""

    by: ParticipantId | None
    at: float

    kind = "pairs_ended"


@dataclass(frozen=True, slots=True)
class SegmentStarted:
    by: ParticipantId
    participant_id: ParticipantId
    ends_at: float
    others: OthersDuringSegment
    at: float

    kind = "segment_started"


@dataclass(frozen=True, slots=True)
class SegmentQueued:
    by: ParticipantId
    participant_id: ParticipantId
    at: float

    kind = "segment_queued"


@dataclass(frozen=True, slots=True)
class SegmentEnded:
    """One person's segment ended (by a clinician, or when its time ran out: None)."""

    participant_id: ParticipantId
    by: ParticipantId | None
    at: float

    kind = "segment_ended"


@dataclass(frozen=True, slots=True)
class TimerExtended:
    """The running activity ("pairs" or "segment") now ends at ``ends_at``."""

    activity: str
    by: ParticipantId
    ends_at: float
    at: float

    kind = "timer_extended"


@dataclass(frozen=True, slots=True)
class TimerWarned:
    """The running activity ends soon (at ``ends_at``)."""

    activity: str
    ends_at: float
    at: float

    kind = "timer_warned"


ActivityEvent = (
    PairsStarted
    | PairVisited
    | PairsMessaged
    | PairsEnded
    | SegmentStarted
    | SegmentQueued
    | SegmentEnded
    | TimerExtended
    | TimerWarned
)

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
    | ScreenShared
    | ActivityEvent
)
