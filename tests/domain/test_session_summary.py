"""What a session record sums up, as pure functions: time attended, billing
suggestions, the seats' story and the timeline in words."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telecircle.domain.commands import LeaveReason
from telecircle.domain.events import (
    Event,
    HandChanged,
    MediaChanged,
    MediaForced,
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
from telecircle.domain.session_summary import (
    GROUP_PSYCHOTHERAPY,
    MIN_BILLABLE_MINUTES,
    TELEHEALTH_AT_HOME,
    TELEHEALTH_ELSEWHERE,
    TELEHEALTH_MODIFIER,
    Interval,
    TurnedAway,
    attended_seconds,
    billing_suggestion,
    covered_seconds,
    duration_label,
    elapsed_label,
    joined_names,
    narrate,
    seat_history,
    whole_minutes,
)

T0 = 1_700_000_000.0
DOC, ANN, BO, CY, DEE = (ParticipantId(n) for n in ("doc", "ann", "bo", "cy", "dee"))
NAMES = {DOC: "Dr Lee", ANN: "Ann", BO: "Bo", CY: "Cy", DEE: "Dee"}


def name_of(pid: ParticipantId) -> str:
    return NAMES.get(pid, "someone")


def texts(events: list[Event]) -> list[str]:
    return [h.text for h in narrate(events, name_of)]


# ------------------------------------------------------------------- time attended


def test_closed_intervals_add_up() -> None:
    spans = [Interval(T0, T0 + 600), Interval(T0 + 900, T0 + 1500)]
    assert attended_seconds(spans, [], now=T0 + 5000) == 1200


def test_an_open_interval_counts_up_to_now() -> None:
    assert attended_seconds([Interval(T0 + 60)], [], now=T0 + 660) == 600


def test_overlapping_intervals_count_once() -> None:
    spans = [Interval(T0, T0 + 600), Interval(T0 + 300, T0 + 900)]
    assert covered_seconds(spans, now=T0 + 5000) == 900
    assert attended_seconds(spans, [], now=T0 + 5000) == 900


def test_time_away_inside_the_presence_is_not_counted() -> None:
    present = [Interval(T0, T0 + 1800)]
    away = [Interval(T0 + 600, T0 + 660), Interval(T0 + 1790, T0 + 1900)]  # last runs past
    assert attended_seconds(present, away, now=T0 + 5000) == 1800 - 60 - 10


def test_an_interval_ending_before_it_starts_counts_nothing() -> None:
    assert attended_seconds([Interval(T0 + 100, T0)], [], now=T0 + 5000) == 0
    assert attended_seconds([Interval(T0 + 100)], [], now=T0) == 0  # now before the start


@given(
    st.lists(
        st.tuples(st.floats(0, 10_000), st.floats(0, 10_000)).map(
            lambda p: Interval(T0 + min(p), T0 + max(p))
        ),
        max_size=8,
    ),
    st.lists(
        st.tuples(st.floats(0, 10_000), st.floats(0, 10_000)).map(
            lambda p: Interval(T0 + min(p), T0 + max(p))
        ),
        max_size=8,
    ),
)
def test_attended_time_is_between_zero_and_the_time_present(
    present: list[Interval], away: list[Interval]
) -> None:
    now = T0 + 20_000
    seconds = attended_seconds(present, away, now)
    assert 0 <= seconds <= covered_seconds(present, now) + 1e-6
    assert attended_seconds(present, [], now) == pytest.approx(covered_seconds(present, now))


def test_minutes_round_down_and_labels() -> None:
    assert whole_minutes(959.9) == 15
    assert whole_minutes(960) == 16
    assert whole_minutes(-5) == 0
    assert whole_minutes(599.9999995) == 10  # 600 s read back at microsecond precision
    assert elapsed_label(59.9999996) == "01:00"
    assert elapsed_label(0) == "00:00"
    assert elapsed_label(-3) == "00:00"
    assert elapsed_label(65.9) == "01:05"
    assert elapsed_label(3600 + 62) == "1:01:02"
    assert duration_label(40.5) == "40 s"
    assert duration_label(45 * 60) == "45 min"
    assert duration_label(90 * 60) == "1 h 30 min"
    assert duration_label(120 * 60) == "2 h"


# ------------------------------------------------------------------------- billing


def test_billing_suggests_group_psychotherapy_by_telehealth() -> None:
    suggestion = billing_suggestion(50 * 60 + 59)
    assert suggestion.minutes == 50
    assert not suggestion.too_short
    codes = {(c.system, c.code) for c in suggestion.codes}
    assert codes == {
        ("CPT", GROUP_PSYCHOTHERAPY),
        ("modifier", TELEHEALTH_MODIFIER),
        ("POS", TELEHEALTH_AT_HOME),
        ("POS", TELEHEALTH_ELSEWHERE),
    }
    assert (GROUP_PSYCHOTHERAPY, TELEHEALTH_MODIFIER) == ("90853", "95")
    assert (TELEHEALTH_ELSEWHERE, TELEHEALTH_AT_HOME) == ("02", "10")


def test_attendance_under_the_threshold_is_flagged() -> None:
    assert MIN_BILLABLE_MINUTES == 16
    assert billing_suggestion(MIN_BILLABLE_MINUTES * 60 - 1).too_short
    assert not billing_suggestion(MIN_BILLABLE_MINUTES * 60).too_short
    assert billing_suggestion(0).too_short


# ----------------------------------------------------------------------------- seats


def test_seat_history_tells_who_got_in_who_was_turned_away_and_time_away() -> None:
    events: list[Event] = [
        ParticipantJoined(DOC, "Dr Lee", T0),
        ParticipantKnocked(ANN, "Ann", T0 + 10),
        ParticipantKnocked(BO, "Bo", T0 + 11),
        ParticipantKnocked(CY, "Cy", T0 + 12),
        ParticipantKnocked(DEE, "Dee", T0 + 13),
        ParticipantAdmitted(ANN, DOC, T0 + 20),
        ParticipantAdmitted(BO, DOC, T0 + 20),
        ParticipantDenied(CY, DOC, T0 + 30),
        ParticipantLeft(CY, LeaveReason.DENIED, T0 + 30),
        ParticipantAway(ANN, T0 + 100),
        ParticipantBack(ANN, T0 + 130),
        ParticipantAway(ANN, T0 + 200),
        ParticipantRemoved(BO, DOC, T0 + 300),
        ParticipantLeft(BO, LeaveReason.REMOVED, T0 + 300),
        ParticipantLeft(DEE, LeaveReason.LEFT, T0 + 400),
    ]
    history = seat_history(events)
    assert history.knocked == {ANN, BO, CY, DEE}
    assert history.joined == {DOC}
    assert history.admitted == {ANN, BO}
    assert history.denied == (TurnedAway(CY, DOC, T0 + 30),)
    assert history.removed == (TurnedAway(BO, DOC, T0 + 300),)
    assert history.lobby_left_at == {CY: T0 + 30, DEE: T0 + 400}
    assert history.away == {ANN: (Interval(T0 + 100, T0 + 130), Interval(T0 + 200, None))}


# ------------------------------------------------------------------------ timeline


def test_the_lobby_and_leaving_in_words() -> None:
    assert texts(
        [
            ParticipantJoined(DOC, "Dr Lee", T0),
            ParticipantKnocked(ANN, "Ann", T0 + 1),
            ParticipantKnocked(BO, "Bo", T0 + 2),
            ParticipantKnocked(CY, "Cy", T0 + 3),
            ParticipantKnocked(DEE, "Dee", T0 + 4),
            ParticipantAdmitted(ANN, DOC, T0 + 5),  # admit all: one moment, one line
            ParticipantAdmitted(BO, DOC, T0 + 5),
            ParticipantDenied(CY, DOC, T0 + 6),
            ParticipantLeft(CY, LeaveReason.DENIED, T0 + 6),
            ParticipantLeft(DEE, LeaveReason.LEFT, T0 + 7),
            MovedToLobby(BO, DOC, T0 + 8),
            ParticipantLeft(ANN, LeaveReason.CONNECTION_LOST, T0 + 9),
        ]
    ) == [
        "Dr Lee joined",
        "Ann arrived in the lobby",
        "Bo arrived in the lobby",
        "Cy arrived in the lobby",
        "Dee arrived in the lobby",
        "Dr Lee admitted Ann and Bo",
        "Dr Lee turned away Cy from the lobby",
        "Dee left the lobby",
        "Dr Lee moved Bo to the lobby",
        "Ann left (connection lost)",
    ]


def test_forced_media_says_what_changed_and_skips_a_patients_own_switches() -> None:
    assert texts(
        [
            MediaForced(ANN, DOC, True, False, T0),  # mute all: one moment, one line
            MediaForced(BO, DOC, True, False, T0),
            MediaForced(CY, DOC, True, False, T0),
            MediaForced(ANN, DOC, True, True, T0 + 10),
            MediaChanged(BO, False, True, T0 + 11),
            HandChanged(BO, True, T0 + 12),
            MediaForced(BO, BO, False, False, T0 + 13),  # Bo unmuted themselves
            MediaForced(ANN, DOC, False, False, T0 + 20),
        ]
    ) == [
        "Dr Lee muted Ann, Bo and Cy",
        "Dr Lee turned off the camera of Ann",
        "Dr Lee unmuted Ann",
        "Dr Lee allowed the camera of Ann again",
    ]


def test_pairs_segments_and_screen_share_in_words() -> None:
    lines = texts(
        [
            SessionLocked(True, DOC, T0),
            ScreenShared(DOC, True, T0 + 1),
            ScreenShared(DOC, False, T0 + 2),
            PairsStarted(DOC, ((ANN, BO), (CY, DEE)), T0 + 603, T0 + 3),
            PairsMessaged(DOC, "Two minutes left, please swap", T0 + 4),
            PairVisited(DOC, 1, T0 + 5),
            PairVisited(DOC, None, T0 + 6),
            TimerWarned("pairs", T0 + 603, T0 + 543),
            TimerExtended("pairs", DOC, T0 + 843, T0 + 550),
            PairsEnded(None, T0 + 843),
            SegmentStarted(DOC, ANN, T0 + 1800, OthersDuringSegment.HOLD, T0 + 900),
            SegmentQueued(DOC, BO, T0 + 901),
            SegmentEnded(ANN, DOC, T0 + 1000),
            SegmentStarted(DOC, BO, T0 + 1900, OthersDuringSegment.PLENARY, T0 + 1000),
            SegmentEnded(BO, None, T0 + 1900),
            SessionEnded(DOC, T0 + 2000),
            ParticipantLeft(ANN, LeaveReason.SESSION_ENDED, T0 + 2000),
        ]
    )
    assert lines == [
        "Dr Lee locked the session",
        "Dr Lee started sharing their screen",
        "Dr Lee stopped sharing their screen",
        "Dr Lee started pair work (10 min) — pair 1: Ann and Bo; pair 2: Cy and Dee",
        "Dr Lee sent a message to all pairs",
        "Dr Lee joined pair 2 (Cy and Dee)",
        "Dr Lee returned to the group",
        "Pair work ends in 1 min",
        "Dr Lee extended pair work: it now ends in 4 min",
        "Pair work ended (time ran out)",
        "Dr Lee started individual work with Ann (15 min; the others on hold)",
        "Dr Lee queued Bo for individual work",
        "Dr Lee ended individual work with Ann",
        "Dr Lee started individual work with Bo (15 min; the others together in the group)",
        "Individual work with Bo ended (time ran out)",
        "Dr Lee ended the session",
    ]
    assert not any("swap" in line for line in lines)


def test_connection_drops_and_warnings_are_minor_and_unknown_people_are_someone() -> None:
    told = narrate(
        [
            ParticipantAway(ANN, T0),
            ParticipantBack(ANN, T0 + 5),
            ParticipantAdmitted(ParticipantId("p_gone"), DOC, T0 + 6),
        ],
        name_of,
    )
    assert [(h.text, h.minor) for h in told] == [
        ("Ann's connection dropped", True),
        ("Ann reconnected", True),
        ("Dr Lee admitted someone", False),
    ]


def test_names_are_joined_as_in_a_sentence() -> None:
    assert joined_names([]) == ""
    assert joined_names(["Ann"]) == "Ann"
    assert joined_names(["Ann", "Bo"]) == "Ann and Bo"
    assert joined_names(["Ann", "Bo", "Cy"]) == "Ann, Bo and Cy"
