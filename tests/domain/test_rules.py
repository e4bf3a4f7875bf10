"""The room rules: joins, leaves, own media, limits, and the audience they imply."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telecircle.domain.audience import all_audiences, audience
from telecircle.domain.commands import (
    Disconnect,
    ExpireAway,
    Join,
    Leave,
    LeaveReason,
    Resume,
    SetOwnMedia,
)
from telecircle.domain.errors import AlreadyInRoom, DomainError, InvalidCommand, NotInRoom, RoomFull
from telecircle.domain.events import (
    MediaChanged,
    ParticipantAway,
    ParticipantBack,
    ParticipantJoined,
    ParticipantLeft,
)
from telecircle.domain.ids import ParticipantId, RoomId, SessionId
from telecircle.domain.model import Place, RoomState, TrackKind, TrackRef
from telecircle.domain.rules import MAX_DISPLAY_NAME_LENGTH, decide


def empty_room(limit: int = 10) -> RoomState:
    return RoomState(room_id=RoomId("r1"), session_id=SessionId("s1"), participant_limit=limit)


def pid(n: int) -> ParticipantId:
    return ParticipantId(f"p{n}")


def test_join_seats_in_plenary_and_reports_event() -> None:
    state, events = decide(empty_room(), Join(pid(1), "  Ana   M. "), now=100.0)
    participant = state.find(pid(1))
    assert participant is not None
    assert participant.place is Place.PLENARY
    assert participant.display_name == "Ana M."
    assert events == [ParticipantJoined(pid(1), "Ana M.", 100.0)]


def test_room_limit_refuses_the_extra_join() -> None:
    state = empty_room(limit=2)
    state, _ = decide(state, Join(pid(1), "a"), 0)
    state, _ = decide(state, Join(pid(2), "b"), 0)
    with pytest.raises(RoomFull) as refused:
        decide(state, Join(pid(3), "c"), 0)
    assert refused.value.code == "room_full"
    assert "full" in refused.value.message


@pytest.mark.parametrize("name", ["", "   ", "x" * (MAX_DISPLAY_NAME_LENGTH + 1), "a\x00b"])
def test_unusable_display_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidCommand):
        decide(empty_room(), Join(pid(1), name), 0)


def test_join_twice_and_leave_unknown_are_refused() -> None:
    state, _ = decide(empty_room(), Join(pid(1), "a"), 0)
    with pytest.raises(AlreadyInRoom):
        decide(state, Join(pid(1), "a"), 0)
    with pytest.raises(NotInRoom):
        decide(state, Leave(pid(2), LeaveReason.LEFT), 0)


def test_leave_frees_the_seat() -> None:
    state, _ = decide(empty_room(limit=2), Join(pid(1), "a"), 0)
    state, events = decide(state, Leave(pid(1), LeaveReason.CONNECTION_LOST), 5)
    assert state.participants == ()
    assert events == [ParticipantLeft(pid(1), LeaveReason.CONNECTION_LOST, 5)]


def test_turning_own_microphone_off_empties_that_tracks_audience() -> None:
    state, _ = decide(empty_room(), Join(pid(1), "a"), 0)
    state, _ = decide(state, Join(pid(2), "b"), 0)
    assert audience(state, TrackRef(pid(1), TrackKind.AUDIO)) == {pid(2)}
    state, events = decide(state, SetOwnMedia(pid(1), audio_on=False), 1)
    assert events == [MediaChanged(pid(1), False, True, 1)]
    assert audience(state, TrackRef(pid(1), TrackKind.AUDIO)) == frozenset()
    assert audience(state, TrackRef(pid(1), TrackKind.VIDEO)) == {pid(2)}
    unchanged, no_events = decide(state, SetOwnMedia(pid(1), audio_on=False), 2)
    assert unchanged == state and no_events == []


def test_a_dropped_connection_holds_the_seat_until_the_window_ends() -> None:
    state, _ = decide(empty_room(limit=2), Join(pid(1), "a"), 0)
    state, events = decide(state, Disconnect(pid(1)), 10)
    assert events == [ParticipantAway(pid(1), 10)]
    held = state.find(pid(1))
    assert held is not None and held.away and held.place is Place.PLENARY
    state, _ = decide(state, Join(pid(2), "b"), 11)
    with pytest.raises(RoomFull):  # the held seat still counts
        decide(state, Join(pid(3), "c"), 12)
    unchanged, none = decide(state, ExpireAway(pid(1), grace=60), 69.9)
    assert none == [] and unchanged == state
    state, events = decide(state, ExpireAway(pid(1), grace=60), 70)
    assert events == [ParticipantLeft(pid(1), LeaveReason.CONNECTION_LOST, 70)]
    assert state.find(pid(1)) is None


def test_resume_returns_to_the_same_seat_and_expiry_then_does_nothing() -> None:
    state, _ = decide(empty_room(), Join(pid(1), "a"), 0)
    state, _ = decide(state, SetOwnMedia(pid(1), audio_on=False), 1)
    state, _ = decide(state, Disconnect(pid(1)), 2)
    state, events = decide(state, Resume(pid(1)), 5)
    assert events == [ParticipantBack(pid(1), 5)]
    back = state.find(pid(1))
    assert back is not None and not back.away and back.audio_on is False
    same, none = decide(state, ExpireAway(pid(1), grace=1), 100)
    assert none == [] and same == state
    again, none = decide(state, Resume(pid(1)), 6)  # not away: nothing to do
    assert none == [] and again == state


commands = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "audio", "video", "drop", "resume", "expire"]),
        st.integers(min_value=0, max_value=14),
        st.booleans(),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(min_value=2, max_value=12), script=commands)
def test_any_sequence_respects_limit_and_audience_rules(
    limit: int, script: list[tuple[str, int, bool]]
) -> None:
    state = empty_room(limit)
    for step, (kind, n, flag) in enumerate(script):
        command = {
            "join": Join(pid(n), f"name {n}"),
            "leave": Leave(pid(n), LeaveReason.LEFT),
            "audio": SetOwnMedia(pid(n), audio_on=flag),
            "video": SetOwnMedia(pid(n), video_on=flag),
            "drop": Disconnect(pid(n)),
            "resume": Resume(pid(n)),
            "expire": ExpireAway(pid(n), grace=3.0),
        }[kind]
        with contextlib.suppress(DomainError):
            state, _ = decide(state, command, float(step))
        ids = [p.id for p in state.participants]
        assert len(ids) <= limit
        assert len(ids) == len(set(ids)), "every participant is in exactly one seat"
        for track, members in all_audiences(state).items():
            owner = state.find(track.owner)
            assert owner is not None
            assert track.owner not in members, "nobody receives their own track"
            assert members <= set(ids)
            enabled = owner.audio_on if track.kind is TrackKind.AUDIO else owner.video_on
            if not enabled:
                assert members == frozenset(), "a track turned off is forwarded to nobody"
        for participant in state.participants:
            if participant.away_since is not None:
                assert participant.away_since <= step
