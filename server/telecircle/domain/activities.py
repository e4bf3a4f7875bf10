"""The facilitator's timed activities: breakout pairs and individual segments.

Both change only where people are (see ``placement``), so the SFU re-routes through the
audience without any renegotiation. Their timers are values here (``ends_at``); the
service sleeps until :func:`next_deadline` and then applies ``TimersDue``. After every
command :func:`tidy` takes people who are no longer in the session out of the
activities, so a pair never waits on someone who left and a segment goes on with the
queue when its person is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from telecircle.domain import seats
from telecircle.domain.commands import (
    ActivityCommand,
    EndPairs,
    Extend,
    MessagePairs,
    NextSegment,
    QueueSegment,
    StartPairs,
    StartSegment,
    TimersDue,
    VisitPair,
)
from telecircle.domain.errors import ActivityConflict, InvalidCommand
from telecircle.domain.events import (
    Event,
    PairsEnded,
    PairsMessaged,
    PairsStarted,
    PairVisited,
    ScreenShared,
    SegmentEnded,
    SegmentQueued,
    SegmentStarted,
    TimerExtended,
    TimerWarned,
)
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import Breakout, Participant, Place, RoomState, Segment
from telecircle.domain.placement import locations

Decision = tuple[RoomState, list[Event]]

PAIRS = "pairs"
SEGMENT = "segment"


def pair_up(people: Sequence[ParticipantId]) -> tuple[tuple[ParticipantId, ...], ...]:
    """Pairs in the given order; an odd last person makes the last pair a trio."""
    if len(people) < 2:
        raise InvalidCommand("Pair work needs at least two participants in the session.")
    groups = [tuple(people[i : i + 2]) for i in range(0, len(people) - 1, 2)]
    if len(people) % 2:
        groups[-1] = (*groups[-1], people[-1])
    return tuple(groups)


def decide_activity(state: RoomState, command: ActivityCommand, now: float) -> Decision:
    if isinstance(command, TimersDue):
        return timers_due(state, now)
    by = seats.clinician(state, command.by)
    if isinstance(command, StartPairs):
        return _start_pairs(state, command, now)
    if isinstance(command, VisitPair):
        return _visit(state, command, now)
    if isinstance(command, MessagePairs):
        return _message(state, command, now)
    if isinstance(command, EndPairs):
        _running_pairs(state)
        return replace(state, breakout=None), [PairsEnded(by.id, now)]
    if isinstance(command, Extend):
        return _extend(state, command, now)
    if isinstance(command, StartSegment):
        return _start_segment(state, command, now)
    if isinstance(command, QueueSegment):
        return _queue(state, command, now)
    if isinstance(command, NextSegment):
        return _advance(state, _running_segment(state), by.id, now)
    segment = _running_segment(state)
    return replace(state, segment=None), [SegmentEnded(segment.patient, by.id, now)]


def next_deadline(state: RoomState) -> float | None:
    """When the next warning or end is due, or None with nothing running."""
    due = [
        activity.ends_at if activity.warned else activity.ends_at - state.limits.warning_before
        for activity in (state.breakout, state.segment)
        if activity is not None
    ]
    return min(due) if due else None


def timers_due(state: RoomState, now: float) -> Decision:
    """Warnings and ends that are due by ``now``."""
    events: list[Event] = []
    warn = state.limits.warning_before
    breakout = state.breakout
    if breakout is not None:
        if now >= breakout.ends_at:
            state = replace(state, breakout=None)
            events.append(PairsEnded(None, now))
        elif not breakout.warned and now >= breakout.ends_at - warn:
            state = replace(state, breakout=replace(breakout, warned=True))
            events.append(TimerWarned(PAIRS, breakout.ends_at, now))
    segment = state.segment
    if segment is not None:
        if now >= segment.ends_at:
            state, more = _advance(state, segment, None, now)
            events += more
        elif not segment.warned and now >= segment.ends_at - warn:
            state = replace(state, segment=replace(segment, warned=True))
            events.append(TimerWarned(SEGMENT, segment.ends_at, now))
    return state, events


def shift_timers(state: RoomState, seconds: float) -> RoomState:
    """Every running timer moved ``seconds`` later (a server restart resumes the time
    that was left when it stopped)."""
    breakout, segment = state.breakout, state.segment
    if breakout is not None:
        breakout = replace(
            breakout, started_at=breakout.started_at + seconds, ends_at=breakout.ends_at + seconds
        )
    if segment is not None:
        segment = replace(
            segment, started_at=segment.started_at + seconds, ends_at=segment.ends_at + seconds
        )
    return replace(state, breakout=breakout, segment=segment)


def tidy(state: RoomState, now: float) -> Decision:
    """Take people no longer past the lobby out of the activities (see module doc)."""
    present = {p.id for p in state.participants if p.place is Place.PLENARY}
    if not present:
        # The session is over (or everyone is in the lobby): nothing left to run.
        return replace(state, breakout=None, segment=None), []
    events: list[Event] = []
    breakout = state.breakout
    if breakout is not None:
        groups = tuple(_kept(members, present) for members in breakout.groups)
        visits = tuple((c, g) for c, g in breakout.visits if c in present and groups[g])
        if not any(groups):
            state = replace(state, breakout=None)
            events.append(PairsEnded(None, now))
        elif (groups, visits) != (breakout.groups, breakout.visits):
            state = replace(state, breakout=replace(breakout, groups=groups, visits=visits))
    segment = state.segment
    if segment is not None:
        queue = tuple(p for p in segment.queue if p in present)
        if segment.clinician not in present:
            state = replace(state, segment=None)
            if segment.patient in present:
                events.append(SegmentEnded(segment.patient, None, now))
        elif segment.patient not in present:
            state, more = _advance(state, replace(segment, queue=queue), None, now)
            events += more
        elif queue != segment.queue:
            state = replace(state, segment=replace(segment, queue=queue))
    return state, events


def stop_moved_screens(before: RoomState, after: RoomState, now: float) -> Decision:
    """A shared screen stops when its sharer's place changes (a timer ends the segment
    or the pairs, a visit, a move): it was shown to the people of one place and must
    not follow the sharer to others. (A dropped connection does not stop it: the page
    comes back and goes on sharing; meanwhile another clinician may take over.)"""
    if not any(p.screen_on for p in before.participants):
        return after, []  # the usual case: no places to compare
    was = locations(before)
    now_at = locations(after)
    events: list[Event] = []
    for p in after.participants:
        earlier = before.find(p.id)
        if not p.screen_on or earlier is None or not earlier.screen_on:
            continue
        if was[p.id].media_group != now_at[p.id].media_group:
            after = seats.update(after, replace(p, screen_on=False))
            events.append(ScreenShared(p.id, False, now))
    return after, events


def _kept(
    members: tuple[ParticipantId, ...], present: set[ParticipantId]
) -> tuple[ParticipantId, ...]:
    """What is left of a group: nobody alone in a pair (a lone member goes back to the
    plenary, the group stays empty so numbers do not shift)."""
    left = tuple(m for m in members if m in present)
    return left if len(left) >= 2 else ()


# ---- pairs ------------------------------------------------------------------------------


def _start_pairs(state: RoomState, command: StartPairs, now: float) -> Decision:
    _nothing_running(state)
    limits = state.limits
    _check_duration(command.duration, limits.breakout_min, limits.breakout_max, "Pair work")
    groups = command.groups
    if not groups:
        raise InvalidCommand("Make at least one pair.")
    seen: set[ParticipantId] = set()
    for members in groups:
        if not 2 <= len(members) <= 3:
            raise InvalidCommand("Each group is a pair, or a trio when the number is odd.")
        for member in members:
            person = state.find(member)
            if not _in_session_patient(person):
                raise InvalidCommand("Only patients in the session can be put in pairs.")
            if member in seen:
                raise InvalidCommand("Someone is in two pairs.")
            seen.add(member)
    ends_at = now + command.duration
    breakout = Breakout(
        groups=groups,
        started_at=now,
        ends_at=ends_at,
        warned=command.duration <= limits.warning_before,
    )
    # Hands and moments stay: the clinicians still see them during pair work.
    return replace(state, breakout=breakout), [PairsStarted(command.by, groups, ends_at, now)]


def _visit(state: RoomState, command: VisitPair, now: float) -> Decision:
    breakout = _running_pairs(state)
    if command.group is not None and not (
        0 <= command.group < len(breakout.groups) and breakout.groups[command.group]
    ):
        raise InvalidCommand("There is no such pair.")
    if breakout.visiting(command.by) == command.group:
        return state, []
    visits = tuple(sorted((c, g) for c, g in breakout.visits if c != command.by))
    if command.group is not None:
        visits = tuple(sorted((*visits, (command.by, command.group))))
    return replace(state, breakout=replace(breakout, visits=visits)), [
        PairVisited(command.by, command.group, now)
    ]


def _message(state: RoomState, command: MessagePairs, now: float) -> Decision:
    _running_pairs(state)
    text = " ".join(command.text.split())
    if not text:
        raise InvalidCommand("Write a message first.")
    if not text.isprintable():
        raise InvalidCommand("Messages may not contain control characters.")
    limit = state.limits.message_max_chars
    if len(text) > limit:
        raise InvalidCommand(f"Messages to the pairs are at most {limit} characters.")
    return state, [PairsMessaged(command.by, text, now)]


def _running_pairs(state: RoomState) -> Breakout:
    if state.breakout is None:
        raise ActivityConflict("Pair work is not running.")
    return state.breakout


# ---- segments ---------------------------------------------------------------------------


def _start_segment(state: RoomState, command: StartSegment, now: float) -> Decision:
    _nothing_running(state)
    limits = state.limits
    duration = limits.segment_default if command.duration is None else command.duration
    _check_duration(duration, limits.segment_min, limits.segment_max, "A segment")
    people = command.participants
    if not people:
        raise InvalidCommand("Choose who the segment is with.")
    if len(people) > limits.queue_max + 1:
        raise InvalidCommand(f"At most {limits.queue_max} people can wait in the queue.")
    if len(set(people)) != len(people):
        raise InvalidCommand("Someone is in the queue twice.")
    for pid in people:
        if not _in_session_patient(state.find(pid)):
            raise InvalidCommand("Segments are with patients in the session.")
    segment = Segment(
        clinician=command.by,
        patient=people[0],
        started_at=now,
        ends_at=now + duration,
        duration=duration,
        others=command.others,
        queue=people[1:],
        warned=duration <= limits.warning_before,
    )
    return replace(state, segment=segment), [
        SegmentStarted(command.by, people[0], segment.ends_at, command.others, now)
    ]


def _queue(state: RoomState, command: QueueSegment, now: float) -> Decision:
    segment = _running_segment(state)
    if not _in_session_patient(state.find(command.participant_id)):
        raise InvalidCommand("Segments are with patients in the session.")
    if command.participant_id == segment.patient or command.participant_id in segment.queue:
        return state, []
    if len(segment.queue) >= state.limits.queue_max:
        raise InvalidCommand(f"At most {state.limits.queue_max} people can wait in the queue.")
    queued = replace(segment, queue=(*segment.queue, command.participant_id))
    return replace(state, segment=queued), [SegmentQueued(command.by, command.participant_id, now)]


def _advance(state: RoomState, segment: Segment, by: ParticipantId | None, now: float) -> Decision:
    """The current person's segment ends; the next in the queue starts, if any."""
    events: list[Event] = []
    done = segment.done
    if state.find(segment.patient) is not None:
        events.append(SegmentEnded(segment.patient, by, now))
        done = (*done, segment.patient)
    if not segment.queue:
        return replace(state, segment=None), events
    following = replace(
        segment,
        patient=segment.queue[0],
        queue=segment.queue[1:],
        done=done,
        started_at=now,
        ends_at=now + segment.duration,
        warned=segment.duration <= state.limits.warning_before,
    )
    events.append(
        SegmentStarted(segment.clinician, following.patient, following.ends_at, segment.others, now)
    )
    return replace(state, segment=following), events


