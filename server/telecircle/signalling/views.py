"""What each client is shown of the room: the roster and, per participant, their place
and the running countdown (clinicians also see everyone's place, the pairs and the
segment queue). Pure functions of the room state."""

from __future__ import annotations

from typing import Literal

from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import Place, RoomState, SeatRole
from telecircle.domain.notes import Note
from telecircle.domain.placement import Location, locations
from telecircle.signalling import messages as m


def participant_views(state: RoomState) -> list[m.ParticipantView]:
    """Everyone past the lobby (waiting patients are seen by clinicians only)."""
    return [
        m.ParticipantView(
            id=p.id,
            display_name=p.display_name,
            audio_on=p.audio_on,
            video_on=p.video_on,
            connected=not p.away,
            role="clinician" if p.role is SeatRole.CLINICIAN else "patient",
            audio_forced_off=p.audio_forced_off,
            video_forced_off=p.video_forced_off,
            hand_raised=p.hand_raised_at is not None,
            screen_on=p.screen_on,
        )
        for p in state.participants
        if p.place is not Place.LOBBY
    ]


def session_policy(state: RoomState) -> m.SessionPolicy:
    limits = state.limits
    return m.SessionPolicy(
        patients_may_unmute=state.patients_may_unmute,
        timers=m.TimerLimitsView(
            pairs_min_seconds=limits.breakout_min,
            pairs_max_seconds=limits.breakout_max,
            segment_min_seconds=limits.segment_min,
            segment_max_seconds=limits.segment_max,
            segment_default_seconds=limits.segment_default,
            warning_seconds=limits.warning_before,
            extension_max_seconds=limits.extension_max,
            pairs_message_max_chars=limits.message_max_chars,
        ),
    )


def activity_views(state: RoomState, now: float) -> dict[ParticipantId, m.ActivityEvent]:
    """The ``activity`` event of every participant past the lobby."""
    where = locations(state)
    timer = _timer(state, now)
    facilitator = _facilitator_view(state, where)
    views: dict[ParticipantId, m.ActivityEvent] = {}
    for p in state.participants:
        if p.place is Place.LOBBY:
            continue
        mine = where[p.id]
        group = mine.media_group
        with_ids = [
            str(other)
            for other, there in where.items()
            if other != p.id and group is not None and there.media_group == group
        ]
        views[p.id] = m.ActivityEvent(
            place=_place(mine),
            with_ids=with_ids,
            timer=timer,
            facilitator=facilitator if p.role is SeatRole.CLINICIAN else None,
        )
    return views


def pairs_audience(state: RoomState) -> list[ParticipantId]:
    """Who reads a message to the pairs: everyone in a pair, and the clinicians."""
    breakout = state.breakout
    if breakout is None:
        return []
    in_pairs = {member for group in breakout.groups for member in group}
    return [
        p.id
        for p in state.participants
        if p.id in in_pairs or (p.role is SeatRole.CLINICIAN and p.place is Place.PLENARY)
    ]


def _place(location: Location) -> m.PlaceView:
    return m.PlaceView(spot=location.spot.value, pair=location.pair)


def _timer(state: RoomState, now: float) -> m.TimerView | None:
    activity: Literal["pairs", "segment"]
    if state.breakout is not None:
        activity, ends_at, warned = "pairs", state.breakout.ends_at, state.breakout.warned
    elif state.segment is not None:
        activity, ends_at, warned = "segment", state.segment.ends_at, state.segment.warned
    else:
        return None
    return m.TimerView(activity=activity, remaining_seconds=max(0.0, ends_at - now), warned=warned)


def _facilitator_view(state: RoomState, where: dict[ParticipantId, Location]) -> m.FacilitatorView:
    breakout, segment = state.breakout, state.segment
    return m.FacilitatorView(
        places={str(pid): _place(location) for pid, location in where.items()},
        pairs=[] if breakout is None else [list(group) for group in breakout.groups],
        visits=(
            []
            if breakout is None
            else [m.VisitView(clinician_id=c, group=g) for c, g in breakout.visits]
        ),
        segment=(
            None
            if segment is None
            else m.SegmentView(
                clinician_id=segment.clinician,
                participant_id=segment.patient,
                others=segment.others.value,
                queue=list(segment.queue),
                done=list(segment.done),
            )
        ),
    )


def note_view(note: Note) -> m.NoteView:
    """The newest version of a note, for its author's notes panel."""
    latest = note.latest
    body = latest.body
    return m.NoteView(
        note_id=note.note_id,
        version=latest.version,
        created_at=note.created_at,
        saved_at=latest.saved_at,
        text=None if body is None else body.text,
        topic=None if body is None else body.topic,
        participant_ids=[] if body is None else list(body.participant_ids),
        unreadable=None if latest.unreadable is None else latest.unreadable.value,
    )
