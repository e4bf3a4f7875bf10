"""Breakout pairs and individual segments, enforced by the SFU: real server, real aiortc
peers (the room's therapist and patients admitted from the lobby; a co-facilitator
where a test needs one).

Every check states where everyone is as a partition of the people (:meth:`Circle.expect`):
people in the same part exchange audio and video both ways, and nobody receives a
single packet from anyone outside their part. It is checked three ways, from the ack
(or, for the server's own timers, from the ``activity`` event) on:

- what each participant is told: their ``activity`` event's ``with_ids``;
- at the server's send side, per receiver slot (each slot sender's RTP packet count, as
  in test_mute_privacy): no slot whose publisher is outside the receiver's part — or
  that has no publisher — sends anything after the ack;
- at the receivers, by who sent each packet, whatever slot it came on and whatever the
  slot reports say: every frame a peer publishes ends with a tag naming its sender and
  kind (the SFU rewrites the RTP header and the VP8 payload descriptor only, and nobody
  here decodes). Packets already on the wire may still arrive: the forbidden counts
  must go quiet (bounded), then stay unchanged over a window in which every owner
  keeps sending and every allowed track keeps arriving.

Someone who is newly routed to another (a visit, the end of pair work, the end of a
segment) must also receive a fresh keyframe from them: the SFU's slot waits for one
before it forwards any video. Each test starts from the plenary where everyone receives
everyone, so a server that ignored pairs or segments fails the forbidden-count checks.
Waits are bounded and end by themselves; no assertion is on wall-clock time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiortc.rtp import RtpPacket

from telecircle.domain.ids import ParticipantId, RoomCode
from telecircle.domain.model import TrackKind
from telecircle.media import aiortc_tap
from telecircle.media.room import MediaRoom
from telecircle.media.vp8 import parse_vp8
from tests.conftest import ROOMS, RunningServer, start_server
from tests.integration.signalled_room import SignalledRoom
from tests.integration.test_mute_privacy import FLOW_TIMEOUT, WINDOW_PACKETS, Member, settle
from tests.media.peer import EncodedMedia, SyntheticPeer, encode_media, wait_until
from tests.signalling.client import Client

pytestmark = [pytest.mark.media, pytest.mark.timeout(300)]

AUDIO, VIDEO = TrackKind.AUDIO, TrackKind.VIDEO
KINDS = (AUDIO, VIDEO)  # every peer's camera and microphone (nobody shares a screen here)
TAG_MAGIC = b"\x00tc-from"
KIND_BYTE = {AUDIO: 0x61, VIDEO: 0x76}
BYTE_KIND = {byte: kind for kind, byte in KIND_BYTE.items()}
# aiortc splits a VP8 frame over several packets above ~1290 bytes: only the last would
# carry the tag. The synthetic frames are far smaller (checked when they are tagged).
MAX_TAGGED_FRAME = 1000
# The timers of these tests: pair work and segments of a few seconds.
SHORT = {
    "pairs_min_seconds": 1,
    "segment_min_seconds": 1,
    "timer_warning_seconds": 1,
}
LONG_S = 600  # a duration no test waits out
ACTIVITY_TIMEOUT = 30.0  # the server's own timer ending something (its duration + slack)

SlotCounts = dict[tuple[int, TrackKind], tuple[ParticipantId | None, int]]


# ---- tagged media and the peers that count it by sender ------------------------------------


def tag(index: int, kind: TrackKind) -> bytes:
    return TAG_MAGIC + bytes((index, KIND_BYTE[kind]))


def read_tag(payload: bytes) -> tuple[int, TrackKind] | None:
    if len(payload) < len(TAG_MAGIC) + 2 or payload[-len(TAG_MAGIC) - 2 : -2] != TAG_MAGIC:
        return None
    kind = BYTE_KIND.get(payload[-1])
    return None if kind is None else (payload[-2], kind)


def tagged_media(index: int) -> EncodedMedia:
    """The synthetic media of colour ``index``, each frame ending with its tag."""
    media = encode_media(index, frames=10)
    assert max(len(frame) for frame in (*media.video, *media.audio)) <= MAX_TAGGED_FRAME
    return EncodedMedia(
        media.colour,
        tuple(frame + tag(index, VIDEO) for frame in media.video),
        tuple(frame + tag(index, AUDIO) for frame in media.audio),
    )


class TaggedPeer(SyntheticPeer):
    """A synthetic peer publishing tagged media, counting what it receives by sender."""

    def __init__(self, pid: str, index: int) -> None:
        super().__init__(pid, tagged_media(index))
        self.index = index
        self.heard: Counter[tuple[int, TrackKind]] = Counter()  # (sender, kind) -> packets
        self.keyframes_from: Counter[int] = Counter()  # sender -> first packets of keyframes
        self.stray = 0  # packets without a tag of the kind of the slot they came on

    def _watch(self, transceiver: Any) -> None:
        super()._watch(transceiver)
        kind = AUDIO if transceiver.kind == "audio" else VIDEO

        async def attribute(packet: RtpPacket) -> None:
            found = read_tag(packet.payload)
            if found is None or found[1] is not kind:
                self.stray += 1
                return
            self.heard[found] += 1
            if kind is VIDEO:
                info = parse_vp8(packet.payload)
                if info is not None and info.keyframe:
                    self.keyframes_from[found[0]] += 1

        aiortc_tap.tap_rtp(transceiver.receiver, attribute)


@dataclass
class Person(Member):
    """A member of the session whose peer tags what it publishes."""

    peer: TaggedPeer

    async def ok(self, event: str, data: dict[str, Any] | None = None) -> None:
        ack = await self.call(event, data)
        assert ack["ok"], (self.name, event, ack)

    def activity(self) -> dict[str, Any]:
        return dict(self.client.last("activity") or {})


# ---- the session and its checks ------------------------------------------------------------

Parts = Sequence[Sequence[Person]]


@dataclass
class Circle:
    """Everyone in one session, and the partition last checked."""

    server: RunningServer
    code: str
    people: list[Person] = field(default_factory=list)
    parts: list[frozenset[ParticipantId]] = field(default_factory=list)

    @property
    def therapist(self) -> Person:
        return self.people[0]

    def named(self, *names: str) -> list[Person]:
        by_name = {p.name: p for p in self.people}
        return [by_name[n] for n in names]

    # ---- joining ---------------------------------------------------------------------

    async def enter(self, name: str, cookie: str) -> Person:
        """Join (a patient knocks and the therapist admits them), publish, subscribe."""
        client = await Client().connect(self.server.url, cookie)
        ack = await client.call("join", {"room_code": self.code})
        assert ack["ok"], ack
        pid = ack["data"]["participant_id"]
        if ack["data"]["place"] == "lobby":
            await self.therapist.ok("admit", {"participant_id": pid})
            await client.wait_for(
                lambda: client.last("admitted") is not None, timeout=ACTIVITY_TIMEOUT
            )
        peer = TaggedPeer(pid, len(self.people))
        room = SignalledRoom(client)
        await peer.publish(room)  # type: ignore[arg-type]
        await peer.subscribe(room, 0)  # type: ignore[arg-type]
        person = Person(name, client, peer)
        self.people.append(person)
        return person

    async def close(self) -> None:
        for person in self.people:
            await person.client.close()
            await person.peer.close()

    # ---- counting ----------------------------------------------------------------------

    @staticmethod
    def heard(receiver: Person, owner: Person, kind: TrackKind) -> int:
        """Packets of ``owner``'s ``kind`` that ``receiver`` has received, by their tag."""
        return receiver.peer.heard[(owner.peer.index, kind)]

    def slot_counts(self, receiver: Person) -> SlotCounts:
        """Per slot of ``receiver`` and kind (and its screen m-line): its publisher now,
        and the packets the SFU has sent on that slot's sender so far
        (aiortc_tap.SlotSenderTap.packets_sent; NACK resends are not counted)."""
        live = self.server.app[ROOMS].live_room(RoomCode(self.code))
        assert live is not None
        media = live.media
        assert isinstance(media, MediaRoom)
        subscriber = media._subscribers[receiver.pid]
        fed = [
            (index, owner, track_slot)
            for index, owner in subscriber.table.assignments()
            for track_slot in subscriber.slots[index]
        ]
        # The screen m-line after the slots: nobody shares, so it must send nothing.
        screen = subscriber.screen
        fed.append((len(subscriber.slots), screen.publisher, screen))
        counts: SlotCounts = {}
        for index, owner, track_slot in fed:
            assert track_slot.tap is not None
            sent = track_slot.tap.packets_sent
            counts[(index, track_slot.kind)] = (owner, sent)
        return counts

    def keyframes(self) -> dict[ParticipantId, Counter[int]]:
        return {p.pid: Counter(p.peer.keyframes_from) for p in self.people}

    # ---- the check ---------------------------------------------------------------------

    async def flowing(self) -> None:
        """Until everyone receives both kinds from everyone else (the plenary)."""
        everyone = self.people
        await wait_until(
            lambda: all(
                self.heard(r, o, k) >= 3
                for r in everyone
                for o in everyone
                if o is not r
                for k in KINDS
            ),
            timeout=FLOW_TIMEOUT,
        )
        self.parts = [frozenset(p.pid for p in everyone)]

    async def change(
        self, by: Person, event: str, data: dict[str, Any], parts: Parts
    ) -> dict[str, Any]:
        """Send a control and check that routing follows it to ``parts``."""
        keyframes = self.keyframes()
        ack = await by.call(event, data)
        assert ack["ok"], (by.name, event, ack)
        await self.expect(parts, keyframes)
        return ack

    async def expect(
        self, parts: Parts, keyframes_before: dict[ParticipantId, Counter[int]] | None = None
    ) -> None:
        """Media flows within each of ``parts`` and nowhere else (see the module doc).

        Call it straight after the change's ack (or the ``activity`` event of a change
        the server's timer made). ``keyframes_before``: keyframe counts taken before the
        change, for the people newly routed to each other.
        """
        part_of = {p.pid: i for i, part in enumerate(parts) for p in part}
        assert sorted(part_of) == sorted(p.pid for p in self.people), "a partition of everyone"
        server_at_ack = {r.pid: self.slot_counts(r) for r in self.people}
        if keyframes_before is None:
            keyframes_before = self.keyframes()
        people = self.people

        def allowed(receiver: ParticipantId, owner: ParticipantId) -> bool:
            return receiver != owner and part_of[receiver] == part_of[owner]

        def was_allowed(receiver: ParticipantId, owner: ParticipantId) -> bool:
            return any(receiver in part and owner in part for part in self.parts)

        routes = [(r, o) for r in people for o in people if allowed(r.pid, o.pid)]
        forbidden = [
            (r, o) for r in people for o in people if o is not r and not allowed(r.pid, o.pid)
        ]

        # What each participant is told: the others they get media from.
        for person in people:
            mates = {o.pid for r, o in routes if r is person}
            await person.client.wait_for(
                lambda person=person, mates=mates: (
                    set(person.activity().get("with_ids", ())) == mates
                ),
                timeout=ACTIVITY_TIMEOUT,
            )

        # Within each part, both kinds flow both ways; newly routed people get a keyframe.
        await self.flows(routes)
        for r, o in routes:
            if not was_allowed(r.pid, o.pid):
                got = r.peer.keyframes_from[o.peer.index] - keyframes_before[r.pid][o.peer.index]
                assert got > 0, f"{r.name} got no fresh keyframe from {o.name}"

        # Across parts: what was on the wire arrives, then nothing more.
        def forbidden_counts() -> dict[tuple[str, str, str], int]:
            return {
                (r.name, o.name, k.value): self.heard(r, o, k) for r, o in forbidden for k in KINDS
            }

        settling = forbidden_counts()
        try:
            await settle(forbidden_counts)
        except TimeoutError:
            moved = forbidden_counts()
            still = sorted(key for key, n in moved.items() if n != settling[key])
            raise AssertionError(
                f"media kept arriving from outside someone's part: {still[:8]}"
            ) from None
        baseline = forbidden_counts()
        sent = {(o.pid, k): o.sent(k) for o in people for k in KINDS}
        owners = {o.pid: o for o in people}
        watch_sending = wait_until(
            lambda: all(owners[o].sent(k) >= n + WINDOW_PACKETS[k] for (o, k), n in sent.items()),
            timeout=FLOW_TIMEOUT,
        )
        await asyncio.gather(watch_sending, self.flows(routes))
        after = forbidden_counts()
        leaks = {key: after[key] - n for key, n in baseline.items() if after[key] != n}
        assert not leaks, f"(receiver, owner, kind) -> packets received across parts: {leaks}"

        # At the server: nothing sent on a slot of someone outside the receiver's part
        # (or of nobody), and every route has a slot that keeps sending.
        for r in people:
            now = self.slot_counts(r)
            for slot, (owner, count) in now.items():
                if owner is None or not allowed(r.pid, owner):
                    assert count == server_at_ack[r.pid][slot][1], (
                        f"the server sent {r.name} {count - server_at_ack[r.pid][slot][1]} "
                        f"packets on slot {slot} of {owner} after the ack"
                    )
            for o in (o for rr, o in routes if rr is r):
                fed = [(slot, c) for slot, (owner, c) in now.items() if owner == o.pid]
                assert {slot[1] for slot, _ in fed} == set(KINDS), (
                    f"{r.name} has no slot of {o.name}"
                )
                for slot, count in fed:
                    assert count > server_at_ack[r.pid][slot][1], f"{o.name} -> {r.name} {slot}"

        for person in people:
            assert person.peer.stray == 0, f"{person.name} received untagged packets"
        self.parts = [frozenset(p.pid for p in part) for part in parts]

    async def flows(self, routes: Iterable[tuple[Person, Person]], packets: int = 3) -> None:
        """Until every receiver has ``packets`` more of both kinds from its route's owner."""
        start = {(r.pid, o.pid, k): (r, o, self.heard(r, o, k)) for r, o in routes for k in KINDS}
        try:
            await wait_until(
                lambda: all(
                    self.heard(r, o, k) >= n + packets for (_, _, k), (r, o, n) in start.items()
                ),
                timeout=FLOW_TIMEOUT,
            )
        except TimeoutError:
            stuck = [
                (r.name, o.name, k.value)
                for (_, _, k), (r, o, n) in start.items()
                if self.heard(r, o, k) < n + packets
            ]
            raise AssertionError(f"(receiver, owner, kind) not flowing: {stuck}") from None


