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
    PairsEnded,
    PairsMessaged,
    PairsStarted,
    PairVisited,
    ParticipantAdmitted,
    ParticipantAway,
    ParticipantBack,
    ParticipantDenied,
    ParticipantJoined,
    ParticipantKnocked,
    ParticipantLeft,
    ParticipantRemoved,
    ScreenShared,
    SegmentEnded,
    SegmentQueued,
    SegmentStarted,
    SessionEnded,
    SessionLocked,
    TimerExtended,
    TimerWarned,
)
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import OthersDuringSegment


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
    unstored: tuple[str, ...] = getattr(type(event), "unstored", ())
    for field in dataclasses.fields(event):
        if field.name == "at" or field.name in unstored:
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
    activity = _decode_activity(kind, at, payload)
    if activity is not None:
        return activity
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
    if kind == ScreenShared.kind:
        return ScreenShared(participant_id, bool(payload["on"]), at)
    if kind == ParticipantAway.kind:
        return ParticipantAway(participant_id, at)
    if kind == ParticipantBack.kind:
        return ParticipantBack(participant_id, at)
    raise ValueError(f"unknown event kind {kind!r}")


def _decode_activity(kind: str, at: float, payload: Mapping[str, Any]) -> Event | None:
    """The breakout and segment events (None for any other kind)."""
    if kind == PairsStarted.kind:
        groups = tuple(
            tuple(ParticipantId(str(member)) for member in group) for group in payload["groups"]
        )
        return PairsStarted(_pid(payload["by"]), groups, float(payload["ends_at"]), at)
    if kind == PairVisited.kind:
        group = payload["group"]
        return PairVisited(_pid(payload["by"]), None if group is None else int(group), at)
    if kind == PairsMessaged.kind:
        return PairsMessaged(_pid(payload["by"]), "", at)  # the text is never stored
    if kind == PairsEnded.kind:
        return PairsEnded(_optional_pid(payload["by"]), at)
    if kind == SegmentStarted.kind:
        return SegmentStarted(
            _pid(payload["by"]),
            _pid(payload["participant_id"]),
            float(payload["ends_at"]),
            OthersDuringSegment(payload["others"]),
            at,
        )
    if kind == SegmentQueued.kind:
        return SegmentQueued(_pid(payload["by"]), _pid(payload["participant_id"]), at)
    if kind == SegmentEnded.kind:
        return SegmentEnded(_pid(payload["participant_id"]), _optional_pid(payload["by"]), at)
    if kind == TimerExtended.kind:
        return TimerExtended(
            str(payload["activity"]), _pid(payload["by"]), float(payload["ends_at"]), at
        )
    if kind == TimerWarned.kind:
        return TimerWarned(str(payload["activity"]), float(payload["ends_at"]), at)
    return None


def _pid(value: Any) -> ParticipantId:
    return ParticipantId(str(value))


def _optional_pid(value: Any) -> ParticipantId | None:
    return None if value is None else ParticipantId(str(value))
