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


@dataclass(frozen=True, slots=True)
class Join:
    participant_id: ParticipantId
    display_name: str


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


Command = Join | Leave | SetOwnMedia | Disconnect | Resume | ExpireAway
