"""The facilitator's controls as pure rules: who may, what changes, what the audience is."""

from __future__ import annotations

import pytest

from telecircle.domain.audience import audience
from telecircle.domain.commands import (
    Admit,
    EndSession,
    ForceMedia,
    Join,
    Knock,
    LeaveReason,
    Lock,
    MoveToLobby,
    MuteAll,
    NeedMoment,
    RaiseHand,
    Remove,
    SetOwnMedia,
)
from telecircle.domain.errors import InvalidCommand, NotAllowed, SessionLocked
from telecircle.domain.events import (
    HandChanged,
    MediaForced,
    MomentChanged,
    MovedToLobby,
    ParticipantLeft,
    ParticipantRemoved,
    SessionEnded,
)
from telecircle.domain.ids import ParticipantId, RoomId, SessionId
from telecircle.domain.model import Place, RoomState, TrackKind, TrackRef
from telecircle.domain.rules import decide

DOC, CO, ANN, BO = (ParticipantId(n) for n in ("doc", "co", "ann", "bo"))


def session(*, may_unmute: bool = True) -> RoomState:
    """A therapist, a co-facilitator and two admitted patients."""
    state = RoomState(
        RoomId("r"), SessionId("s"), participant_limit=6, patients_may_unmute=may_unmute
    )
    steps = [
        Join(DOC, "Doc"),
        Join(CO, "Co"),
        Knock(ANN, "Ann"),
        Knock(BO, "Bo"),
        Admit(ANN, DOC, 6),
        Admit(BO, DOC, 6),
    ]
    for step in steps:
        state, _ = decide(state, step, 1.0)
    return state


def hears(state: RoomState, owner: ParticipantId, kind: TrackKind = TrackKind.AUDIO) -> set[str]:
    return set(audience(state, TrackRef(owner, kind)))


def test_a_forced_mute_empties_the_audience_until_released() -> None:
    state = session()
    assert hears(state, ANN) == {DOC, CO, BO}
    state, events = decide(state, ForceMedia(ANN, DOC, audio_off=True), 2.0)
    assert events == [MediaForced(ANN, DOC, True, False, 2.0)]
    assert hears(state, ANN) == set()
    assert hears(state, ANN, TrackKind.VIDEO) == {DOC, CO, BO}  # only audio
    # Her own browser saying "audio on" changes nothing the SFU forwards... unless the
    # room lets patients unmute themselves, which releases the mute.
    state, _ = decide(state, SetOwnMedia(ANN, audio_on=True), 3.0)
    assert hears(state, ANN) == {DOC, CO, BO}


def test_where_patients_may_not_unmute_they_raise_a_hand_and_are_let_speak() -> None:
    state = session(may_unmute=False)
    state, _ = decide(state, ForceMedia(ANN, DOC, audio_off=True), 2.0)
    with pytest.raises(NotAllowed):
        decide(state, SetOwnMedia(ANN, audio_on=True), 3.0)
    state, _ = decide(state, SetOwnMedia(ANN, audio_on=False), 3.0)  # muting is always fine
    state, events = decide(state, RaiseHand(ANN, True), 4.0)
    assert events == [HandChanged(ANN, True, 4.0)]
    assert [p.id for p in state.hands()] == [ANN]
    state, events = decide(state, ForceMedia(ANN, CO, audio_off=False), 5.0)
    assert HandChanged(ANN, False, 5.0) in events  # answered: the hand comes down
    state, _ = decide(state, SetOwnMedia(ANN, audio_on=True), 6.0)
    assert hears(state, ANN) == {DOC, CO, BO}


def test_mute_all_mutes_patients_only() -> None:
    state, events = decide(session(), MuteAll(CO), 2.0)
    assert {e.participant_id for e in events if isinstance(e, MediaForced)} == {ANN, BO}
    assert hears(state, ANN) == hears(state, BO) == set()
    assert hears(state, DOC) == {CO, ANN, BO}


def test_patients_cannot_use_the_controls() -> None:
    state = session()
    for command in (
        ForceMedia(BO, ANN, audio_off=True),
        MuteAll(ANN),
        MoveToLobby(BO, ANN),
        Remove(BO, ANN),
        Lock(ANN, True),
        EndSession(ANN),
        RaiseHand(BO, False, by=ANN),
        NeedMoment(BO, False, by=ANN),
    ):
        with pytest.raises(NotAllowed):
            decide(state, command, 2.0)


def test_clinicians_are_not_muted_or_sent_out_by_each_other() -> None:
    state = session()
    for command in (ForceMedia(DOC, CO, audio_off=True), MoveToLobby(DOC, CO), Remove(DOC, CO)):
        with pytest.raises(NotAllowed):
            decide(state, command, 2.0)


