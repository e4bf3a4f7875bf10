"""Who may receive a track. Derived from room state, never stored.

The SFU forwards a packet of ``track`` only to participants in ``audience(state, track)``.
"""

from __future__ import annotations

from collections.abc import Mapping

from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import RoomState, TrackKind, TrackRef
from telecircle.domain.placement import Location, locations


def audience(state: RoomState, track: TrackRef) -> frozenset[ParticipantId]:
    """Participants who may receive ``track`` now: everyone else in the owner's place
    (the plenary, their pair, their segment), while the owner has that track switched on
    and not forced off; nobody while the owner is in the lobby or on hold."""
    return _audience(state, track, locations(state))


def _audience(
    state: RoomState, track: TrackRef, where: Mapping[ParticipantId, Location]
) -> frozenset[ParticipantId]:
    owner = state.find(track.owner)
    if owner is None:
        return frozenset()
    group = where[owner.id].media_group
    if group is None:
        return frozenset()
    # A track its owner turned off is not forwarded at all, so nobody can receive it.
    # A clinician's forced mute or camera-off is enforced here, whatever the owner's
    # browser keeps sending.
    if track.kind is TrackKind.AUDIO and (not owner.audio_on or owner.audio_forced_off):
        return frozenset()
    if track.kind is TrackKind.VIDEO and (not owner.video_on or owner.video_forced_off):
        return frozenset()
    if track.kind is TrackKind.SCREEN and not owner.screen_on:
        return frozenset()
    return frozenset(
        p.id for p in state.participants if p.id != owner.id and where[p.id].media_group == group
    )


def all_audiences(state: RoomState) -> dict[TrackRef, frozenset[ParticipantId]]:
    """The audience of every track in the room (both kinds for every participant)."""
    where = locations(state)
    return {
        TrackRef(p.id, kind): _audience(state, TrackRef(p.id, kind), where)
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
