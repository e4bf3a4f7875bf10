"""An open session's live state as JSON, and back (see stores.Snapshot).

The body holds the room state (seats, places, forced media, hands, moments, lock, the
running pair work or segment) and whose each seat is (its seat key and credential), so
that a restarted server gives people back their own seats. It holds no more than the
session's timeline already does (display names), and never check-ins (memory only).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telecircle.domain.ids import ParticipantId, RoomId, SessionId
from telecircle.domain.model import (
    Breakout,
    OthersDuringSegment,
    Participant,
    Place,
    RoomState,
    SeatRole,
    Segment,
    TimerLimits,
)

FORMAT = 1


@dataclass(frozen=True, slots=True)
class SeatOwner:
    """Whose a seat is: the person's seat key, and what proved it (a pass id)."""

    key: str
    credential: str


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    state: RoomState
    owners: Mapping[ParticipantId, SeatOwner]
    # Seat keys turned away or removed in this session.
    denied: frozenset[str]


class SnapshotError(ValueError):
    """A snapshot that cannot be read back (a newer format, or damaged)."""


def encode_snapshot(snapshot: LiveSnapshot) -> str:
    state = snapshot.state
    body: dict[str, Any] = {
        "format": FORMAT,
        "room_id": state.room_id,
        "session_id": state.session_id,
        "participant_limit": state.participant_limit,
        "lobby_limit": state.lobby_limit,
        "locked": state.locked,
        "patients_may_unmute": state.patients_may_unmute,
        "participants": [_participant(p, snapshot.owners.get(p.id)) for p in state.participants],
        "breakout": None if state.breakout is None else dataclasses.asdict(state.breakout),
        "segment": None if state.segment is None else _segment(state.segment),
        "denied": sorted(snapshot.denied),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_snapshot(text: str, limits: TimerLimits) -> LiveSnapshot:
    """Read a snapshot back (with today's timer ``limits``). Raises SnapshotError."""
    try:
        body = json.loads(text)
        if body.get("format") != FORMAT:
            raise SnapshotError(f"unknown snapshot format {body.get('format')!r}")
        owners: dict[ParticipantId, SeatOwner] = {}
        participants = []
        for item in body["participants"]:
            participant = Participant(
                id=ParticipantId(str(item["id"])),
                display_name=str(item["display_name"]),
                place=Place(item["place"]),
                joined_at=float(item["joined_at"]),
                role=SeatRole(item["role"]),
                audio_on=bool(item["audio_on"]),
                video_on=bool(item["video_on"]),
                away_since=_float_or_none(item["away_since"]),
                audio_forced_off=bool(item["audio_forced_off"]),
                video_forced_off=bool(item["video_forced_off"]),
                hand_raised_at=_float_or_none(item["hand_raised_at"]),
                needs_moment_since=_float_or_none(item["needs_moment_since"]),
                screen_on=bool(item.get("screen_on", False)),
            )
            participants.append(participant)
            if item.get("key"):
                owners[participant.id] = SeatOwner(str(item["key"]), str(item["credential"]))
        state = RoomState(
            room_id=RoomId(str(body["room_id"])),
            session_id=SessionId(str(body["session_id"])),
            participant_limit=int(body["participant_limit"]),
            participants=tuple(participants),
            lobby_limit=int(body["lobby_limit"]),
            locked=bool(body["locked"]),
            patients_may_unmute=bool(body["patients_may_unmute"]),
            limits=limits,
            breakout=_breakout(body["breakout"]),
            segment=_decode_segment(body["segment"]),
        )
        return LiveSnapshot(state, owners, frozenset(str(k) for k in body["denied"]))
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"damaged snapshot: {type(exc).__name__}") from None


def _participant(p: Participant, owner: SeatOwner | None) -> dict[str, Any]:
    item = {field.name: getattr(p, field.name) for field in dataclasses.fields(Participant)}
    item["place"] = p.place.value
    item["role"] = p.role.value
    item["key"] = None if owner is None else owner.key
    item["credential"] = None if owner is None else owner.credential
    return item


def _segment(segment: Segment) -> dict[str, Any]:
    item = dataclasses.asdict(segment)
    item["others"] = segment.others.value
    return item


def _breakout(item: Any) -> Breakout | None:
    if item is None:
        return None
    return Breakout(
        groups=tuple(tuple(ParticipantId(str(m)) for m in group) for group in item["groups"]),
        started_at=float(item["started_at"]),
        ends_at=float(item["ends_at"]),
        warned=bool(item["warned"]),
        visits=tuple((ParticipantId(str(c)), int(g)) for c, g in item["visits"]),
    )


def _decode_segment(item: Any) -> Segment | None:
    if item is None:
        return None
    return Segment(
        clinician=ParticipantId(str(item["clinician"])),
        patient=ParticipantId(str(item["patient"])),
        started_at=float(item["started_at"]),
        ends_at=float(item["ends_at"]),
        duration=float(item["duration"]),
        others=OthersDuringSegment(item["others"]),
        queue=tuple(ParticipantId(str(p)) for p in item["queue"]),
        done=tuple(ParticipantId(str(p)) for p in item["done"]),
        warned=bool(item["warned"]),
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
