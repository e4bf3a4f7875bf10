"""Commands: what someone asks the room to do."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import OthersDuringSegment


class LeaveReason(enum.Enum):
    LEFT = "left"
    CONNECTION_LOST = "connection_lost"  # away for longer than the reconnect window
    SERVER_SHUTDOWN = "server_shutdown"
    REMOVED = "removed"  # the server removed the participant (e.g. an abusive connection)
    DENIED = "denied"  # a clinician turned them away from the lobby
    REVOKED = "revoked"  # their invite was withdrawn or their account disabled
    SEAT_MOVED = "seat_moved"  # their personal link was opened on another device
    SESSION_ENDED = "session_ended"  # a clinician ended the session for everyone
    # Not the end of a seat: the end of an attendance interval when a clinician sends
    # someone back to the lobby.
    MOVED_TO_LOBBY = "moved_to_lobby"


@dataclass(frozen=True, slots=True)
class Join:
    """A clinician enters the session directly (patients knock; see Knock). ``limit``
    is the room's limit now, when known (it may have been lowered since)."""

    participant_id: ParticipantId
    display_name: str
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Knock:
    """A patient arrives in the lobby (a clinician admits or denies them)."""

    participant_id: ParticipantId
    display_name: str


@dataclass(frozen=True, slots=True)
class Admit:
    """A clinician (``by``) lets a waiting patient into the session. ``limit`` is the
    room's limit now (it may have been lowered since the session opened)."""

    participant_id: ParticipantId
    by: ParticipantId
    limit: int


@dataclass(frozen=True, slots=True)
class AdmitAll:
    """A clinician lets everyone waiting in, in order of arrival, while seats last."""

    by: ParticipantId
    limit: int


@dataclass(frozen=True, slots=True)
class Deny:
    """A clinician turns a waiting patient away."""

    participant_id: ParticipantId
    by: ParticipantId


@dataclass(frozen=True, slots=True)
class Leave:
    participant_id: ParticipantId
    reason: LeaveReason


@dataclass(frozen=True, slots=True)
class SetOwnMedia:
    """A participant turns their own microphone and/or camera on or off."""

    participant_id: ParticipantId
    audio_on: bool | None = None
    video_on: bool | None = None


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The participant's connection dropped without Leave: they keep their seat, away."""

    participant_id: ParticipantId


@dataclass(frozen=True, slots=True)
class Resume:
    """The participant is back on a new connection, into the same seat and place."""

    participant_id: ParticipantId


@dataclass(frozen=True, slots=True)
class ExpireAway:
    """The reconnect window (``grace`` seconds) may have run out for this participant."""

    participant_id: ParticipantId
    grace: float


@dataclass(frozen=True, slots=True)
class ForceMedia:
    """A clinician turns a participant's microphone and/or camera off (True) or
    releases that (False); None leaves it as it is."""

    participant_id: ParticipantId
    by: ParticipantId
    audio_off: bool | None = None
    video_off: bool | None = None


@dataclass(frozen=True, slots=True)
class MuteAll:
    """A clinician mutes every patient in the session."""

    by: ParticipantId


@dataclass(frozen=True, slots=True)
class RaiseHand:
    """A participant raises or lowers their hand (``by`` a clinician may lower it)."""

    participant_id: ParticipantId
    raised: bool
    by: ParticipantId | None = None


@dataclass(frozen=True, slots=True)
class NeedMoment:
    """ "I need a moment" (private to the clinicians), set or cleared."""

    participant_id: ParticipantId
    needed: bool
    by: ParticipantId | None = None


@dataclass(frozen=True, slots=True)
class MoveToLobby:
    """A clinician sends a patient back to the lobby."""

    participant_id: ParticipantId
    by: ParticipantId


@dataclass(frozen=True, slots=True)
class Remove:
    """A clinician removes a participant from the session."""

    participant_id: ParticipantId
    by: ParticipantId


@dataclass(frozen=True, slots=True)
class Lock:
    """A clinician locks (nobody more is admitted) or unlocks the session."""

    by: ParticipantId
    locked: bool


@dataclass(frozen=True, slots=True)
class EndSession:
    """A clinician ends the session for everyone."""

    by: ParticipantId


@dataclass(frozen=True, slots=True)
class ShareScreen:
    """A clinician starts or stops sharing their screen."""

    participant_id: ParticipantId
    on: bool


@dataclass(frozen=True, slots=True)
class StartPairs:
    """A clinician starts pair work for ``duration`` seconds with these groups (pairs,
    or a trio for an odd number); patients in no group stay in the plenary."""

    by: ParticipantId
    duration: float
    groups: tuple[tuple[ParticipantId, ...], ...]


@dataclass(frozen=True, slots=True)
class VisitPair:
    """A clinician joins pair ``group`` (they see and hear it, and only it hears them),
    or goes back to the plenary (None)."""

    by: ParticipantId
    group: int | None


@dataclass(frozen=True, slots=True)
class MessagePairs:
    """A short message from a clinician to every pair."""

    by: ParticipantId
    text: str


@dataclass(frozen=True, slots=True)
class EndPairs:
    """End pair work early: everyone back to the plenary."""

    by: ParticipantId


@dataclass(frozen=True, slots=True)
class Extend:
    """Give the running pair work or segment ``seconds`` more."""

    by: ParticipantId
    seconds: float


@dataclass(frozen=True, slots=True)
class StartSegment:
    """The clinician ``by`` works one-to-one with the first of ``participants``, then
    each of the rest in turn, ``duration`` seconds each (None: the default)."""

    by: ParticipantId
    participants: tuple[ParticipantId, ...]
    others: OthersDuringSegment
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class QueueSegment:
    """Add a patient to the end of the running segment's queue."""

    by: ParticipantId
    participant_id: ParticipantId


@dataclass(frozen=True, slots=True)
class NextSegment:
    """End the current person's segment now and go on with the queue."""

    by: ParticipantId


@dataclass(frozen=True, slots=True)
class EndSegment:
    """End the segment and its queue: everyone back to the plenary."""

    by: ParticipantId


@dataclass(frozen=True, slots=True)
class TimersDue:
    """The server's timer fired: apply whatever warning or end is due by now."""


ActivityCommand = (
    StartPairs
    | VisitPair
    | MessagePairs
    | EndPairs
    | Extend
    | StartSegment
    | QueueSegment
    | NextSegment
    | EndSegment
    | TimersDue
)

ControlCommand = (
    ForceMedia
    | MuteAll
    | RaiseHand
    | NeedMoment
    | MoveToLobby
    | Remove
    | Lock
    | EndSession
    | ShareScreen
    | ActivityCommand
)

Command = (
    Join
    | Knock
    | Admit
    | AdmitAll
    | Deny
    | Leave
    | SetOwnMedia
    | Disconnect
    | Resume
    | ExpireAway
    | ControlCommand
)
