"""Breakout pairs and individual segments as pure rules: who is where, who hears whom,
what the timers do, and what happens when people come and go."""

from __future__ import annotations

from dataclasses import replace

import pytest

from telecircle.domain.activities import next_deadline, pair_up, shift_timers
from telecircle.domain.audience import all_audiences, audience
from telecircle.domain.commands import (
    Admit,
    Disconnect,
    EndPairs,
    EndSegment,
    Extend,
    ForceMedia,
    Join,
    Knock,
    Leave,
    LeaveReason,
    MessagePairs,
    MoveToLobby,
    NextSegment,
    QueueSegment,
    StartPairs,
    StartSegment,
    TimersDue,
    VisitPair,
)
from telecircle.domain.errors import ActivityConflict, InvalidCommand, NotAllowed
from telecircle.domain.events import (
    PairsEnded,
    PairsMessaged,
    PairsStarted,
    PairVisited,
    SegmentEnded,
    SegmentQueued,
    SegmentStarted,
    TimerExtended,
    TimerWarned,
)
from telecircle.domain.ids import ParticipantId, RoomId, SessionId
from telecircle.domain.model import OthersDuringSegment, RoomState, TimerLimits, TrackKind, TrackRef
from telecircle.domain.placement import Spot, location
from telecircle.domain.rules import decide

DOC, CO = ParticipantId("doc"), ParticipantId("co")
ANN, BO, CY, DI, ED = (ParticipantId(n) for n in ("ann", "bo", "cy", "di", "ed"))
HOLD = OthersDuringSegment.HOLD
TOGETHER = OthersDuringSegment.PLENARY
LIMITS = TimerLimits(segment_min=60.0, segment_max=1200.0, warning_before=60.0)


def session(*patients: ParticipantId, co: bool = False) -> RoomState:
    """The therapist (and a co-facilitator) with these patients admitted, at t=0."""
    state = RoomState(RoomId("r"), SessionId("s"), participant_limit=10, limits=LIMITS)
    state, _ = decide(state, Join(DOC, "Doc"), 0.0)
    if co:
        state, _ = decide(state, Join(CO, "Co"), 0.0)
    for pid in patients:
        state, _ = decide(state, Knock(pid, pid.title()), 0.0)
        state, _ = decide(state, Admit(pid, DOC, 10), 0.0)
    return state


def hears(state: RoomState, owner: ParticipantId, kind: TrackKind = TrackKind.AUDIO) -> set[str]:
    return set(audience(state, TrackRef(owner, kind)))


def spot(state: RoomState, pid: ParticipantId) -> Spot:
    person = state.find(pid)
    assert person is not None
    return location(state, person).spot


def pairs(state: RoomState, *groups: tuple[ParticipantId, ...], at: float = 0.0) -> RoomState:
    state, _ = decide(state, StartPairs(DOC, 600.0, groups), at)
    return state


# ---- pairing ----------------------------------------------------------------------------


def test_pair_up_makes_pairs_and_one_trio_for_an_odd_number() -> None:
    assert pair_up([ANN, BO]) == ((ANN, BO),)
    assert pair_up([ANN, BO, CY, DI]) == ((ANN, BO), (CY, DI))
    assert pair_up([ANN, BO, CY, DI, ED]) == ((ANN, BO), (CY, DI, ED))
    assert pair_up([ANN, BO, CY]) == ((ANN, BO, CY),)
    with pytest.raises(InvalidCommand):
        pair_up([ANN])


def test_media_flows_only_inside_each_pair() -> None:
    state = pairs(session(ANN, BO, CY, DI), (ANN, BO), (CY, DI))
    assert hears(state, ANN) == {"bo"}
    assert hears(state, CY, TrackKind.VIDEO) == {"di"}
    # The therapist, not visiting, is in the plenary: nobody in a pair hears them.
    assert hears(state, DOC) == set()
    assert spot(state, ANN) is Spot.PAIR
    assert spot(state, DOC) is Spot.PLENARY