async def open_circle(
    server: RunningServer, patients: int, *, co_facilitator: bool = False
) -> Circle:
    """The room's therapist, an optional co-facilitator, then ``patients`` patients let in
    from the lobby; media flowing between everyone."""
    code = await server.create_room(limit=1 + int(co_facilitator) + patients)
    circle = Circle(server, code)
    await circle.enter("therapist", await server.owner_cookie(code))
    if co_facilitator:
        await circle.enter("co", await server.clinician_cookie(code, "Dr Co"))
    for n in range(patients):
        name = "ABCDE"[n]
        await circle.enter(name, await server.patient_cookie(code, name))
    await circle.flowing()
    return circle


@pytest.fixture
async def short_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path, **SHORT)
    yield running
    await running.runner.cleanup()


async def told(person: Person, predicate: Any) -> None:
    """Until ``person`` has been sent an ``activity`` event that ``predicate`` accepts
    (their latest may have moved on since: the server's timers wait for nobody)."""
    await person.client.wait_for(
        lambda: any(predicate(data) for name, data in person.client.events if name == "activity"),
        timeout=ACTIVITY_TIMEOUT,
    )


def ended(person: Person) -> bool:
    """Whether ``person`` has been told of a running timer and, later, of none."""
    timers = [data["timer"] for name, data in person.client.events if name == "activity"]
    started = next((i for i, timer in enumerate(timers) if timer is not None), None)
    return started is not None and any(timer is None for timer in timers[started:])


