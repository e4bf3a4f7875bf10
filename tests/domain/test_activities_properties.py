"""Pair work and segments as a property: any sequence of joins, leaves, drops, returns,
controls, pairs, visits, segments and timer expiries keeps the room's invariants, and
above all the privacy of pairs and segments: nobody receives a track from outside their
pair (or from a clinician not visiting it), and nobody outside a segment receives either
of its two people.

The machine extends the controls machine of test_controls_properties (its rules and
invariants all still run).
"""

from __future__ import annotations

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from telecircle.domain.activities import next_deadline, pair_up
from telecircle.domain.audience import all_audiences
from telecircle.domain.commands import (
    Command,
    EndPairs,
    EndSegment,
    Extend,
    MessagePairs,
    NextSegment,
    QueueSegment,
    ShareScreen,
    StartPairs,
    StartSegment,
    TimersDue,
    VisitPair,
)
from telecircle.domain.errors import DomainError, NotAllowed
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import OthersDuringSegment, Place, SeatRole
from telecircle.domain.placement import Spot, locations
from telecircle.domain.rules import decide
from tests.domain.test_controls_properties import ControlsMachine, is_clinician

CLINICIAN_ONLY = (
    StartPairs,
    VisitPair,
    MessagePairs,
    EndPairs,
    Extend,
    StartSegment,
    QueueSegment,
    NextSegment,
    EndSegment,
)