def test_a_visiting_clinician_hears_and_is_heard_by_that_pair_only() -> None:
    state = pairs(session(ANN, BO, CY, DI), (ANN, BO), (CY, DI))
    state, events = decide(state, VisitPair(DOC, 1), 1.0)
    assert events == [PairVisited(DOC, 1, 1.0)]
    assert hears(state, DOC) == {"cy", "di"}
    assert hears(state, CY) == {"di", "doc"}
    assert hears(state, ANN) == {"bo"}
    state, _ = decide(state, VisitPair(DOC, None), 2.0)
    assert hears(state, DOC) == set()
    assert hears(state, CY) == {"di"}


def test_patients_left_out_of_the_pairs_stay_in_the_plenary_with_the_clinicians() -> None:
    state = pairs(session(ANN, BO, CY, co=True), (ANN, BO))
    assert hears(state, CY) == {"doc", "co"}
    assert hears(state, DOC) == {"co", "cy"}
    # With every clinician visiting, the one left in the plenary is on hold.
    state, _ = decide(state, VisitPair(DOC, 0), 1.0)
    state, _ = decide(state, VisitPair(CO, 0), 1.0)
    assert spot(state, CY) is Spot.HOLD
    assert hears(state, CY) == set()


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ((), "at least one pair"),
        (((ANN,),), "pair, or a trio"),
        (((ANN, BO, CY, DI),), "pair, or a trio"),
        (((ANN, BO), (BO, CY)), "two pairs"),
        (((ANN, DOC),), "Only patients"),
        (((ANN, ParticipantId("ghost")),), "Only patients"),
    ],
)
def test_pairs_by_hand_are_checked(
    groups: tuple[tuple[ParticipantId, ...], ...], message: str
) -> None:
    state = session(ANN, BO, CY, DI)
    with pytest.raises(InvalidCommand, match=message):
        decide(state, StartPairs(DOC, 600.0, groups), 0.0)


def test_only_clinicians_run_pairs_and_durations_are_bounded() -> None:
    state = session(ANN, BO)
    with pytest.raises(NotAllowed):
        decide(state, StartPairs(ANN, 600.0, ((ANN, BO),)), 0.0)
    with pytest.raises(InvalidCommand, match="between 1 minute and 60 minutes"):
        decide(state, StartPairs(DOC, 30.0, ((ANN, BO),)), 0.0)
    with pytest.raises(InvalidCommand):
        decide(state, StartPairs(DOC, 3601.0, ((ANN, BO),)), 0.0)
    running = pairs(state, (ANN, BO))
    with pytest.raises(ActivityConflict):
        decide(running, StartPairs(DOC, 600.0, ((ANN, BO),)), 0.0)
    with pytest.raises(NotAllowed):
        decide(running, VisitPair(ANN, 0), 0.0)
    with pytest.raises(InvalidCommand, match="no such pair"):
        decide(running, VisitPair(DOC, 3), 0.0)


def test_a_message_to_the_pairs_is_checked_and_not_a_state_change() -> None:
    state = pairs(session(ANN, BO), (ANN, BO))
    after, events = decide(state, MessagePairs(DOC, "  Two   minutes left  "), 5.0)
    assert after == state
    assert events == [PairsMessaged(DOC, "Two minutes left", 5.0)]
    with pytest.raises(InvalidCommand):
        decide(state, MessagePairs(DOC, "   "), 5.0)
    with pytest.raises(InvalidCommand, match="at most 280"):
        decide(state, MessagePairs(DOC, "x" * 281), 5.0)
    with pytest.raises(ActivityConflict):
        decide(session(ANN, BO), MessagePairs(DOC, "hello"), 5.0)


# ---- timers -----------------------------------------------------------------------------


def test_pairs_warn_a_minute_before_and_end_on_their_own() -> None:
    state = pairs(session(ANN, BO), (ANN, BO), at=100.0)
    assert next_deadline(state) == 100.0 + 600.0 - 60.0
    state, events = decide(state, TimersDue(), 639.0)
    assert events == []
    state, events = decide(state, TimersDue(), 640.0)
    assert events == [TimerWarned("pairs", 700.0, 640.0)]
    assert next_deadline(state) == 700.0
    state, events = decide(state, TimersDue(), 700.5)
    assert events == [PairsEnded(None, 700.5)]
    assert state.breakout is None
    assert hears(state, ANN) == {"bo", "doc"}
    assert next_deadline(state) is None