def pids(people: Iterable[Person]) -> list[str]:
    return [str(p.pid) for p in people]


# ---- the tests -------------------------------------------------------------------------------


async def test_patients_may_not_run_activities(short_server: RunningServer) -> None:
    """Every pair-work and segment control, sent by a patient, is refused and changes
    nothing (no media needed)."""
    server = short_server
    code = await server.create_room(limit=3)
    lead = await Client().connect(server.url, await server.owner_cookie(code))
    patients: list[Client] = []
    try:
        assert (await lead.call("join", {"room_code": code}))["ok"]
        ids = []
        for name in ("Pat", "Sam"):
            client = await Client().connect(server.url, await server.patient_cookie(code, name))
            patients.append(client)
            ack = await client.call("join", {"room_code": code})
            ids.append(ack["data"]["participant_id"])
            assert (await lead.call("admit", {"participant_id": ids[-1]}))["ok"]
            await client.wait_for(lambda client=client: client.last("activity") is not None)
        pat = patients[0]
        requests: dict[str, dict[str, Any]] = {
            "start_pairs": {"duration_seconds": 60, "groups": None},
            "visit_pair": {"group": 0},
            "message_pairs": {"text": "hello"},
            "end_pairs": {},
            "extend": {"seconds": 60},
            "start_segment": {"participant_ids": ids, "others": "hold", "duration_seconds": 60},
            "queue_segment": {"participant_id": ids[1]},
            "next_segment": {},
            "end_segment": {},
        }
        for event, data in requests.items():
            ack = await pat.call(event, data)
            assert not ack["ok"] and ack["error"]["code"] == "not_allowed", (event, ack)
        # Nothing started: the therapist's view shows no pairs, no segment, no timer.
        view = lead.last("activity")
        assert view["timer"] is None
        assert view["facilitator"]["pairs"] == [] and view["facilitator"]["segment"] is None
        # The same pair work from the therapist is accepted (the requests were valid).
        ack = await lead.call("start_pairs", requests["start_pairs"])
        assert ack["ok"], ack
    finally:
        for client in (lead, *patients):
            await client.close()


