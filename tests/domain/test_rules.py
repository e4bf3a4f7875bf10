"""The room rules: joins, the lobby, leaves, own media, limits, and the audience they
imply."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from telecircle.domain.audience import all_audiences, audience
from telecircle.domain.commands import (
    Admit,
    AdmitAll,
    Command,
    Deny,
    Disconnect,
    ExpireAway,
    Join,
    Knock,
    Leave,
    LeaveReason,
    Resume,
    SetOwnMedia,
)
from telecircle.domain.errors import (
    AlreadyInRoom,
    DomainError,
    InvalidCommand,
    LobbyFull,
    NotAllowed,
    NotInRoom,
    NotWaiting,
    RoomFull,
)
from telecircle.domain.events import (
    Event,
    MediaChanged,
    ParticipantAdmitted,
    ParticipantAway,
    ParticipantBack,
    ParticipantDenied,
    ParticipantJoined,
    ParticipantKnocked,
    ParticipantLeft,
)
from telecircle.domain.ids import ParticipantId, RoomId, SessionId
from telecircle.domain.model import Place, RoomState, SeatRole, TrackKind, TrackRef
from telecircle.domain.rules import MAX_DISPLAY_NAME_LENGTH, decide


def empty_room(limit: int = 10, lobby_limit: int = 20) -> RoomState:
    return RoomState(
        room_id=RoomId("r1"),
        session_id=SessionId("s1"),
        participant_limit=limit,
        lobby_limit=lobby_limit,
    )


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


# ---- the lobby ---------------------------------------------------------------------


def with_clinician(limit: int = 10, lobby_limit: int = 20) -> RoomState:
    """A room with one clinician (p0) in the session."""
    state, _ = decide(empty_room(limit, lobby_limit), Join(pid(0), "Dr A"), 0)
    return state


def test_a_knocking_patient_waits_in_the_lobby_unseen_and_uncounted() -> None:
    state, events = decide(with_clinician(limit=2), Knock(pid(1), " Bo "), 5.0)
    waiting = state.find(pid(1))
    assert waiting is not None
    assert (waiting.place, waiting.role, waiting.display_name) == (
        Place.LOBBY,
        SeatRole.PATIENT,
        "Bo",
    )
    assert events == [ParticipantKnocked(pid(1), "Bo", 5.0)]
    assert state.seats_taken() == 1 and state.waiting() == (waiting,)
    # Nobody in the session receives a waiting patient, and they receive nobody.
    for track, members in all_audiences(state).items():
        assert pid(1) not in members
        if track.owner == pid(1):
            assert members == frozenset()
    # The lobby does not count against the room: a clinician still fits.
    state, _ = decide(state, Join(pid(2), "Dr B"), 6.0)
    assert state.seats_taken() == 2


def test_a_clinician_enters_directly_and_cannot_knock_twice() -> None:
    state = with_clinician()
    clinician = state.find(pid(0))
    assert clinician is not None
    assert (clinician.place, clinician.role) == (Place.PLENARY, SeatRole.CLINICIAN)
    with pytest.raises(AlreadyInRoom):
        decide(state, Knock(pid(0), "Dr A"), 1)
    state, _ = decide(state, Knock(pid(1), "Bo"), 1)
    with pytest.raises(AlreadyInRoom):
        decide(state, Knock(pid(1), "Bo"), 2)


def test_the_lobby_has_its_own_limit() -> None:
    state = with_clinician(lobby_limit=2)
    state, _ = decide(state, Knock(pid(1), "a"), 1)
    state, _ = decide(state, Knock(pid(2), "b"), 2)
    with pytest.raises(LobbyFull) as refused:
        decide(state, Knock(pid(3), "c"), 3)
    assert refused.value.code == "lobby_full"
    # Admitting someone makes room in the lobby.
    state, _ = decide(state, Admit(pid(1), pid(0), limit=10), 4)
    state, _ = decide(state, Knock(pid(3), "c"), 5)
    assert [p.id for p in state.waiting()] == [pid(2), pid(3)]


@pytest.mark.parametrize("name", ["", "  ", "a\x07b"])
def test_a_knock_with_an_unusable_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidCommand):
        decide(with_clinician(), Knock(pid(1), name), 0)


def test_a_clinician_admits_a_waiting_patient_into_the_session() -> None:
    state, _ = decide(with_clinician(), Knock(pid(1), "Bo"), 1)
    state, events = decide(state, Admit(pid(1), pid(0), limit=10), 7)
    admitted = state.find(pid(1))
    assert admitted is not None and admitted.place is Place.PLENARY
    assert admitted.role is SeatRole.PATIENT and admitted.joined_at == 1
    assert events == [ParticipantAdmitted(pid(1), pid(0), 7)]
    assert audience(state, TrackRef(pid(1), TrackKind.AUDIO)) == {pid(0)}
    assert audience(state, TrackRef(pid(0), TrackKind.VIDEO)) == {pid(1)}
    with pytest.raises(NotWaiting):  # already in
        decide(state, Admit(pid(1), pid(0), limit=10), 8)
    with pytest.raises(NotWaiting):  # never here
        decide(state, Admit(pid(9), pid(0), limit=10), 8)


def test_only_a_seated_clinician_runs_the_lobby() -> None:
    state, _ = decide(with_clinician(), Knock(pid(1), "Bo"), 1)
    state, _ = decide(state, Knock(pid(2), "Cy"), 2)
    state, _ = decide(state, Admit(pid(1), pid(0), limit=10), 3)
    for command in (
        Admit(pid(2), pid(1), limit=10),  # an admitted patient
        Admit(pid(1), pid(2), limit=10),  # a waiting patient
        AdmitAll(pid(1), limit=10),
        Deny(pid(2), pid(1)),
        Admit(pid(2), pid(9), limit=10),  # nobody
    ):
        with pytest.raises(NotAllowed):
            decide(state, command, 4)


def test_admit_respects_the_lower_of_the_session_and_the_current_limit() -> None:
    state = with_clinician(limit=4)
    for n in (1, 2, 3):
        state, _ = decide(state, Knock(pid(n), f"p{n}"), n)
    state, _ = decide(state, Admit(pid(1), pid(0), limit=4), 4)
    # The room's limit was lowered to 2 meanwhile: nobody seated is moved, nobody more
    # gets in.
    with pytest.raises(RoomFull):
        decide(state, Admit(pid(2), pid(0), limit=2), 5)
    unchanged, none = decide(state, AdmitAll(pid(0), limit=1), 5)
    assert none == [] and unchanged == state
    # Raised above the session's limit: the session's own (its receive slots) still holds.
    state, events = decide(state, AdmitAll(pid(0), limit=12), 6)
    assert [e.participant_id for e in events] == [pid(2), pid(3)]
    assert state.seats_taken() == 4
    state, _ = decide(state, Knock(pid(4), "p4"), 7)
    with pytest.raises(RoomFull):
        decide(state, Admit(pid(4), pid(0), limit=12), 8)


def test_admit_all_lets_people_in_in_order_of_arrival_while_seats_last() -> None:
    state = with_clinician(limit=3)
    for n in (3, 1, 2):  # arrival order, not id order
        state, _ = decide(state, Knock(pid(n), f"p{n}"), 10 + n)
    state, events = decide(state, AdmitAll(pid(0), limit=3), 20)
    assert events == [
        ParticipantAdmitted(pid(3), pid(0), 20),
        ParticipantAdmitted(pid(1), pid(0), 20),
    ]
    assert [p.id for p in state.waiting()] == [pid(2)]
    # A full session admits nobody, without an error.
    same, none = decide(state, AdmitAll(pid(0), limit=3), 21)
    assert none == [] and same == state


def test_deny_ends_a_waiting_seat() -> None:
    state, _ = decide(with_clinician(), Knock(pid(1), "Bo"), 1)
    state, events = decide(state, Deny(pid(1), pid(0)), 3)
    assert state.find(pid(1)) is None
    assert events == [
        ParticipantDenied(pid(1), pid(0), 3),
        ParticipantLeft(pid(1), LeaveReason.DENIED, 3),
    ]
    with pytest.raises(NotWaiting):
        decide(state, Deny(pid(1), pid(0)), 4)
    state, _ = decide(state, Knock(pid(2), "Cy"), 5)
    state, _ = decide(state, Admit(pid(2), pid(0), limit=10), 6)
    with pytest.raises(NotWaiting):  # someone in the session is not denied; they are removed
        decide(state, Deny(pid(2), pid(0)), 7)


def test_a_patient_dropped_in_the_lobby_keeps_their_place_in_the_queue() -> None:
    state = with_clinician()
    state, _ = decide(state, Knock(pid(1), "a"), 1)
    state, _ = decide(state, Knock(pid(2), "b"), 2)
    state, _ = decide(state, Disconnect(pid(1)), 3)
    state, _ = decide(state, Resume(pid(1)), 4)
    back = state.find(pid(1))
    assert back is not None and back.place is Place.LOBBY and back.joined_at == 1
    assert [p.id for p in state.waiting()] == [pid(1), pid(2)]


LOBBY_LIMIT = 4
PEOPLE = st.integers(min_value=0, max_value=7)


class RoomMachine(RuleBasedStateMachine):
    """Any sequence of commands, lobby ones included, keeps the room's invariants.

    Rules mostly pick someone the command applies to (a clinician for lobby commands, a
    waiting patient to admit or deny) and sometimes anyone at all, so refusals are
    exercised too.
    """

    limit: int
    state: RoomState
    now: float

    @initialize(limit=st.integers(min_value=2, max_value=8))
    def open_room(self, limit: int) -> None:
        self.limit = limit
        self.state = with_clinician(limit, lobby_limit=LOBBY_LIMIT)  # p0, who may leave
        self.now = 0.0

    def pick(self, data: st.DataObject, candidates: list[ParticipantId]) -> ParticipantId:
        anyone = st.builds(pid, PEOPLE)
        if not candidates:
            return data.draw(anyone)
        known = st.sampled_from(candidates)
        return data.draw(st.one_of(known, known, known, anyone))  # mostly someone it fits

    def clinicians(self) -> list[ParticipantId]:
        return [p.id for p in self.state.participants if p.role is SeatRole.CLINICIAN]

    def apply(self, command: Command) -> None:
        self.now += 1.0
        before = self.state
        try:
            self.state, events = decide(before, command, self.now)
        except DomainError:
            return
        self.check_step(before, command, events)

    def check_step(self, before: RoomState, command: Command, events: list[Event]) -> None:
        if isinstance(command, Admit | AdmitAll) and events:
            # Nobody is let in past the limit the clinician's admit was given.
            assert self.state.seats_taken() <= min(command.limit, self.limit)
            actor = before.find(command.by)
            assert actor is not None and actor.role is SeatRole.CLINICIAN
        for participant in self.state.participants:
            was = before.find(participant.id)
            if was is None:
                expected = Place.LOBBY if isinstance(command, Knock) else Place.PLENARY
                assert participant.place is expected
            elif was.place is Place.LOBBY and participant.place is not Place.LOBBY:
                assert isinstance(command, Admit | AdmitAll), "only an admit leaves the lobby"
        if isinstance(command, Deny):
            assert events == [
                ParticipantDenied(command.participant_id, command.by, self.now),
                ParticipantLeft(command.participant_id, LeaveReason.DENIED, self.now),
            ]

    @rule(n=PEOPLE)
    def join(self, n: int) -> None:
        self.apply(Join(pid(n), f"name {n}"))

    @rule(n=PEOPLE)
    def knock(self, n: int) -> None:
        self.apply(Knock(pid(n), f"name {n}"))

    @rule(data=st.data(), lowered=st.integers(min_value=0, max_value=3))
    def admit(self, data: st.DataObject, lowered: int) -> None:
        waiting = self.pick(data, [p.id for p in self.state.waiting()])
        by = self.pick(data, self.clinicians())
        self.apply(Admit(waiting, by, max(1, self.limit - lowered)))

    @rule(data=st.data(), lowered=st.integers(min_value=0, max_value=3))
    def admit_all(self, data: st.DataObject, lowered: int) -> None:
        self.apply(AdmitAll(self.pick(data, self.clinicians()), max(1, self.limit - lowered)))

    @rule(data=st.data())
    def deny(self, data: st.DataObject) -> None:
        waiting = self.pick(data, [p.id for p in self.state.waiting()])
        self.apply(Deny(waiting, self.pick(data, self.clinicians())))

    @rule(data=st.data(), reason=st.sampled_from(LeaveReason))
    def leave(self, data: st.DataObject, reason: LeaveReason) -> None:
        self.apply(Leave(self.pick(data, [p.id for p in self.state.participants]), reason))

    @rule(data=st.data(), kind=st.sampled_from(TrackKind), on=st.booleans())
    def set_own_media(self, data: st.DataObject, kind: TrackKind, on: bool) -> None:
        who = self.pick(data, [p.id for p in self.state.participants])
        if kind is TrackKind.AUDIO:
            self.apply(SetOwnMedia(who, audio_on=on))
        else:
            self.apply(SetOwnMedia(who, video_on=on))

    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        self.apply(Disconnect(self.pick(data, [p.id for p in self.state.participants])))

    @rule(data=st.data())
    def come_back(self, data: st.DataObject) -> None:
        self.apply(Resume(self.pick(data, [p.id for p in self.state.participants if p.away])))

    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        away = [p.id for p in self.state.participants if p.away]
        self.apply(ExpireAway(self.pick(data, away), grace=3.0))

    @invariant()
    def one_seat_each_and_limits_hold(self) -> None:
        ids = [p.id for p in self.state.participants]
        assert len(ids) == len(set(ids)), "every participant is in exactly one seat"
        assert self.state.seats_taken() <= self.limit, "seats outside the lobby within limit"
        assert len(self.state.waiting()) <= LOBBY_LIMIT
        for participant in self.state.participants:
            if participant.role is SeatRole.CLINICIAN:
                assert participant.place is Place.PLENARY, "clinicians never wait"
            if participant.away_since is not None:
                assert participant.away_since <= self.now

    @invariant()
    def audiences_follow_the_rules(self) -> None:
        ids = {p.id for p in self.state.participants}
        waiting = {p.id for p in self.state.waiting()}
        for track, members in all_audiences(self.state).items():
            owner = self.state.find(track.owner)
            assert owner is not None
            assert track.owner not in members, "nobody receives their own track"
            assert members <= ids
            assert not members & waiting, "the audience never includes the lobby"
            if owner.place is Place.LOBBY:
                assert members == frozenset(), "nobody receives someone waiting"
            enabled = {
                TrackKind.AUDIO: owner.audio_on,
                TrackKind.VIDEO: owner.video_on,
                TrackKind.SCREEN: owner.screen_on,
            }[track.kind]
            if not enabled:
                assert members == frozenset(), "a track turned off is forwarded to nobody"


RoomMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestAnySequenceRespectsLimitAndAudienceRules = RoomMachine.TestCase