def test_extending_pushes_the_end_and_warns_again() -> None:
    state = pairs(session(ANN, BO), (ANN, BO))
    state, _ = decide(state, TimersDue(), 545.0)
    assert state.breakout is not None and state.breakout.warned
    state, events = decide(state, Extend(DOC, 300.0), 550.0)
    assert events == [TimerExtended("pairs", DOC, 900.0, 550.0)]
    assert state.breakout is not None and not state.breakout.warned
    assert next_deadline(state) == 840.0
    with pytest.raises(InvalidCommand):
        decide(state, Extend(DOC, 0.0), 550.0)
    longer, _ = decide(state, Extend(DOC, 1800.0), 550.0)
    with pytest.raises(InvalidCommand, match="cannot last that long"):
        decide(longer, Extend(DOC, 1800.0), 550.0)


def test_ending_pairs_early_returns_everyone() -> None:
    state = pairs(session(ANN, BO, CY, DI), (ANN, BO), (CY, DI))
    state, events = decide(state, EndPairs(DOC), 10.0)
    assert events == [PairsEnded(DOC, 10.0)]
    assert hears(state, ANN) == {"bo", "cy", "di", "doc"}
    with pytest.raises(ActivityConflict):
        decide(state, EndPairs(DOC), 11.0)


def test_shifting_timers_keeps_the_time_that_was_left() -> None:
    state = pairs(session(ANN, BO), (ANN, BO), at=0.0)
    moved = shift_timers(state, 1000.0)
    assert moved.breakout is not None and moved.breakout.ends_at == 1600.0
    assert next_deadline(moved) == 1540.0


# ---- people coming and going ----------------------------------------------------------


def test_a_partner_leaving_sends_the_other_back_to_the_plenary() -> None:
    state = pairs(session(ANN, BO, CY, DI), (ANN, BO), (CY, DI))
    state, _ = decide(state, VisitPair(DOC, 0), 1.0)
    state, _ = decide(state, Leave(BO, LeaveReason.LEFT), 2.0)
    assert state.breakout is not None
    assert state.breakout.groups == ((), (CY, DI))
    assert state.breakout.visits == ()
    assert spot(state, ANN) is Spot.PLENARY
    assert hears(state, ANN) == {"doc"}
    state, events = decide(state, MoveToLobby(CY, DOC), 3.0)
    assert state.breakout is None
    assert PairsEnded(None, 3.0) in events


def test_a_trio_losing_one_stays_a_pair() -> None:
    state = pairs(session(ANN, BO, CY), (ANN, BO, CY))
    state, _ = decide(state, Leave(CY, LeaveReason.LEFT), 2.0)
    assert state.breakout is not None and state.breakout.groups == ((ANN, BO),)


def test_someone_away_keeps_their_place_in_a_pair() -> None:
    state = pairs(session(ANN, BO), (ANN, BO))
    state, _ = decide(state, Disconnect(BO), 2.0)
    assert state.breakout is not None and state.breakout.groups == ((ANN, BO),)


# ---- segments ---------------------------------------------------------------------------


def segment(
    state: RoomState, *people: ParticipantId, others: OthersDuringSegment = HOLD
) -> RoomState:
    state, _ = decide(state, StartSegment(DOC, people, others, 600.0), 0.0)
    return state


def test_a_segment_is_one_to_one_and_the_others_wait_on_hold() -> None:
    state = segment(session(ANN, BO, CY), ANN)
    assert hears(state, ANN) == {"doc"}
    assert hears(state, DOC, TrackKind.VIDEO) == {"ann"}
    assert hears(state, BO) == set()
    assert spot(state, BO) is Spot.HOLD
    assert spot(state, ANN) is Spot.SEGMENT