async def test_pairs_by_hand_and_a_visit_keep_media_inside_each_pair(
    short_server: RunningServer,
) -> None:
    circle = await open_circle(short_server, patients=4)
    try:
        therapist = circle.therapist
        a, b, c, d = circle.named("A", "B", "C", "D")
        # Before pair work everyone receives everyone (flowing() checked it): the
        # cross-pair counts below would keep growing if the server ignored the pairs.
        await circle.change(
            therapist,
            "start_pairs",
            {"duration_seconds": LONG_S, "groups": [pids([a, b]), pids([c, d])]},
            [[therapist], [a, b], [c, d]],
        )
        assert a.activity()["place"] == {"spot": "pair", "pair": 0}
        assert d.activity()["place"] == {"spot": "pair", "pair": 1}
        assert therapist.activity()["facilitator"]["pairs"] == [pids([a, b]), pids([c, d])]

        await circle.change(therapist, "visit_pair", {"group": 0}, [[therapist, a, b], [c, d]])
        assert therapist.activity()["place"] == {"spot": "pair", "pair": 0}
        await circle.change(therapist, "visit_pair", {"group": None}, [[therapist], [a, b], [c, d]])
        assert therapist.activity()["place"] == {"spot": "plenary", "pair": None}

        await circle.change(therapist, "end_pairs", {}, [[therapist, a, b, c, d]])
        assert all(p.activity()["timer"] is None for p in circle.people)
    finally:
        await circle.close()


