"""Who may receive a track. Derived from room state, never stored.

The SFU forwards a packet of ``track`` only to participants in ``audience(state, track)``.
"""

from __future__ import annotations

from collections.abc import Mapping

from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import Place, RoomState, SeatRole, TrackKind, TrackRef


def audience(state: RoomState, track: TrackRef) -> frozenset[ParticipantId]:
    """Participants who may receive ``track`` now: everyone else in the plenary, while
    the owner is in the plenary with that track switched on, and — for a patient's
    track — while a clinician is there; nobody otherwise."""
    owner = state.find(track.owner)
    if owner is None or owner.place is not Place.PLENARY:
        return frozenset()
    # Patients are not left alone together: with no clinician present (not yet come,
    # or dropped out and within their reconnect window) the group is on hold.
    if owner.role is SeatRole.PATIENT and not clinician_present(state):
        return frozenset()
    # A track its owner turned off is not forwarded at all, so nobody can receive it.
    # A clinician's forced mute or camera-off is enforced here, whatever the owner's
    # browser keeps sending.
    if track.kind is TrackKind.AUDIO and (not owner.audio_on or owner.audio_forced_off):
        return frozenset()
    if track.kind is TrackKind.VIDEO and (not owner.video_on or owner.video_forced_off):
        return frozenset()
    return frozenset(
        p.id for p in state.participants if p.place is Place.PLENARY and p.id != owner.id
    )


def clinician_present(state: RoomState) -> bool:
    """Whether a clinician is in the plenary with a live connection."""
    return any(
        p.role is SeatRole.CLINICIAN and p.place is Place.PLENARY and not p.away
        for p in state.participants
    )


def all_audiences(state: RoomState) -> dict[TrackRef, frozenset[ParticipantId]]:
    """The audience of every track in the room (both kinds for every participant)."""
    return {
        TrackRef(p.id, kind): audience(state, TrackRef(p.id, kind))
        for p in state.participants
        for kind in TrackKind
    }


def only_restricts(
    before: Mapping[TrackRef, frozenset[ParticipantId]],
    after: Mapping[TrackRef, frozenset[ParticipantId]],
) -> bool:
    """True when ``after`` gives no one a track they did not get ``before`` (it only
    takes listeners away, or changes nothing)."""
    return all(listeners <= before.get(track, frozenset()) for track, listeners in after.items())