def test_the_others_can_go_on_together_led_by_a_co_facilitator() -> None:
    state = segment(session(ANN, BO, CY, co=True), ANN, others=TOGETHER)
    assert hears(state, BO) == {"cy", "co"}
    assert hears(state, CO) == {"bo", "cy"}
    assert hears(state, ANN) == {"doc"}


def test_the_others_may_go_on_together_without_a_clinician_when_chosen() -> None:
    state = segment(session(ANN, BO, CY), ANN, others=TOGETHER)
    assert hears(state, BO) == {"cy"}
    # Held otherwise: the default for a group without a clinician.
    held = segment(session(ANN, BO, CY), ANN)
    assert hears(held, BO) == set()


def test_a_segment_defaults_to_its_configured_length_and_is_bounded() -> None:
    state = session(ANN, BO)
    started, events = decide(state, StartSegment(DOC, (ANN,), HOLD), 10.0)
    assert events == [SegmentStarted(DOC, ANN, 10.0 + LIMITS.segment_default, HOLD, 10.0)]
    assert started.segment is not None
    with pytest.raises(InvalidCommand):
        decide(state, StartSegment(DOC, (ANN,), HOLD, 1201.0), 0.0)
    with pytest.raises(InvalidCommand):
        decide(state, StartSegment(DOC, (DOC,), HOLD), 0.0)
    with pytest.raises(InvalidCommand):
        decide(state, StartSegment(DOC, (ANN, ANN), HOLD), 0.0)
    with pytest.raises(NotAllowed):
        decide(state, StartSegment(ANN, (BO,), HOLD), 0.0)
    with pytest.raises(ActivityConflict):
        decide(pairs(session(ANN, BO), (ANN, BO)), StartSegment(DOC, (ANN,), HOLD), 0.0)
    with pytest.raises(ActivityConflict):
        decide(started, StartPairs(DOC, 600.0, ((ANN, BO),)), 0.0)


def test_the_queue_goes_on_by_itself_and_the_run_ends_after_the_last() -> None:
    state = segment(session(ANN, BO, CY), ANN, BO)
    state, events = decide(state, QueueSegment(DOC, CY), 1.0)
    assert events == [SegmentQueued(DOC, CY, 1.0)]
    state, events = decide(state, TimersDue(), 540.0)
    assert events == [TimerWarned("segment", 600.0, 540.0)]
    state, events = decide(state, TimersDue(), 600.0)
    assert events == [SegmentEnded(ANN, None, 600.0), SegmentStarted(DOC, BO, 1200.0, HOLD, 600.0)]
    assert state.segment is not None and state.segment.done == (ANN,)
    assert hears(state, BO) == {"doc"}
    assert hears(state, ANN) == set()
    state, events = decide(state, NextSegment(DOC), 700.0)
    assert events == [SegmentEnded(BO, DOC, 700.0), SegmentStarted(DOC, CY, 1300.0, HOLD, 700.0)]
    state, events = decide(state, TimersDue(), 1300.0)
    assert events == [SegmentEnded(CY, None, 1300.0)]
    assert state.segment is None
    assert hears(state, ANN) == {"bo", "cy", "doc"}


def test_a_segment_goes_on_with_the_queue_when_its_person_leaves() -> None:
    state = segment(session(ANN, BO, CY), ANN, BO, CY)
    state, events = decide(state, Leave(ANN, LeaveReason.LEFT), 5.0)
    assert SegmentStarted(DOC, BO, 605.0, HOLD, 5.0) in events
    state, _ = decide(state, Leave(CY, LeaveReason.LEFT), 6.0)
    assert state.segment is not None and state.segment.queue == ()
    state, events = decide(state, EndSegment(DOC), 7.0)
    assert events == [SegmentEnded(BO, DOC, 7.0)]
    assert state.segment is None


def test_the_segment_ends_when_its_clinician_leaves() -> None:
    state = segment(session(ANN, BO, co=True), ANN)
    state, events = decide(state, Leave(DOC, LeaveReason.LEFT), 5.0)
    assert state.segment is None
    assert events[-1] == SegmentEnded(ANN, None, 5.0)
    assert hears(state, ANN) == {"bo", "co"}