async def test_a_patient_left_out_of_the_pairs_is_on_hold_while_the_therapist_visits(
    short_server: RunningServer,
) -> None:
    """C is in no pair: with the therapist in the plenary C stays there with them; while
    the only clinician visits a pair, C is alone in the plenary, so on hold."""
    circle = await open_circle(short_server, patients=3)
    try:
        therapist = circle.therapist
        a, b, c = circle.named("A", "B", "C")
        pairs = {"duration_seconds": LONG_S, "groups": [pids([a, b])]}
        await circle.change(therapist, "start_pairs", pairs, [[therapist, c], [a, b]])
        await circle.change(therapist, "visit_pair", {"group": 0}, [[therapist, a, b], [c]])
        assert c.activity()["place"]["spot"] == "hold"
        await circle.change(therapist, "visit_pair", {"group": None}, [[therapist, c], [a, b]])
        assert c.activity()["place"]["spot"] == "plenary"
    finally:
        await circle.close()


async def test_random_pairs_with_an_odd_number_make_a_trio(short_server: RunningServer) -> None:
    circle = await open_circle(short_server, patients=5)
    try:
        therapist = circle.therapist
        patients = circle.people[1:]
        ack = await therapist.call("start_pairs", {"duration_seconds": LONG_S, "groups": None})
        assert ack["ok"], ack
        await told(therapist, lambda view: view["facilitator"]["pairs"])
        groups = therapist.activity()["facilitator"]["pairs"]
        assert sorted(len(g) for g in groups) == [2, 3], groups
        assert sorted(i for g in groups for i in g) == sorted(pids(patients))
        by_pid = {str(p.pid): p for p in patients}
        await circle.expect([[therapist], *([by_pid[i] for i in g] for g in groups)])
    finally:
        await circle.close()


