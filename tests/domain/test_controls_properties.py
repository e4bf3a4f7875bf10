"""The facilitator's controls as a property: any sequence of lobby commands, leaves,
drops, returns, expiries and controls (sent by anyone, valid or not) keeps the room's
invariants, and every refusal changes nothing.

The machine extends the lobby machine of tests/domain/test_rules.py (its rules and
invariants all still run) with the controls, and checks what a refusal must be: a
control sent by someone who is not a seated clinician is ``NotAllowed``, an admit into a
locked session is ``SessionLocked``, a patient's own unmute against the room's policy is
``NotAllowed``.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from telecircle.domain.audience import all_audiences
from telecircle.domain.commands import (
    Admit,
    AdmitAll,
    Command,
    EndSession,
    ForceMedia,
    Join,
    Knock,
    Lock,
    MoveToLobby,
    MuteAll,
    NeedMoment,
    RaiseHand,
    Remove,
    SetOwnMedia,
)
from telecircle.domain.errors import DomainError, NotAllowed, SessionLocked
from telecircle.domain.events import Event, HandChanged, MovedToLobby
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import Place, RoomState, SeatRole, TrackKind
from telecircle.domain.rules import decide
from tests.domain.test_rules import LOBBY_LIMIT, PEOPLE, RoomMachine, pid, with_clinician

# Controls only a seated clinician may give (RaiseHand / NeedMoment too, when ``by`` is
# someone other than their owner: lowering a hand, clearing a moment).
CLINICIAN_ONLY = (ForceMedia, MuteAll, MoveToLobby, Remove, Lock, EndSession)


def is_clinician(state: RoomState, who: ParticipantId | None) -> bool:
    """A seated clinician (the rules' own test for who may give a control)."""
    participant = None if who is None else state.find(who)
    return (
        participant is not None
        and participant.role is SeatRole.CLINICIAN
        and participant.place is not Place.LOBBY
    )


def needs_clinician(command: Command) -> ParticipantId | None:
    """The sender a command needs to be a seated clinician, or None if it needs none."""
    if isinstance(command, CLINICIAN_ONLY):
        return command.by
    if isinstance(command, RaiseHand | NeedMoment) and command.by not in (
        None,
        command.participant_id,
    ):
        return command.by
    return None


def expected_refusal(state: RoomState, command: Command) -> type[DomainError] | None:
    """The refusal the rules must give ``command`` in ``state``, where it is certain."""
    sender = needs_clinician(command)
    if sender is not None and not is_clinician(state, sender):
        return NotAllowed  # a patient (or nobody) can never use the controls
    if isinstance(command, ForceMedia) and (command.audio_off or command.video_off):
        target = state.find(command.participant_id)
        if target is not None and target.role is SeatRole.CLINICIAN and target.id != command.by:
            return NotAllowed  # clinicians are not muted by each other
    if isinstance(command, AdmitAll) and is_clinician(state, command.by) and state.locked:
        return SessionLocked
    if isinstance(command, Admit) and is_clinician(state, command.by) and state.locked:
        waiting = state.find(command.participant_id)
        if waiting is not None and waiting.place is Place.LOBBY:
            return SessionLocked
    if isinstance(command, SetOwnMedia):
        owner = state.find(command.participant_id)
        if owner is not None and owner.role is SeatRole.PATIENT and not state.patients_may_unmute:
            releases = (command.audio_on is True and owner.audio_forced_off) or (
                command.video_on is True and owner.video_forced_off
            )
            if releases:
                return NotAllowed
    return None


class ControlsMachine(RoomMachine):
    """The lobby machine plus the facilitator's controls and the patients' signals.

    Rules pick senders among clinicians, patients and strangers, so controls from
    someone not allowed to give them come up often; ``raised`` models the order in which
    hands went up, from the events alone.
    """

    raised: list[ParticipantId]

    @initialize(limit=st.integers(min_value=2, max_value=8), may_unmute=st.booleans())
    def open_room(self, limit: int, may_unmute: bool) -> None:
        self.limit = limit
        base = with_clinician(limit, lobby_limit=LOBBY_LIMIT)  # p0, who may leave
        self.state = replace(base, patients_may_unmute=may_unmute)
        self.now = 0.0
        self.raised = []

    # ---- applying a command ----------------------------------------------------------

    def apply(self, command: Command) -> None:
        self.now += 1.0
        before = self.state
        expected = expected_refusal(before, command)
        try:
            self.state, events = decide(before, command, self.now)
        except DomainError as refused:
            assert self.state is before, "a refusal changes nothing"
            if expected is not None:
                assert isinstance(refused, expected), (command, refused)
            return
        assert expected is None, f"{command} must be refused with {expected.__name__}"
        self.check_step(before, command, events)

    def check_step(self, before: RoomState, command: Command, events: list[Event]) -> None:
        super().check_step(before, command, events)
        for participant in self.state.participants:
            was = before.find(participant.id)
            if before.locked and was is not None and was.place is Place.LOBBY:
                assert participant.place is Place.LOBBY, "nobody is admitted while locked"
            if was is not None and was.role is SeatRole.CLINICIAN:
                by = getattr(command, "by", None)
                if by is not None and by != participant.id:
                    # Another clinician never turns a clinician's media off.
                    assert participant.audio_forced_off <= was.audio_forced_off
                    assert participant.video_forced_off <= was.video_forced_off
        if isinstance(command, Knock):
            assert len(before.waiting()) < LOBBY_LIMIT, "nobody knocks into a full lobby"
        if isinstance(command, EndSession):
            assert self.state.participants == (), "after the end of the session nobody is left"
        if isinstance(command, MuteAll):
            for participant in self.state.participants:
                was = before.find(participant.id)
                assert was is not None
                if participant.role is SeatRole.PATIENT and participant.place is Place.PLENARY:
                    assert participant.audio_forced_off, "mute all mutes every patient"
                if participant.role is SeatRole.CLINICIAN:
                    assert participant == was, "mute all leaves the clinicians alone"
        if isinstance(command, ForceMedia):
            target = self.state.find(command.participant_id)
            assert target is not None
            if command.audio_off is not None:
                assert target.audio_forced_off is command.audio_off
            if command.video_off is not None:
                assert target.video_forced_off is command.video_off
        if isinstance(command, Remove):
            was = before.find(command.participant_id)
            assert was is not None and was.role is SeatRole.PATIENT
            assert self.state.find(command.participant_id) is None
        self.follow_hands(events)

    def follow_hands(self, events: list[Event]) -> None:
        """Keep the order of raising from the events; a hand goes down with its owner's
        seat, or on their way back to the lobby."""
        for event in events:
            if isinstance(event, HandChanged):
                if event.participant_id in self.raised:
                    self.raised.remove(event.participant_id)
                if event.raised:
                    self.raised.append(event.participant_id)
            elif isinstance(event, MovedToLobby) and event.participant_id in self.raised:
                self.raised.remove(event.participant_id)
        present = {p.id for p in self.state.participants}
        self.raised = [p for p in self.raised if p in present]

    # ---- picking senders and targets ------------------------------------------------

    def anyone(self) -> list[ParticipantId]:
        return [p.id for p in self.state.participants]

    def patients(self) -> list[ParticipantId]:
        return [p.id for p in self.state.participants if p.role is SeatRole.PATIENT]

    def sender(self, data: st.DataObject) -> ParticipantId:
        """Mostly a clinician; often a patient; sometimes a stranger."""
        choices: list[st.SearchStrategy[ParticipantId]] = [st.builds(pid, PEOPLE)]
        if self.clinicians():
            choices += [st.sampled_from(self.clinicians())] * 2
        if self.patients():
            choices.append(st.sampled_from(self.patients()))
        who: ParticipantId = data.draw(st.one_of(*choices))
        return who

    # ---- arrivals -----------------------------------------------------------------------

    @rule(data=st.data())
    def patient_let_in(self, data: st.DataObject) -> None:
        """A patient knocks and a clinician lets them in (one joins first if none is
        there): the controls mostly act on patients in the session, so get them there
        often."""
        free = [n for n in range(8) if self.state.find(pid(n)) is None]
        if not self.clinicians() and free:
            self.apply(Join(pid(free.pop()), "clinician"))
        n = data.draw(st.sampled_from(free) if free else PEOPLE)
        self.apply(Knock(pid(n), f"name {n}"))
        if self.clinicians():
            self.apply(Admit(pid(n), data.draw(st.sampled_from(self.clinicians())), self.limit))

    def in_session(self, role: SeatRole | None = None) -> list[ParticipantId]:
        return [
            p.id
            for p in self.state.participants
            if p.place is Place.PLENARY and (role is None or p.role is role)
        ]

    # ---- the controls ------------------------------------------------------------------

    @rule(
        data=st.data(),
        audio_off=st.sampled_from([True, False, None]),
        video_off=st.sampled_from([True, False, None]),
    )
    def force_media(
        self, data: st.DataObject, audio_off: bool | None, video_off: bool | None
    ) -> None:
        target = self.pick(data, self.in_session())
        self.apply(ForceMedia(target, self.sender(data), audio_off, video_off))

    @rule(data=st.data())
    def mute_all(self, data: st.DataObject) -> None:
        self.apply(MuteAll(self.sender(data)))

    @rule(data=st.data(), kind=st.sampled_from(TrackKind))
    def unmute_self(self, data: st.DataObject, kind: TrackKind) -> None:
        """Someone tries to switch back on what may have been forced off."""
        who = self.pick(data, [p.id for p in self.state.participants if p.audio_forced_off])
        if kind is TrackKind.AUDIO:
            self.apply(SetOwnMedia(who, audio_on=True))
        else:
            self.apply(SetOwnMedia(who, video_on=True))

    @rule(data=st.data(), raised=st.booleans(), by_other=st.booleans())
    def raise_hand(self, data: st.DataObject, raised: bool, by_other: bool) -> None:
        who = self.pick(data, self.anyone())
        self.apply(RaiseHand(who, raised, by=self.sender(data) if by_other else None))

    @rule(data=st.data(), needed=st.booleans(), by_other=st.booleans())
    def need_moment(self, data: st.DataObject, needed: bool, by_other: bool) -> None:
        who = self.pick(data, self.anyone())
        self.apply(NeedMoment(who, needed, by=self.sender(data) if by_other else None))

    @rule(data=st.data())
    def move_to_lobby(self, data: st.DataObject) -> None:
        target = self.pick(data, self.in_session(SeatRole.PATIENT))
        self.apply(MoveToLobby(target, self.sender(data)))

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        self.apply(Remove(self.pick(data, self.in_session()), self.sender(data)))

    @rule(data=st.data(), locked=st.sampled_from([True, False, False]))
    def lock(self, data: st.DataObject, locked: bool) -> None:
        self.apply(Lock(self.sender(data), locked))

    @rule(data=st.data(), really=st.integers(min_value=0, max_value=7))
    def end_session(self, data: st.DataObject, really: int) -> None:
        # Mostly sent by a patient (refused), so sequences go on long enough.
        by = self.sender(data) if really == 0 else self.pick(data, self.patients())
        self.apply(EndSession(by))

    # ---- invariants --------------------------------------------------------------------

    @invariant()
    def forced_or_switched_off_tracks_reach_nobody(self) -> None:
        in_plenary = set(self.in_session())
        for track, members in all_audiences(self.state).items():
            owner = self.state.find(track.owner)
            assert owner is not None
            assert track.owner not in members, "nobody receives their own track"
            assert members <= in_plenary, "the audience never includes the lobby"
            if track.kind is TrackKind.AUDIO:
                off = owner.audio_forced_off or not owner.audio_on
            elif track.kind is TrackKind.VIDEO:
                off = owner.video_forced_off or not owner.video_on
            else:
                off = not owner.screen_on
            if off:
                assert members == frozenset(), "a track forced or switched off reaches nobody"

    @invariant()
    def one_seat_each_and_limits_hold(self) -> None:
        """The lobby machine's invariant, except that the lobby's limit bounds knocks
        only (checked in check_step): a clinician sending someone back to the lobby
        (MoveToLobby) is never refused for a full lobby, so the lobby may run over."""
        ids = [p.id for p in self.state.participants]
        assert len(ids) == len(set(ids))
        assert self.state.seats_taken() <= self.limit
        for participant in self.state.participants:
            if participant.role is SeatRole.CLINICIAN:
                assert participant.place is Place.PLENARY, "clinicians never wait"

    @invariant()
    def everyone_in_exactly_one_place(self) -> None:
        ids = [p.id for p in self.state.participants]
        assert len(ids) == len(set(ids))
        waiting = {p.id for p in self.state.waiting()}
        seated = {p.id for p in self.state.participants if p.place is not Place.LOBBY}
        assert not waiting & seated and waiting | seated == set(ids)
        assert self.state.seats_taken() == len(seated) <= self.limit

    @invariant()
    def hands_in_order_of_raising(self) -> None:
        assert [p.id for p in self.state.hands()] == self.raised
        for participant in self.state.waiting():
            assert participant.hand_raised_at is None and participant.needs_moment_since is None


ControlsMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None
)
TestAnySequenceOfControlsKeepsTheInvariants = ControlsMachine.TestCase


def test_mute_all_leaves_the_lobby_alone() -> None:
    """``_mute_all``'s contract: "Every patient outside the lobby, muted"."""
    state, _ = decide(with_clinician(), Knock(pid(1), "Bo"), 1)
    after, events = decide(state, MuteAll(pid(0)), 2)
    waiting = after.find(pid(1))
    assert waiting is not None and not waiting.audio_forced_off
    assert events == []