def test_a_forced_mute_holds_inside_pairs_and_segments() -> None:
    state = session(ANN, BO)
    state, _ = decide(state, ForceMedia(ANN, DOC, audio_off=True), 0.0)
    assert hears(pairs(state, (ANN, BO)), ANN) == set()
    assert hears(pairs(state, (ANN, BO)), ANN, TrackKind.VIDEO) == {"bo"}
    assert hears(segment(state, ANN), ANN) == set()


def test_the_audience_never_crosses_groups() -> None:
    state = pairs(session(ANN, BO, CY, DI, ED), (ANN, BO), (CY, DI, ED))
    state, _ = decide(state, VisitPair(DOC, 0), 1.0)
    groups = {"ann": {"ann", "bo", "doc"}, "bo": {"ann", "bo", "doc"}, "doc": {"ann", "bo", "doc"}}
    groups |= {p: {"cy", "di", "ed"} for p in ("cy", "di", "ed")}
    for track, listeners in all_audiences(state).items():
        assert listeners <= groups[track.owner] - {track.owner}


def test_the_session_ending_clears_everything_quietly() -> None:
    from telecircle.domain.commands import EndSession

    state = pairs(session(ANN, BO), (ANN, BO))
    state, events = decide(state, EndSession(DOC), 3.0)
    assert state.breakout is None and state.segment is None
    assert not any(isinstance(e, PairsEnded | PairsStarted) for e in events)
    assert replace(state) == state


# ---- screen share -----------------------------------------------------------------------


def test_a_clinician_shares_their_screen_with_their_place_one_at_a_time() -> None:
    from telecircle.domain.commands import ShareScreen
    from telecircle.domain.events import ScreenShared

    state = session(ANN, BO, co=True)
    assert hears(state, DOC, TrackKind.SCREEN) == set()
    state, events = decide(state, ShareScreen(DOC, True), 1.0)
    assert events == [ScreenShared(DOC, True, 1.0)]
    assert hears(state, DOC, TrackKind.SCREEN) == {"co", "ann", "bo"}
    with pytest.raises(ActivityConflict, match="Doc is sharing"):
        decide(state, ShareScreen(CO, True), 2.0)
    with pytest.raises(NotAllowed):
        decide(state, ShareScreen(ANN, True), 2.0)
    # In pair work the screen reaches only the sharer's own place.
    state, _ = decide(state, StartPairs(DOC, 600.0, ((ANN, BO),)), 3.0)
    assert hears(state, DOC, TrackKind.SCREEN) == {"co"}
    state, _ = decide(state, ShareScreen(DOC, False), 4.0)
    assert hears(state, DOC, TrackKind.SCREEN) == set()
    state, events = decide(state, ShareScreen(CO, True), 5.0)
    assert events == [ScreenShared(CO, True, 5.0)]


def test_a_screen_stops_when_its_sharer_changes_place_but_not_on_a_drop() -> None:
    from telecircle.domain.commands import ShareScreen
    from telecircle.domain.events import ScreenShared

    state = session(ANN, BO, CY)
    state, _ = decide(state, StartSegment(DOC, (ANN,), HOLD, 600.0), 0.0)
    state, _ = decide(state, ShareScreen(DOC, True), 1.0)
    assert hears(state, DOC, TrackKind.SCREEN) == {"ann"}
    # The segment's time runs out: the screen shown to Ann does not follow Doc to all.
    state, events = decide(state, TimersDue(), 600.0)
    assert ScreenShared(DOC, False, 600.0) in events
    assert hears(state, DOC, TrackKind.SCREEN) == set()
    # A dropped connection keeps the share (the page comes back) ...
    state, _ = decide(state, ShareScreen(DOC, True), 601.0)
    state, events = decide(state, Disconnect(DOC), 602.0)
    assert not any(isinstance(e, ScreenShared) for e in events)
    # ... but does not stop another clinician from taking over.
    state, _ = decide(state, Join(CO, "Co"), 603.0)
    state, events = decide(state, ShareScreen(CO, True), 604.0)
    assert events == [ScreenShared(DOC, False, 604.0), ScreenShared(CO, True, 604.0)]
