"""Where each participant is in the session, derived from the room's activities.

Places: the lobby; the plenary; pair N of a breakout (a visiting clinician is in the
pair they visit); a one-to-one segment; on hold. Media flows only between people in the
same place (see ``telecircle.domain.audience``); the lobby and hold have no media.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import OthersDuringSegment, Participant, Place, RoomState, SeatRole


class Spot(enum.Enum):
    LOBBY = "lobby"
    PLENARY = "plenary"
    PAIR = "pair"
    SEGMENT = "segment"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class Location:
    spot: Spot
    # The group's number while in a pair (0-based).
    pair: int | None = None

    @property
    def media_group(self) -> str | None:
        """Who shares media: people with the same media group; None shares with nobody."""
        if self.spot is Spot.PLENARY:
            return "plenary"
        if self.spot is Spot.SEGMENT:
            return "segment"
        if self.spot is Spot.PAIR:
            return f"pair:{self.pair}"
        return None


LOBBY = Location(Spot.LOBBY)
PLENARY = Location(Spot.PLENARY)
SEGMENT = Location(Spot.SEGMENT)
HOLD = Location(Spot.HOLD)


def locations(state: RoomState) -> dict[ParticipantId, Location]:
    """Everyone's location."""
    leader = _plenary_led(state)
    return {p.id: _locate(state, p, leader) for p in state.participants}


def location(state: RoomState, participant: Participant) -> Location:
    return _locate(state, participant, _plenary_led(state))


def _locate(state: RoomState, p: Participant, plenary_led: bool) -> Location:
    if p.place is Place.LOBBY:
        return LOBBY
    segment = state.segment
    if segment is not None and p.id in (segment.clinician, segment.patient):
        return SEGMENT
    breakout = state.breakout
    if breakout is not None:
        group = breakout.group_of(p.id)
        if group is None:
            group = breakout.visiting(p.id)
        if group is not None:
            return Location(Spot.PAIR, group)
    if p.role is SeatRole.PATIENT:
        if segment is not None and segment.others is OthersDuringSegment.HOLD:
            return HOLD
        # Patients are not left alone together in the plenary (a facilitator not yet
        # come, or dropped out): unless a facilitator chose to let the group go on
        # together during a segment, no clinician there means hold.
        chosen = segment is not None and segment.others is OthersDuringSegment.PLENARY
        if not chosen and not plenary_led:
            return HOLD
    return PLENARY


def _plenary_led(state: RoomState) -> bool:
    """Whether a clinician with a live connection is in the plenary (not in a segment
    and not visiting a pair)."""
    segment, breakout = state.segment, state.breakout
    for p in state.participants:
        if p.role is not SeatRole.CLINICIAN or p.place is not Place.PLENARY or p.away:
            continue
        if segment is not None and p.id == segment.clinician:
            continue
        if breakout is not None and breakout.visiting(p.id) is not None:
            continue
        return True
    return False
