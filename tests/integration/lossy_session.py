"""A session of synthetic participants through the real server, one of them behind a
:class:`LossyRelay`, with what each receives from each counted per second.

Everyone publishes (VP8 at 10 fps, one packet per frame, and Opus) and subscribes, and
decodes what it receives (``decode=True``: aiortc's jitter buffer and VP8 decoder, which
ask for retransmissions (NACK) and keyframes (PLI) as a receiver does). Per (sender,
receiver) pair, :class:`Sampler` records every 0.1 s:

- frames arrived: distinct video RTP packets with the marker bit (each synthetic frame
  is one packet), retransmissions counted once;
- frames decoded: pictures out of the receiver's decoder.

Per participant, the RTCP feedback its peer connections sent and received (NACKs and
the sequence numbers they ask for, PLIs) is counted where aiortc sends or handles it.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiortc.rtp import RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket, RtpPacket

from telecircle.domain.model import TrackKind
from telecircle.media import aiortc_tap
from telecircle.media.lost_packets import LostPackets
from telecircle.media.room import MediaRoom
from tests.conftest import SFU, RunningServer
from tests.integration.lossy_relay import DirectionStats, Impairment, LossyRelay, RelayedRoom
from tests.integration.signalled_room import SignalledRoom
from tests.media.peer import EncodedMedia, SyntheticPeer, encode_media, wait_until
from tests.signalling.client import Client

SAMPLE_EVERY_S = 0.1
Pair = tuple[str, str]  # (sender, receiver) by name

# The participant behind the relay, and two on a clean path (the baseline).
LOSSY_NAME = "Lossy"
CLEAN_NAMES = ("Ann", "Ben")
UPLINK = [(LOSSY_NAME, name) for name in CLEAN_NAMES]  # lost on the way up (if at all)
DOWNLINK = [(name, LOSSY_NAME) for name in CLEAN_NAMES]  # lost on the way down
CLEAN_PAIRS = [(CLEAN_NAMES[0], CLEAN_NAMES[1]), (CLEAN_NAMES[1], CLEAN_NAMES[0])]


@dataclass
class Feedback:
    """RTCP feedback messages: NACKs (and the packets they ask for) and PLIs."""

    nacks: int = 0
    nacked_packets: int = 0
    plis: int = 0

    def minus(self, other: Feedback) -> Feedback:
        return Feedback(
            self.nacks - other.nacks,
            self.nacked_packets - other.nacked_packets,
            self.plis - other.plis,
        )

    def copy(self) -> Feedback:
        return Feedback(self.nacks, self.nacked_packets, self.plis)


@dataclass
class Member:
    name: str
    colour: int
    client: Client
    peer: SyntheticPeer
    relay: LossyRelay | None
    # Distinct sequence numbers of marker-bit video packets, per subscribe mid.
    frames: dict[str, set[int]] = field(default_factory=dict)
    # Asked for by this member's receivers (its subscribe connection).
    asked: Feedback = field(default_factory=Feedback)
    # Asked of this member's camera sender (its publish connection), by the server.
    answered: Feedback = field(default_factory=Feedback)

    def video_mid_of(self, owner: Member) -> str | None:
        """The mid carrying ``owner``'s camera to this member (from its slots event)."""
        for slot in (self.client.last("slots") or {}).get("slots", []):
            if slot["participant_id"] == owner.peer.pid:
                return self.peer.slot_mids[slot["index"]][1]
        return None

    def decoded_colours(self, owner: Member) -> Counter[int]:
        mid = self.video_mid_of(owner)
        return Counter() if mid is None else self.peer.received.colours[mid]

    def frames_from(self, owner: Member) -> int:
        mid = self.video_mid_of(owner)
        return 0 if mid is None else len(self.frames.get(mid, ()))

    def decoded_from(self, owner: Member) -> int:
        return sum(self.decoded_colours(owner).values())

    def sent_frames(self) -> int:
        assert self.peer.video_track is not None
        return self.peer.video_track.sent

    def media_lost_events(self) -> int:
        return sum(1 for name, _ in self.client.events if name == "media_lost")