async def test_pairs_end_when_their_time_is_up(short_server: RunningServer) -> None:
    circle = await open_circle(short_server, patients=4)
    try:
        therapist = circle.therapist
        a, b, c, d = circle.named("A", "B", "C", "D")
        ack = await therapist.call(
            "start_pairs", {"duration_seconds": 3, "groups": [pids([a, c]), pids([b, d])]}
        )
        assert ack["ok"], ack
        keyframes = circle.keyframes()
        for person in (a, b, c, d):
            await told(person, lambda view: view["place"]["spot"] == "pair")
        circle.parts = [frozenset(p.pid for p in part) for part in ([therapist], [a, c], [b, d])]
        # The server's timer warns, then ends the pair work: everyone is told.
        await therapist.client.wait_for(lambda: ended(therapist), timeout=ACTIVITY_TIMEOUT)
        await circle.expect([[therapist, a, b, c, d]], keyframes)
    finally:
        await circle.close()


async def test_a_segment_with_the_others_on_hold(short_server: RunningServer) -> None:
    circle = await open_circle(short_server, patients=4)
    try:
        therapist = circle.therapist
        a, b, c, d = circle.named("A", "B", "C", "D")
        await circle.change(
            therapist,
            "start_segment",
            {"participant_ids": pids([a]), "others": "hold", "duration_seconds": LONG_S},
            [[therapist, a], [b], [c], [d]],
        )
        assert a.activity()["place"]["spot"] == "segment"
        assert all(p.activity()["place"]["spot"] == "hold" for p in (b, c, d))
        await circle.change(therapist, "end_segment", {}, [[therapist, a, b, c, d]])
    finally:
        await circle.close()


async def test_a_segment_while_the_others_go_on_with_a_co_facilitator(
    short_server: RunningServer,
) -> None:
    circle = await open_circle(short_server, patients=4, co_facilitator=True)
    try:
        therapist, co = circle.named("therapist", "co")
        a, b, c, d = circle.named("A", "B", "C", "D")
        await circle.change(
            therapist,
            "start_segment",
            {"participant_ids": pids([a]), "others": "plenary", "duration_seconds": LONG_S},
            [[therapist, a], [co, b, c, d]],
        )
        assert all(p.activity()["place"]["spot"] == "plenary" for p in (co, b, c, d))
    finally:
        await circle.close()


async def test_a_segment_moves_on_to_the_next_in_the_queue(short_server: RunningServer) -> None:
    circle = await open_circle(short_server, patients=4)
    try:
        therapist = circle.therapist
        a, b, c, d = circle.named("A", "B", "C", "D")
        ack = await therapist.call(
            "start_segment",
            {"participant_ids": pids([a, b]), "others": "hold", "duration_seconds": 5},
        )
        assert ack["ok"], ack
        await told(b, lambda view: view["place"]["spot"] == "hold")
        keyframes = circle.keyframes()
        circle.parts = [frozenset(p.pid for p in part) for part in ([therapist, a], [b], [c], [d])]

        # A's time runs out: the server's timer starts B's segment.
        def with_b(view: dict[str, Any]) -> bool:
            segment = view["facilitator"]["segment"]
            return segment is not None and segment["participant_id"] == b.pid

        await told(therapist, with_b)
        # Time enough to look: B's segment would otherwise end in 5 s too.
        await therapist.ok("extend", {"seconds": LONG_S})
        await circle.expect([[therapist, b], [a], [c], [d]], keyframes)
        assert therapist.activity()["facilitator"]["segment"]["done"] == [a.pid]
        await circle.change(therapist, "end_segment", {}, [[therapist, a, b, c, d]])
    finally:
        await circle.close()
