"""Converting domain values to what the database stores, and back.

Times: the domain passes UNIX epoch seconds as floats; the database holds UTC datetimes
(microsecond precision). Events: a kind (the event class's ``kind``), a time, and a JSON
payload of every other field, enums written as their values.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from telecircle.domain.commands import LeaveReason
from telecircle.domain.events import (
    Event,
    HandChanged,
    MediaChanged,
    MediaForced,
    MomentChanged,
    MovedToLobby,
    ParticipantAdmitted,
    ParticipantAway,
    ParticipantBack,
    ParticipantDenied,
    ParticipantJoined,
    ParticipantKnocked,
    ParticipantLeft,
    ParticipantRemoved,
    SessionEnded,
    SessionLocked,
)
from telecircle.domain.ids import ParticipantId


def to_utc(seconds: float) -> datetime:
    """UNIX epoch seconds as an aware UTC datetime. Raises ValueError if not finite."""
    if not math.isfinite(seconds):
        raise ValueError("timestamp must be a finite number of seconds")
    return datetime.fromtimestamp(seconds, tz=UTC)


def from_utc(moment: datetime) -> float:
    """An aware datetime as UNIX epoch seconds."""
    return moment.timestamp()


def encode_payload(event: Event) -> str:
    """The event's fields except ``at`` as compact JSON with sorted keys."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        if field.name == "at":
            continue
        value = getattr(event, field.name)
        fields[field.name] = value.value if isinstance(value, enum.Enum) else value
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_payload(payload: str) -> dict[str, Any]:
    value = json.loads(payload)
    if not isinstance(value, dict):
        raise ValueError("event payload is not a JSON object")
    return value


def decode_event(kind: str, at: float, payload: Mapping[str, Any]) -> Event:
    """Rebuild the domain event stored as ``kind``/``at``/``payload``.

    Raises ValueError for an unknown kind and KeyError/TypeError for a malformed payload.
    """
    if kind == SessionLocked.kind:
        return SessionLocked(bool(payload["locked"]), ParticipantId(str(payload["by"])), at)
    if kind == SessionEnded.kind:
        return SessionEnded(ParticipantId(str(payload["by"])), at)
    participant_id = ParticipantId(str(payload["participant_id"]))
    if kind == ParticipantJoined.kind:
        return ParticipantJoined(participant_id, str(payload["display_name"]), at)
    if kind == ParticipantKnocked.kind:
        return ParticipantKnocked(participant_id, str(payload["display_name"]), at)
    if kind == ParticipantAdmitted.kind:
        return ParticipantAdmitted(participant_id, ParticipantId(str(payload["by"])), at)
    if kind == ParticipantDenied.kind:
        return ParticipantDenied(participant_id, ParticipantId(str(payload["by"])), at)
    if kind == ParticipantLeft.kind:
        return ParticipantLeft(participant_id, LeaveReason(payload["reason"]), at)
    if kind == MediaChanged.kind:
        return MediaChanged(
            participant_id, bool(payload["audio_on"]), bool(payload["video_on"]), at
        )
    if kind == MediaForced.kind:
        return MediaForced(
            participant_id,
            ParticipantId(str(payload["by"])),
            bool(payload["audio_off"]),
            bool(payload["video_off"]),
            at,
        )
    if kind == HandChanged.kind:
        return HandChanged(participant_id, bool(payload["raised"]), at)
    if kind == MomentChanged.kind:
        return MomentChanged(participant_id, bool(payload["needed"]), at)
    if kind == MovedToLobby.kind:
        return MovedToLobby(participant_id, ParticipantId(str(payload["by"])), at)
    if kind == ParticipantRemoved.kind:
        return ParticipantRemoved(participant_id, ParticipantId(str(payload["by"])), at)
    if kind == ParticipantAway.kind:
        return ParticipantAway(participant_id, at)
    if kind == ParticipantBack.kind:
        return ParticipantBack(participant_id, at)
    raise ValueError(f"unknown event kind {kind!r}")