class ActivitiesMachine(ControlsMachine):
    @initialize(
        limit=st.integers(min_value=2, max_value=8),
        may_unmute=st.booleans(),
        patients=st.integers(min_value=0, max_value=5),
        data=st.data(),
    )
    def open_room(  # type: ignore[override]
        self, limit: int, may_unmute: bool, patients: int, data: st.DataObject
    ) -> None:
        """The controls machine's room, with some patients already in the session (so
        that pairs and segments have someone to work with from the first step)."""
        ControlsMachine.open_room(self, limit, may_unmute)
        for _ in range(patients):
            self.patient_let_in(data)

    def apply(self, command: Command) -> None:
        if isinstance(command, CLINICIAN_ONLY) and not is_clinician(self.state, command.by):
            before = self.state
            try:
                decide(before, command, self.now + 1.0)
            except NotAllowed:
                return
            except DomainError as other:
                raise AssertionError(f"{command} must be NotAllowed, not {other!r}") from None
            raise AssertionError(f"{command} from a non-clinician must be refused")
        super().apply(command)
        if self.state.breakout is not None:
            event("pairs running")
        if self.state.segment is not None:
            event("segment running")

    # ---- pairs --------------------------------------------------------------------------

    @rule(data=st.data(), by_hand=st.booleans(), minutes=st.sampled_from([0.5, 1, 10, 61]))
    def start_pairs(self, data: st.DataObject, by_hand: bool, minutes: float) -> None:
        patients = self.in_session(SeatRole.PATIENT)
        order = data.draw(st.permutations(patients))
        if by_hand and order:
            # Any cut of the patients into runs, valid or not (groups of one or four).
            sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=5))
            groups: list[tuple[ParticipantId, ...]] = []
            start = 0
            for size in sizes:
                if start >= len(order):
                    break
                groups.append(tuple(order[start : start + size]))
                start += size
            chosen = tuple(groups)
        else:
            try:
                chosen = pair_up(order)
            except DomainError:
                chosen = ()
        self.apply(StartPairs(self.sender(data), minutes * 60.0, chosen))

    @rule(data=st.data(), group=st.sampled_from([None, 0, 1, 2, 5]))
    def visit(self, data: st.DataObject, group: int | None) -> None:
        self.apply(VisitPair(self.sender(data), group))

    @rule(data=st.data(), text=st.sampled_from(["", "Two minutes", "x" * 300]))
    def message(self, data: st.DataObject, text: str) -> None:
        self.apply(MessagePairs(self.sender(data), text))

    @rule(data=st.data())
    def end_pairs(self, data: st.DataObject) -> None:
        self.apply(EndPairs(self.sender(data)))

    @rule(data=st.data(), seconds=st.sampled_from([0.0, 60.0, 300.0, 2000.0]))
    def extend(self, data: st.DataObject, seconds: float) -> None:
        self.apply(Extend(self.sender(data), seconds))

    # ---- segments -----------------------------------------------------------------------

    @rule(
        data=st.data(),
        others=st.sampled_from(OthersDuringSegment),
        minutes=st.sampled_from([None, 5, 10, 15, 20, 25]),
    )
    def start_segment(
        self, data: st.DataObject, others: OthersDuringSegment, minutes: int | None
    ) -> None:
        people = data.draw(
            st.lists(
                st.builds(ParticipantId, st.sampled_from([*self.anyone(), "stranger"])), max_size=4
            )
        )
        seconds = None if minutes is None else minutes * 60.0
        self.apply(StartSegment(self.sender(data), tuple(people), others, seconds))

    @rule(data=st.data())
    def pair_work(self, data: st.DataObject) -> None:
        """Often enough to matter: two patients let in, then pairs at random."""
        self.patient_let_in(data)
        self.patient_let_in(data)
        self.start_pairs(data, by_hand=False, minutes=10)

    @rule(data=st.data(), others=st.sampled_from(OthersDuringSegment))
    def segment_work(self, data: st.DataObject, others: OthersDuringSegment) -> None:
        """Often enough to matter: a patient let in, then a segment run."""
        self.patient_let_in(data)
        self.start_segment(data, others, None)

    @rule(data=st.data())
    def queue_segment(self, data: st.DataObject) -> None:
        self.apply(QueueSegment(self.sender(data), self.pick(data, self.in_session())))

    @rule(data=st.data())
    def next_segment(self, data: st.DataObject) -> None:
        self.apply(NextSegment(self.sender(data)))

    @rule(data=st.data())
    def end_segment(self, data: st.DataObject) -> None:
        self.apply(EndSegment(self.sender(data)))

    @rule(data=st.data(), on=st.booleans())
    def share_screen(self, data: st.DataObject, on: bool) -> None:
        sharer = self.sender(data)
        before = self.state
        self.apply(ShareScreen(sharer, on))
        if self.state is not before:
            assert is_clinician(before, sharer), "only clinicians share their screen"
        assert sum(p.screen_on for p in self.state.participants) <= 1, "one screen at a time"

    # ---- time ---------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1.0, 30.0, 61.0, 300.0, 900.0, 1300.0]))
    def time_passes(self, seconds: float) -> None:
        """The server's timer: due warnings and ends are applied at the new time."""
        self.now += seconds
        before = self.state
        self.state, events = decide(before, TimersDue(), self.now)
        self.check_step(before, TimersDue(), events)
        deadline = next_deadline(self.state)
        assert deadline is None or deadline > self.now, "nothing due is left waiting"

    # ---- invariants ---------------------------------------------------------------------

    @invariant()
    def activities_hold_only_people_in_the_session(self) -> None:
        present = set(self.in_session())
        breakout, segment = self.state.breakout, self.state.segment
        assert breakout is None or segment is None, "one timed activity at a time"
        if breakout is not None:
            members = [m for group in breakout.groups for m in group]
            assert len(members) == len(set(members)), "nobody is in two pairs"
            assert set(members) <= present
            assert all(len(group) in (0, 2, 3) for group in breakout.groups)
            assert any(breakout.groups), "pair work with no pairs has ended"
            for clinician, group in breakout.visits:
                assert clinician in present and breakout.groups[group]
        if segment is not None:
            assert {segment.clinician, segment.patient} <= present
            assert set(segment.queue) <= present
            assert segment.patient not in segment.queue

    @invariant()
    def pairs_and_segments_are_private(self) -> None:
        breakout, segment = self.state.breakout, self.state.segment
        where = locations(self.state)
        for track, listeners in all_audiences(self.state).items():
            place = where[track.owner]
            for listener in listeners:
                assert where[listener] == place, "media flows only within one place"
            if breakout is not None:
                group = breakout.group_of(track.owner)
                if group is not None:
                    allowed = set(breakout.groups[group]) | {
                        c for c, g in breakout.visits if g == group
                    }
                    assert listeners <= allowed, "a pair's media stays in the pair"
            if segment is not None and track.owner in (segment.clinician, segment.patient):
                assert listeners <= {segment.clinician, segment.patient}
        if segment is not None and segment.others is OthersDuringSegment.HOLD:
            for p in self.state.admitted_patients():
                if p.id != segment.patient:
                    assert where[p.id].spot is Spot.HOLD, "the others wait on hold"

    @invariant()
    def patients_are_never_left_alone_together_by_accident(self) -> None:
        """In the plenary, patients share media only with a connected clinician there,
        or when the facilitator chose to let the group go on during a segment."""
        where = locations(self.state)
        chosen = (
            self.state.segment is not None
            and self.state.segment.others is OthersDuringSegment.PLENARY
        )
        plenary = [p for p in self.state.participants if where[p.id].spot is Spot.PLENARY]
        led = any(p.role is SeatRole.CLINICIAN and not p.away for p in plenary)
        patients = [p for p in plenary if p.role is SeatRole.PATIENT]
        if patients and not chosen:
            assert led, "patients in the plenary have a clinician with them"
        for p in self.state.participants:
            if p.place is Place.LOBBY:
                assert where[p.id].spot is Spot.LOBBY


ActivitiesMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)
TestAnySequenceOfActivitiesKeepsPairsAndSegmentsPrivate = ActivitiesMachine.TestCase
