"""Commands: what someone asks the room to do."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from telecircle.domain.ids import ParticipantId


class LeaveReason(enum.Enum):
    LEFT = "left"
    CONNECTION_LOST = "connection_lost"  # away for longer than the reconnect window
    SERVER_SHUTDOWN = "server_shutdown"
    REMOVED = "removed"  # the server removed the participant (e.g. an abusive connection)
    DENIED = "denied"  # a clinician turned them away from the lobby
    REVOKED = "revoked"  # their invite was withdrawn or their account disabled
    SEAT_MOVED = "seat_moved"  # their personal link was opened on another device


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


Command = (
    Join | Knock | Admit | AdmitAll | Deny | Leave | SetOwnMedia | Disconnect | Resume | ExpireAway
)