def test_hands_come_in_order_of_raising_and_only_their_owner_raises_them() -> None:
    state = session()
    state, _ = decide(state, RaiseHand(BO, True), 2.0)
    state, _ = decide(state, RaiseHand(ANN, True), 3.0)
    assert [p.id for p in state.hands()] == [BO, ANN]
    with pytest.raises(InvalidCommand):
        decide(state, RaiseHand(ANN, True, by=DOC), 4.0)
    state, _ = decide(state, RaiseHand(BO, False, by=DOC), 4.0)
    assert [p.id for p in state.hands()] == [ANN]


def test_a_moment_is_asked_by_the_patient_and_cleared_by_either() -> None:
    state, events = decide(session(), NeedMoment(ANN, True), 2.0)
    assert events == [MomentChanged(ANN, True, 2.0)]
    assert state.find(ANN).needs_moment_since == 2.0  # type: ignore[union-attr]
    state, events = decide(state, NeedMoment(ANN, False, by=CO), 3.0)
    assert events == [MomentChanged(ANN, False, 3.0)]


def test_back_to_the_lobby_stops_all_media_and_admitting_again_restores_it() -> None:
    state, events = decide(session(), MoveToLobby(BO, DOC), 2.0)
    assert events == [MovedToLobby(BO, DOC, 2.0)]
    assert state.find(BO).place is Place.LOBBY  # type: ignore[union-attr]
    assert hears(state, BO) == set() and BO not in hears(state, DOC)
    state, _ = decide(state, Admit(BO, DOC, 6), 3.0)
    assert hears(state, BO) == {DOC, CO, ANN}


def test_remove_ends_the_seat_and_records_who_removed() -> None:
    state, events = decide(session(), Remove(BO, CO), 2.0)
    assert events == [
        ParticipantRemoved(BO, CO, 2.0),
        ParticipantLeft(BO, LeaveReason.REMOVED, 2.0),
    ]
    assert state.find(BO) is None


def test_a_locked_session_admits_nobody_but_lets_people_knock() -> None:
    state, _ = decide(session(), Lock(DOC, True), 2.0)
    state, _ = decide(state, Knock(ParticipantId("cy"), "Cy"), 3.0)
    with pytest.raises(SessionLocked):
        decide(state, Admit(ParticipantId("cy"), DOC, 6), 4.0)
    state, _ = decide(state, Lock(CO, False), 5.0)
    state, _ = decide(state, Admit(ParticipantId("cy"), DOC, 6), 6.0)
    assert state.find(ParticipantId("cy")).place is Place.PLENARY  # type: ignore[union-attr]


def test_end_session_ends_every_seat() -> None:
    state, _ = decide(session(), Knock(ParticipantId("cy"), "Cy"), 2.0)
    state, events = decide(state, EndSession(DOC), 3.0)
    assert events[0] == SessionEnded(DOC, 3.0)
    left = {e.participant_id for e in events if isinstance(e, ParticipantLeft)}
    assert left == {DOC, CO, ANN, BO, ParticipantId("cy")}
    assert state.participants == ()


def test_a_mute_only_restricts_and_letting_speak_does_not() -> None:
    from telecircle.domain.audience import all_audiences, only_restricts

    before = session()
    muted, _ = decide(before, ForceMedia(ANN, DOC, audio_off=True), 2.0)
    assert only_restricts(all_audiences(before), all_audiences(muted))
    assert not only_restricts(all_audiences(muted), all_audiences(before))
    back, _ = decide(before, MoveToLobby(BO, DOC), 2.0)
    assert only_restricts(all_audiences(before), all_audiences(back))


def test_letting_speak_does_not_make_anyone_live_before_they_choose() -> None:
    state, _ = decide(session(may_unmute=False), ForceMedia(ANN, DOC, audio_off=True), 2.0)
    state, _ = decide(state, ForceMedia(ANN, DOC, audio_off=False), 3.0)
    assert hears(state, ANN) == set()  # allowed, but her own switch is still off
    state, _ = decide(state, SetOwnMedia(ANN, audio_on=True), 4.0)
    assert hears(state, ANN) == {DOC, CO, BO}


def test_patients_are_on_hold_while_no_clinician_is_present() -> None:
    from telecircle.domain.commands import Disconnect, Leave, Resume

    state, _ = decide(session(), Disconnect(DOC), 2.0)
    assert hears(state, ANN) == {DOC, CO, BO}  # the co-facilitator leads
    state, _ = decide(state, Leave(CO, LeaveReason.LEFT), 3.0)
    assert hears(state, ANN) == hears(state, BO) == set()  # nobody there to lead: hold
    assert hears(state, ANN, TrackKind.VIDEO) == set()
    state, _ = decide(state, Resume(DOC), 4.0)  # the facilitator is back
    assert hears(state, ANN) == {DOC, BO}