def _count_sent_feedback(receiver: Any, counts: Feedback) -> None:
    """Count the NACKs and PLIs an aiortc receiver sends (wrapping its RTCP senders)."""
    send_nack = receiver._send_rtcp_nack
    send_pli = receiver._send_rtcp_pli

    async def nack(media_ssrc: int, lost: list[int]) -> None:
        counts.nacks += 1
        counts.nacked_packets += len(lost)
        await send_nack(media_ssrc, lost)

    async def pli(media_ssrc: int) -> None:
        counts.plis += 1
        await send_pli(media_ssrc)

    receiver._send_rtcp_nack = nack
    receiver._send_rtcp_pli = pli


def _count_handled_feedback(sender: Any, counts: Feedback) -> None:
    """Count the NACKs and PLIs an aiortc sender receives (before it handles them)."""
    handle = sender._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            counts.nacks += 1
            counts.nacked_packets += len(packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
            counts.plis += 1
        await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp


def _watch_frames(member: Member) -> None:
    pc = member.peer.subscribe_pc
    assert pc is not None
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "video":
            continue
        seen: set[int] = member.frames.setdefault(str(transceiver.mid), set())

        async def note(packet: RtpPacket, seen: set[int] = seen) -> None:
            if packet.marker:
                seen.add(packet.sequence_number)

        aiortc_tap.tap_rtp(transceiver.receiver, note)
        _count_sent_feedback(transceiver.receiver, member.asked)


async def join(
    server: RunningServer,
    code: str,
    name: str,
    colour: int,
    relay: LossyRelay | None = None,
    media: EncodedMedia | None = None,
) -> Member:
    """A co-facilitator (straight into the session) publishing ``media`` (default: a
    flat picture of ``colour``) and subscribing, through ``relay`` if given; decoding
    what it receives."""
    cookie = await server.clinician_cookie(code, name)
    client = await Client().connect(server.url, cookie)
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    published = media if media is not None else encode_media(colour)
    peer = SyntheticPeer(ack["data"]["participant_id"], published, decode=True)
    signalled = SignalledRoom(client)
    room: Any = signalled if relay is None else RelayedRoom(signalled, relay)
    await peer.publish(room)
    await peer.subscribe(room, 0)
    member = Member(name, colour, client, peer, relay)
    assert peer.publish_pc is not None
    for transceiver in peer.publish_pc.getTransceivers():
        if transceiver.kind == "video":
            _count_handled_feedback(transceiver.sender, member.answered)
    _watch_frames(member)
    return member


@dataclass
class Sample:
    at: float
    frames: dict[Pair, int]
    decoded: dict[Pair, int]
    sent: dict[str, int]


class Sampler:
    """Samples every pair's counters until stopped (a bounded, self-ending task)."""

    def __init__(self, members: list[Member], limit_s: float = 600.0) -> None:
        self.members = members
        self.samples: list[Sample] = []
        self._limit_s = limit_s
        self._task: asyncio.Task[None] | None = None

    def pairs(self) -> list[tuple[Member, Member]]:
        return [(s, r) for s in self.members for r in self.members if s is not r]

    def sample(self) -> Sample:
        loop = asyncio.get_running_loop()
        return Sample(
            loop.time(),
            {(s.name, r.name): r.frames_from(s) for s, r in self.pairs()},
            {(s.name, r.name): r.decoded_from(s) for s, r in self.pairs()},
            {m.name: m.sent_frames() for m in self.members},
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self._limit_s
        while loop.time() < end:
            self.samples.append(self.sample())
            await asyncio.sleep(SAMPLE_EVERY_S)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.samples.append(self.sample())

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


@dataclass
class PairFigures:
    frames_per_s: float
    decoded_per_s: float
    # Frames arrived, and pictures decoded, in each whole second of the phase.
    frames_each_second: list[int]
    decoded_each_second: list[int]
    # The longest time no new frame arrived, and no new picture was decoded (to 0.1 s).
    longest_arrival_gap_s: float
    longest_decode_gap_s: float


def pair_figures(samples: list[Sample], pair: Pair) -> PairFigures:
    first, last = samples[0], samples[-1]
    seconds = last.at - first.at
    times = [sample.at for sample in samples]

    def at(moment: float) -> Sample:
        """The last sample taken at or before ``moment``."""
        return samples[max(0, bisect.bisect_right(times, moment) - 1)]

    per_second: list[int] = []
    decoded_per_second: list[int] = []
    for k in range(int(seconds)):
        begin, end = at(first.at + k), at(first.at + k + 1)
        per_second.append(end.frames[pair] - begin.frames[pair])
        decoded_per_second.append(end.decoded[pair] - begin.decoded[pair])
    return PairFigures(
        frames_per_s=(last.frames[pair] - first.frames[pair]) / seconds,
        decoded_per_s=(last.decoded[pair] - first.decoded[pair]) / seconds,
        frames_each_second=per_second,
        decoded_each_second=decoded_per_second,
        longest_arrival_gap_s=_longest_gap(samples, lambda s: s.frames[pair]),
        longest_decode_gap_s=_longest_gap(samples, lambda s: s.decoded[pair]),
    )


def _longest_gap(samples: list[Sample], value: Callable[[Sample], int]) -> float:
    longest, since = 0.0, samples[0]
    for sample in samples[1:]:
        if value(sample) != value(since):
            since = sample
        longest = max(longest, sample.at - since.at)
    return longest


@dataclass
class PhaseFigures:
    """One phase (an impairment held for a while) of a session."""

    label: str
    seconds: float
    pairs: dict[Pair, PairFigures]
    upstream: DirectionStats
    downstream: DirectionStats
    asked: dict[str, Feedback]
    answered: dict[str, Feedback]

    def mean(self, pairs: Iterable[Pair], what: str) -> float:
        values = [float(getattr(self.pairs[p], what)) for p in pairs]
        return sum(values) / len(values)

    def fewest(self, pairs: Iterable[Pair], what: str = "frames_each_second") -> int:
        """The fewest frames (or pictures) any of ``pairs`` got in any whole second."""
        return min(min(getattr(self.pairs[p], what), default=0) for p in pairs)

    def control_seconds(self, control: Iterable[Pair]) -> list[int]:
        """The whole seconds in which every ``control`` pair got frames: the process
        was not stalled then (a loaded machine can pause this process for a second)."""
        counts = [self.pairs[p].frames_each_second for p in control]
        return [k for k, got in enumerate(zip(*counts, strict=True)) if all(got)]


async def hold_phase(
    label: str, sampler: Sampler, relay: LossyRelay, seconds: float
) -> PhaseFigures:
    """Hold the relay's current impairment for ``seconds``; figures of that span."""
    loop = asyncio.get_running_loop()
    members = sampler.members
    up_before, down_before = relay.stats()
    asked = {m.name: m.asked.copy() for m in members}
    answered = {m.name: m.answered.copy() for m in members}
    start = loop.time()
    await asyncio.sleep(seconds)
    end = loop.time()
    up_after, down_after = relay.stats()
    samples = sampler.between(start, end)
    return PhaseFigures(
        label=label,
        seconds=samples[-1].at - samples[0].at,
        pairs={
            (s.name, r.name): pair_figures(samples, (s.name, r.name)) for s, r in sampler.pairs()
        },
        upstream=_minus(up_after, up_before),
        downstream=_minus(down_after, down_before),
        asked={m.name: m.asked.minus(asked[m.name]) for m in members},
        answered={m.name: m.answered.minus(answered[m.name]) for m in members},
    )


def _minus(after: DirectionStats, before: DirectionStats) -> DirectionStats:
    result = DirectionStats()
    result.forwarded = after.forwarded - before.forwarded
    result.dropped = after.dropped - before.dropped
    result.recovered = after.recovered - before.recovered
    return result


async def everyone_decodes_everyone(members: list[Member], timeout: float = 30.0) -> None:
    """Until each member has decoded pictures of every other one's colour."""

    def done() -> bool:
        return all(
            r.decoded_colours(s)[s.colour] > 0 for s in members for r in members if s is not r
        )

    await wait_until(done, timeout=timeout)


def media_room(server: RunningServer, code: str) -> MediaRoom:
    from telecircle.domain.ids import RoomCode
    from tests.conftest import ROOMS

    live = server.app[ROOMS].live_room(RoomCode(code))
    assert live is not None
    assert isinstance(live.media, MediaRoom)
    return live.media


def peer_connections(server: RunningServer) -> int:
    return server.app[SFU].counts().peer_connections


def lost_packets_of(room: MediaRoom, member: Member) -> LostPackets:
    """The server's bookkeeping of ``member``'s lost camera packets."""
    return room._publishers[member.peer.pid]._keyframes[TrackKind.VIDEO].lost


def direction_summary(figures: PhaseFigures, pairs: list[Pair]) -> dict[str, float]:
    clean = figures.mean(CLEAN_PAIRS, "frames_per_s")
    clean_decoded = figures.mean(CLEAN_PAIRS, "decoded_per_s")
    arrived = figures.mean(pairs, "frames_per_s")
    decoded = figures.mean(pairs, "decoded_per_s")
    return {
        "frames_per_s": round(arrived, 2),
        "frames_ratio_to_clean": round(arrived / clean, 3) if clean else 0.0,
        "decoded_per_s": round(decoded, 2),
        "decoded_ratio_to_clean": round(decoded / clean_decoded, 3) if clean_decoded else 0.0,
        "fewest_frames_in_a_second": figures.fewest(pairs),
        "fewest_decoded_in_a_second": figures.fewest(pairs, "decoded_each_second"),
        "longest_arrival_gap_s": round(
            max(figures.pairs[p].longest_arrival_gap_s for p in pairs), 1
        ),
        "longest_decode_gap_s": round(max(figures.pairs[p].longest_decode_gap_s for p in pairs), 1),
    }


def summary(figures: PhaseFigures) -> dict[str, Any]:
    """The phase's figures as JSON-ready values."""

    def relay(stats: DirectionStats) -> dict[str, Any]:
        return {
            "rtp_dropped": stats.dropped["rtp"],
            "rtp_sent": stats.dropped["rtp"] + stats.forwarded["rtp"],
            "rtp_loss": round(stats.loss("rtp"), 4),
            "rtcp_dropped": stats.dropped["rtcp"],
            "recovered_by_retransmission": stats.recovered,
        }

    return {
        "label": figures.label,
        "seconds": round(figures.seconds, 1),
        "uplink": direction_summary(figures, UPLINK),
        "downlink": direction_summary(figures, DOWNLINK),
        "clean": direction_summary(figures, CLEAN_PAIRS),
        "relay_up": relay(figures.upstream),
        "relay_down": relay(figures.downstream),
        "asked": {name: vars(f) for name, f in figures.asked.items()},
        "answered": {name: vars(f) for name, f in figures.answered.items()},
    }


def describe(figures: PhaseFigures, impairment: Impairment, seed: int) -> str:
    """A few lines for a person: frame rates each way against the clean pair, the
    relay's loss and recoveries, and the NACKs and PLIs."""
    data = summary(figures)
    lines = [
        f"{figures.label}: loss {impairment.loss:.0%} each way, delay "
        f"{impairment.delay_min * 1000:.0f}-{impairment.delay_max * 1000:.0f} ms, "
        f"{figures.seconds:.1f} s, seed {seed}"
    ]
    for label in ("uplink", "downlink", "clean"):
        d = data[label]
        lines.append(
            f"  {label:8} frames {d['frames_per_s']:5.2f}/s ({d['frames_ratio_to_clean']:.3f} "
            f"of clean), decoded {d['decoded_per_s']:5.2f}/s ({d['decoded_ratio_to_clean']:.3f}); "
            f"fewest in a second {d['fewest_frames_in_a_second']} arrived, "
            f"{d['fewest_decoded_in_a_second']} decoded; longest gap "
            f"{d['longest_arrival_gap_s']:.1f} s arrived, {d['longest_decode_gap_s']:.1f} s decoded"
        )
    for direction in ("up", "down"):
        r = data[f"relay_{direction}"]
        lines.append(
            f"  relay {direction:4}: rtp dropped {r['rtp_dropped']} of {r['rtp_sent']} "
            f"({r['rtp_loss']:.1%}), rtcp dropped {r['rtcp_dropped']}, recovered by "
            f"retransmission {r['recovered_by_retransmission']}"
        )
    for name in (LOSSY_NAME, *CLEAN_NAMES):
        asked, answered = figures.asked[name], figures.answered[name]
        lines.append(
            f"  {name:5} asked: {asked.nacks} NACKs ({asked.nacked_packets} packets), "
            f"{asked.plis} PLIs; its camera was asked: {answered.nacks} NACKs "
            f"({answered.nacked_packets} packets), {answered.plis} PLIs"
        )
    return "\n".join(lines)