def _running_segment(state: RoomState) -> Segment:
    if state.segment is None:
        raise ActivityConflict("No segment is running.")
    return state.segment


# ---- shared -----------------------------------------------------------------------------


def _extend(state: RoomState, command: Extend, now: float) -> Decision:
    limits = state.limits
    if not 0 < command.seconds <= limits.extension_max:
        raise InvalidCommand(
            f"Extend by up to {int(limits.extension_max // 60)} minutes at a time."
        )
    warned_until = limits.warning_before
    if state.breakout is not None:
        b = state.breakout
        ends_at = b.ends_at + command.seconds
        if ends_at - b.started_at > limits.breakout_max:
            raise InvalidCommand("Pair work cannot last that long.")
        extended = replace(b, ends_at=ends_at, warned=b.warned and ends_at - now <= warned_until)
        return replace(state, breakout=extended), [TimerExtended(PAIRS, command.by, ends_at, now)]
    segment = _running_segment(state)
    ends_at = segment.ends_at + command.seconds
    if ends_at - segment.started_at > limits.segment_max:
        raise InvalidCommand("A segment cannot last that long.")
    warned = segment.warned and ends_at - now <= warned_until
    return replace(state, segment=replace(segment, ends_at=ends_at, warned=warned)), [
        TimerExtended(SEGMENT, command.by, ends_at, now)
    ]


def _nothing_running(state: RoomState) -> None:
    if state.breakout is not None:
        raise ActivityConflict("Pair work is running: end it first.")
    if state.segment is not None:
        raise ActivityConflict("A segment is running: end it first, or add to its queue.")


def _check_duration(seconds: float, low: float, high: float, what: str) -> None:
    if not low <= seconds <= high:
        raise InvalidCommand(f"{what} lasts between {_minutes(low)} and {_minutes(high)}.")


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} seconds"
    minutes = seconds / 60
    return f"{minutes:g} minute" + ("" if minutes == 1 else "s")


def _in_session_patient(person: Participant | None) -> bool:
    return person is not None and person.admitted_patient
